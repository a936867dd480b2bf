package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// TLS (docs/tls.md). A second listener, tls.listen, accepts TLS and then
// sniffs the decrypted bytes exactly like the plain port, so MQTT over TLS,
// WSS and HTTPS share it. The certificate comes from PEM files, from PEM
// text in the configuration or environment, or from an ACME CA through
// golang.org/x/crypto/acme/autocert.

// defaultTLSListen is the TLS address once a certificate or ACME host is
// configured and tls.listen is not.
const defaultTLSListen = ":8443"

// certExpiryWarning is how close to its end a certificate is logged as a
// warning at start and reload, so the operator hears of it before clients do.
const certExpiryWarning = 14 * 24 * time.Hour

// tlsNextProtos are the ALPN protocols the node offers, in its order of
// preference [RFC 7301 §3.2]: "http/1.1" for HTTPS and WSS, "mqtt" (the
// MQTT entry of the IANA ALPN registry) for clients that announce MQTT.
// Clients that offer no ALPN at all are sniffed as usual. h2 is left out:
// the sniffed HTTP path speaks HTTP/1.1, which WebSocket upgrades need.
var tlsNextProtos = []string{"http/1.1", "mqtt"}

// tlsServer is the node's TLS side, built by New when TLS is configured.
type tlsServer struct {
	listen string
	config *tls.Config
	// cert is the certificate every handshake gets when it is static. It is
	// swapped whole by ReloadTLS, so a handshake sees the old pair or the
	// new one, never half of each, and established connections keep theirs.
	cert atomic.Pointer[tls.Certificate]
	// acme is set instead of cert when certificates come from an ACME CA.
	acme *autocert.Manager
	// source is what ReloadTLS reads again.
	source TLSConfig
}

// enabled reports whether any TLS material is configured: then TLS is on
// and validate insists that the material is complete.
func (t *TLSConfig) enabled() bool {
	return t.CertFile != "" || t.KeyFile != "" || t.CertPEM != "" || t.KeyPEM != "" || len(t.Host) > 0
}

// listenAddr is tls.listen with its default applied.
func (t *TLSConfig) listenAddr() string {
	if t.Listen == "" {
		return defaultTLSListen
	}
	return t.Listen
}

// validate checks the tls section, naming the key at fault. With a static
// certificate it loads and matches the pair, so a broken pair stops the
// start before any port is bound (I3).
func (t *TLSConfig) validate(plainListen string) error {
	bad := func(key string, format string, args ...any) error {
		return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if !t.enabled() {
		switch {
		case t.Listen != "":
			return bad("tls.listen", "is set but no certificate is: set tls.cert_file and tls.key_file, tls.cert_pem and tls.key_pem, or tls.host (ACME)")
		case t.ACMECache != "":
			return bad("tls.acme_cache", "only applies with tls.host (ACME)")
		case t.ACMEEmail != "":
			return bad("tls.acme_email", "only applies with tls.host (ACME)")
		}
		return nil
	}
	listen := t.listenAddr()
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return bad("tls.listen", "want host:port or :port, got %q", listen)
	}
	if listen == plainListen && port != "0" {
		return bad("tls.listen", "%q is also listen: TLS needs a port of its own", listen)
	}
	static := t.CertFile != "" || t.KeyFile != "" || t.CertPEM != "" || t.KeyPEM != ""
	if len(t.Host) == 0 {
		switch {
		case t.ACMECache != "":
			return bad("tls.acme_cache", "only applies with tls.host (ACME)")
		case t.ACMEEmail != "":
			return bad("tls.acme_email", "only applies with tls.host (ACME)")
		}
		_, err := loadCertificate(*t)
		return err
	}
	if static {
		return bad("tls.host", "ACME (tls.host) and a configured certificate (tls.cert_*, tls.key_*) are alternatives: set one")
	}
	for _, h := range t.Host {
		if err := checkACMEHost(h); err != nil {
			return bad("tls.host", "%q: %v", h, err)
		}
	}
	if t.ACMEEmail != "" {
		if _, err := mail.ParseAddress(t.ACMEEmail); err != nil {
			return bad("tls.acme_email", "want an e-mail address, got %q", t.ACMEEmail)
		}
	}
	return nil
}

// checkACMEHost refuses names autocert could never obtain a certificate for,
// so the mistake shows at start rather than at a client's first handshake.
func checkACMEHost(h string) error {
	switch {
	case h == "":
		return errors.New("empty name")
	case net.ParseIP(h) != nil:
		return errors.New("is an IP address: ACME here needs a DNS name, which clients send as SNI")
	case strings.ContainsAny(h, "/:@ "):
		return errors.New("want a bare DNS name, without scheme, port or path")
	case strings.Contains(h, "*"):
		return errors.New("wildcards need the DNS-01 challenge, which autocert does not do: list each name")
	case !strings.Contains(strings.Trim(h, "."), "."):
		return errors.New("a single-label name cannot get a public certificate")
	}
	return nil
}

// pemInput is one PEM input read from its file or its inline form. key
// names whichever supplied it, for error messages.
type pemInput struct {
	key  string
	path string // the file it came from, "" when inline
	data []byte
	set  bool
}

// fault is err as a *ConfigError naming the key, and the file when there is
// one, so the operator knows which of several PEM files to look at.
func (in pemInput) fault(err error) error {
	if in.path != "" {
		err = fmt.Errorf("%s: %w", in.path, err)
	}
	return &ConfigError{Key: in.key, Err: err}
}

func readPEMInput(fileKey, file, inlineKey, inline string) (pemInput, error) {
	switch {
	case file != "" && inline != "":
		return pemInput{key: inlineKey}, fmt.Errorf("set %s or %s, not both", fileKey, inlineKey)
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return pemInput{key: fileKey}, err
		}
		return pemInput{key: fileKey, path: file, data: data, set: true}, nil
	case inline != "":
		// Environment variables and one-line secret stores often carry
		// PEM with literal \n separators; PEM itself never contains a
		// backslash, so turning them back into newlines is safe.
		if !strings.Contains(inline, "\n") {
			inline = strings.ReplaceAll(inline, `\n`, "\n")
		}
		return pemInput{key: inlineKey, data: []byte(inline), set: true}, nil
	}
	return pemInput{key: fileKey}, nil
}

// loadCertificate reads and parses the configured pair. Every refusal is a
// *ConfigError naming the key whose value is at fault (I3); no error ever
// quotes key material.
func loadCertificate(t TLSConfig) (*tls.Certificate, error) {
	certIn, err := readPEMInput("tls.cert_file", t.CertFile, "tls.cert_pem", t.CertPEM)
	if err != nil {
		return nil, &ConfigError{Key: certIn.key, Err: err}
	}
	keyIn, err := readPEMInput("tls.key_file", t.KeyFile, "tls.key_pem", t.KeyPEM)
	if err != nil {
		return nil, &ConfigError{Key: keyIn.key, Err: err}
	}
	if !certIn.set {
		return nil, &ConfigError{Key: "tls.cert_file", Err: errors.New("a private key is set but no certificate: set tls.cert_file or tls.cert_pem")}
	}
	if !keyIn.set {
		return nil, &ConfigError{Key: "tls.key_file", Err: errors.New("a certificate is set but no private key: set tls.key_file or tls.key_pem")}
	}
	if err := checkCertificatePEM(certIn.data); err != nil {
		return nil, certIn.fault(err)
	}
	if err := checkPrivateKeyPEM(keyIn.data); err != nil {
		return nil, keyIn.fault(err)
	}
	pair, err := tls.X509KeyPair(certIn.data, keyIn.data)
	if err != nil {
		// crypto/tls has no sentinel for a mismatch; say it plainly when
		// that is the cause, otherwise pass its reason on (a key that
		// does not parse, an unsupported algorithm).
		if strings.Contains(err.Error(), "does not match") {
			err = fmt.Errorf("does not go with the certificate in %s: %w", certIn.key, err)
		}
		return nil, keyIn.fault(err)
	}
	return &pair, nil
}

// checkCertificatePEM gives the precise reason a certificate input is
// unusable; tls.X509KeyPair alone would blame the pair.
func checkCertificatePEM(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("is empty")
	}
	sawKey := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			// The leaf comes first; the chain after it is the client's
			// to verify.
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return fmt.Errorf("the first certificate does not parse: %w", err)
			}
			return nil
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			sawKey = true
		}
	}
	if sawKey {
		return errors.New("holds a private key but no certificate (are the certificate and key swapped?)")
	}
	return errors.New("holds no PEM CERTIFICATE block")
}

// checkPrivateKeyPEM finds the first private key block. A file holding both
// the certificate and the key is fine, as tls.X509KeyPair skips the rest.
func checkPrivateKeyPEM(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("is empty")
	}
	sawCert := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
			return errors.New("is encrypted: give the node the decrypted key (openssl pkey -in key.pem -out key-plain.pem) and protect the file with its mode (0600)")
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil
		case block.Type == "CERTIFICATE":
			sawCert = true
		}
	}
	if sawCert {
		return errors.New("holds a certificate but no private key (are the certificate and key swapped?)")
	}
	return errors.New("holds no PEM PRIVATE KEY block")
}

// newTLSServer builds the TLS side from a validated configuration, or
// returns nil when TLS is off.
func newTLSServer(cfg Config, log *slog.Logger) (*tlsServer, error) {
	t := cfg.TLS
	if !t.enabled() {
		return nil, nil
	}
	ts := &tlsServer{
		listen: t.listenAddr(),
		source: t,
		config: &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: tlsNextProtos,
		},
	}
	if len(t.Host) > 0 {
		dir := t.ACMECache
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "acme")
		}
		// The cache holds the ACME account key and the certificates'
		// private keys: owner only (F9).
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, &ConfigError{Key: "tls.acme_cache", Err: err}
		}
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("the ACME cache directory is readable by others; it holds private keys, chmod 700 it", "dir", dir, "mode", st.Mode().Perm().String())
		}
		ts.acme = &autocert.Manager{
			// Configuring tls.host is the operator's acceptance of the
			// CA's terms; docs/tls.md says so.
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(t.Host...),
			Cache:      autocert.DirCache(dir),
			Email:      t.ACMEEmail,
		}
		ts.config.GetCertificate = ts.acme.GetCertificate
		// TLS-ALPN-01 [RFC 8737]: the CA proves control of port 443 with
		// a handshake offering only acme-tls/1, answered by autocert.
		ts.config.NextProtos = append(slices.Clone(tlsNextProtos), acme.ALPNProto)
		log.Info("tls certificates from ACME", "hosts", strings.Join(t.Host, ","), "cache", dir)
		return ts, nil
	}
	cert, err := loadCertificate(t)
	if err != nil {
		return nil, err
	}
	ts.cert.Store(cert)
	ts.config.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return ts.cert.Load(), nil
	}
	logCertificate(log, "tls certificate loaded", cert, time.Now())
	return ts, nil
}

// logCertificate says which certificate is served and warns when clients
// are about to refuse it. It logs public fields only.
func logCertificate(log *slog.Logger, msg string, cert *tls.Certificate, now time.Time) {
	leaf := cert.Leaf
	if leaf == nil {
		return
	}
	attrs := []any{
		"subject", leaf.Subject.CommonName,
		"dns_names", strings.Join(leaf.DNSNames, ","),
		"serial", leaf.SerialNumber.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
	}
	switch {
	case now.After(leaf.NotAfter):
		log.Warn(msg+"; it has EXPIRED and clients will refuse it", attrs...)
	case now.Before(leaf.NotBefore):
		log.Warn(msg+"; it is not valid yet and clients will refuse it", append(attrs, "not_before", leaf.NotBefore.UTC().Format(time.RFC3339))...)
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		log.Warn(msg+"; it expires soon", attrs...)
	default:
		log.Info(msg, attrs...)
	}
}

// ReloadTLS re-reads the certificate and key from their files (SIGHUP in
// `pubsub serve`). New handshakes get the new pair at once; established
// connections keep theirs. A pair that does not load or match is refused
// and the current one stays in service (I8): the error, also logged, names
// the key at fault. With TLS off, or with ACME (autocert renews on its
// own), there is nothing to reload and it returns nil.
func (s *Server) ReloadTLS() error {
	ts := s.tlsSrv
	if ts == nil || ts.acme != nil {
		return nil
	}
	cert, err := loadCertificate(ts.source)
	if err != nil {
		s.log.Error("tls reload failed; still serving the previous certificate", "err", err)
		return err
	}
	ts.cert.Store(cert)
	logCertificate(s.log, "tls certificate reloaded", cert, time.Now())
	return nil
}

// TLSAddr is the TLS listener's address, or nil when TLS is off or before
// Start.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// listenTLS binds tls.listen; nil, nil when TLS is off.
func (s *Server) listenTLS() (net.Listener, error) {
	if s.tlsSrv == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.tlsSrv.listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s (tls.listen): %w", s.tlsSrv.listen, err)
	}
	return ln, nil
}

// serveTLS accepts TLS on raw and hands every connection to the same
// sniffer as the plain port: TLS is unwrapped first, so the sniffer reads
// plaintext and MQTT, WebSocket and HTTP all work over it. Serve must have
// run (it creates the HTTP side both ports share).
func (s *Server) serveTLS(raw net.Listener) {
	ln := &tlsListener{Listener: raw, config: s.tlsSrv.config, log: s.log}
	s.tlsLn = ln
	s.listeners = append(s.listeners, ln)
	s.wg.Add(1)
	go s.acceptLoop(ln, s.httpLn)
	s.log.Info("listening", "addr", raw.Addr().String(), "protocols", "mqtt+tls,wss,https")
}

// tlsListener is tls.NewListener with a connection type that reports failed
// handshakes: the sniffer only sees a read error and closes.
type tlsListener struct {
	net.Listener
	config *tls.Config
	log    *slog.Logger
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.config), log: l.log}, nil
}

// tlsConn is a server-side *tls.Conn whose first Read runs the handshake
// under the deadline the sniffer set (connect timeout, H4) and logs why it
// failed, which is what an operator needs when a client says "bad
// certificate".
type tlsConn struct {
	*tls.Conn
	log      *slog.Logger
	reported bool // only the one goroutine reading the connection touches it
}

func (c *tlsConn) Read(p []byte) (int, error) {
	// Handshake returns at once (one atomic load) once it has succeeded.
	if err := c.Conn.Handshake(); err != nil {
		if !c.reported {
			c.reported = true
			c.log.Debug("tls handshake failed", "remote_addr", c.RemoteAddr().String(), "err", err)
		}
		return 0, err
	}
	return c.Conn.Read(p)
}

// tlsStateKey carries a connection's TLS state from ConnContext to the
// request (see withTLSState).
type tlsStateKey struct{}

// httpConnContext is the HTTP server's ConnContext. net/http fills
// Request.TLS only for a *tls.Conn it was handed itself; here it gets the
// sniffer's wrapper, so the state travels in the context instead.
func httpConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*sniffConn); ok {
		c = sc.Conn
	}
	if tc, ok := c.(*tlsConn); ok {
		st := tc.ConnectionState()
		return context.WithValue(ctx, tlsStateKey{}, &st)
	}
	return ctx
}

// withTLSState sets Request.TLS for requests that came over the TLS port,
// so handlers can tell HTTPS from HTTP the usual way. With ACME it also
// answers HTTP-01 challenges under /.well-known/acme-challenge/ and passes
// every other request through (not autocert's default redirect to HTTPS:
// plain MQTT over WebSocket stays available on the plain port).
func (s *Server) withTLSState(h http.Handler) http.Handler {
	var wrapped http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r2 := *r // handlers must not modify the request they are given
				r2.TLS = st
				r = &r2
			}
		}
		h.ServeHTTP(w, r)
	})
	if s.tlsSrv != nil && s.tlsSrv.acme != nil {
		wrapped = s.tlsSrv.acme.HTTPHandler(wrapped)
	}
	return wrapped
}
