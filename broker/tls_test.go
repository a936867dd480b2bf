package broker_test

// TLS (docs/tls.md): a CA made in the test issues server certificates for
// 127.0.0.1; real clients (Paho over ssl:// and wss://, net/http, crypto/tls)
// reach the node's TLS port; reloads swap the certificate for new handshakes
// only when the new pair is good (I8); broken configurations are refused
// naming the key (I3).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
)

// ---------------------------------------------------------------- PKI

// testCA is a certificate authority that exists only for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// serverPair is a PEM certificate and its private key.
type serverPair struct {
	cert, key []byte
}

// issue signs a server certificate for 127.0.0.1 and names, valid for a
// year: longer than autocert's 30-day renewal window, so a cached ACME
// certificate is served without a renewal ever being attempted.
func (ca *testCA) issue(t testing.TB, serial int64, names ...string) serverPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cn := "127.0.0.1"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return serverPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// writeFile writes data to dir/name (0600) and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// ---------------------------------------------------------------- node

// startTLSNode starts a node through Start, which binds both ports: plain on
// 127.0.0.1:0 and TLS on 127.0.0.1:0. configure must set a certificate or
// ACME hosts. The node's log is returned for tests that check why a
// handshake failed.
func startTLSNode(t *testing.T, configure func(*broker.Config)) (*broker.Server, *syncBuffer) {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.Listen = "127.0.0.1:0"
	cfg.NoAuth = true
	cfg.DataDir = t.TempDir()
	configure(&cfg)
	logs := &syncBuffer{}
	srv, err := broker.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	require.NotNil(t, srv.TLSAddr(), "TLS is configured, so Start binds tls.listen")
	return srv, logs
}

// startNodeWithPair starts a node serving pair from files in dir.
func startNodeWithPair(t *testing.T, dir string, pair serverPair) (*broker.Server, string, string) {
	t.Helper()
	certFile := writeFile(t, dir, "cert.pem", pair.cert)
	keyFile := writeFile(t, dir, "key.pem", pair.key)
	srv, _ := startTLSNode(t, func(c *broker.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
	})
	return srv, certFile, keyFile
}

// tlsPahoOptions are the harness's Paho options aimed at url with TLS
// verified against roots.
func tlsPahoOptions(srv *broker.Server, url, clientID string, roots *x509.CertPool) *paho.ClientOptions {
	opts := pahoOptions(srv, transportTCP, clientID)
	opts.Servers = nil
	return opts.AddBroker(url).SetTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
}

// handshake dials the TLS port and completes a handshake with cfg.
func handshake(t *testing.T, srv *broker.Server, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: opTimeout}, Config: cfg}
	nc, err := d.Dial("tcp", srv.TLSAddr().String())
	if err != nil {
		return nil, err
	}
	tc := nc.(*tls.Conn)
	t.Cleanup(func() { _ = tc.Close() })
	return tc, nil
}

// servedSerial is the serial of the certificate a new handshake gets.
func servedSerial(t *testing.T, srv *broker.Server, roots *x509.CertPool) int64 {
	t.Helper()
	tc, err := handshake(t, srv, &tls.Config{RootCAs: roots})
	require.NoError(t, err)
	defer tc.Close()
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// ---------------------------------------------------------------- tests

// TestTLSTransports: every protocol of the plain port works over the TLS
// port, and messages cross between the two.
func TestTLSTransports(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	srv, _, _ := startNodeWithPair(t, t.TempDir(), ca.issue(t, 100))
	tlsAddr := srv.TLSAddr().String()

	// A plain-port publisher proves both ports route into one broker.
	plainPub, _ := connectPaho(t, pahoOptions(srv, transportTCP, "plain-pub"))

	for _, tc := range []struct{ name, url string }{
		{"mqtt over tls", "ssl://" + tlsAddr},
		{"mqtt over tls, tls scheme", "tls://" + tlsAddr},
		{"mqtt over wss", "wss://" + tlsAddr + "/mqtt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &inbox{}
			sub, _ := connectPaho(t, tlsPahoOptions(srv, tc.url, "sub-"+tc.name, ca.pool).SetDefaultPublishHandler(in.handle))
			subscribe(t, sub, "tls/"+tc.name, 1)
			publish(t, plainPub, "tls/"+tc.name, 1, false, []byte("from plain"))
			publish(t, sub, "tls/"+tc.name, 1, false, []byte("from tls"))
			in.waitMessage(t, "tls/"+tc.name, "from plain")
			in.waitMessage(t, "tls/"+tc.name, "from tls")
		})
	}

	t.Run("https healthz", func(t *testing.T) {
		// A custom TLSClientConfig makes net/http offer no ALPN; a browser
		// offers h2 and http/1.1 and must get http/1.1.
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, NextProtos: []string{"h2", "http/1.1"}}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: opTimeout}).Get("https://" + tlsAddr + "/healthz")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NotNil(t, resp.TLS)
		require.Equal(t, "http/1.1", resp.TLS.NegotiatedProtocol)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, "ok", body["status"])
	})

	t.Run("alpn mqtt", func(t *testing.T) {
		tc, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool, NextProtos: []string{"mqtt"}})
		require.NoError(t, err)
		require.Equal(t, "mqtt", tc.ConnectionState().NegotiatedProtocol)
		require.Equal(t, uint16(tls.VersionTLS13), tc.ConnectionState().Version)
		c := newRawClient(t, tc)
		c.mustConnect(mqtt.Connect{ClientID: "alpn", CleanSession: true})
	})

	t.Run("unsupported alpn refused", func(t *testing.T) {
		// [RFC 7301 §3.2]: no protocol in common is a handshake failure,
		// not a silent fallback.
		_, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool, NextProtos: []string{"h2"}})
		require.Error(t, err)
	})

	t.Run("tls 1.1 refused", func(t *testing.T) {
		_, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		require.Error(t, err)
	})

	t.Run("plaintext mqtt on the tls port", func(t *testing.T) {
		nc, err := net.DialTimeout("tcp", tlsAddr, opTimeout)
		require.NoError(t, err)
		c := newRawClient(t, nc)
		c.write((&mqtt.Connect{ClientID: "plain-on-tls", CleanSession: true}).AppendTo(nil))
		// No CONNACK: the bytes are not a TLS handshake, so the node
		// closes without ever handing them to MQTT.
		c.expectClosed()
	})

	t.Run("tls on the plain port", func(t *testing.T) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: opTimeout}, Config: &tls.Config{RootCAs: ca.pool}}
		nc, err := d.Dial("tcp", srv.Addr().String())
		if err == nil {
			nc.Close()
		}
		require.Error(t, err, "the plain port must not speak TLS")
	})
}

// TestTLSWrongCA: a client that trusts another CA refuses the node, over
// every TLS transport.
func TestTLSWrongCA(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	other := newTestCA(t, "someone else's CA")
	srv, _, _ := startNodeWithPair(t, t.TempDir(), ca.issue(t, 100))
	tlsAddr := srv.TLSAddr().String()

	t.Run("crypto/tls", func(t *testing.T) {
		_, err := handshake(t, srv, &tls.Config{RootCAs: other.pool})
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
	})
	for _, url := range []string{"ssl://" + tlsAddr, "wss://" + tlsAddr + "/mqtt"} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			c := paho.NewClient(tlsPahoOptions(srv, url, "wrong-ca", other.pool))
			tok := c.Connect()
			require.True(t, tok.WaitTimeout(opTimeout), "connect must fail, not hang")
			require.Error(t, tok.Error())
			require.Contains(t, tok.Error().Error(), "certificate")
			require.False(t, c.IsConnected())
		})
	}
	t.Run("https", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.pool}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: opTimeout}).Get("https://" + tlsAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
	})
}

// TestTLSReload: ReloadTLS (SIGHUP) swaps the certificate for new
// handshakes, leaves established connections alone, and refuses a broken
// pair while the good one stays in service (I8).
func TestTLSReload(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	dir := t.TempDir()
	srv, certFile, keyFile := startNodeWithPair(t, dir, ca.issue(t, 100))
	require.Equal(t, int64(100), servedSerial(t, srv, ca.pool))

	in := &inbox{}
	early, _ := connectPaho(t, tlsPahoOptions(srv, "ssl://"+srv.TLSAddr().String(), "early", ca.pool).SetDefaultPublishHandler(in.handle))
	subscribe(t, early, "reload/t", 1)

	renewed := ca.issue(t, 200)
	require.NoError(t, os.WriteFile(certFile, renewed.cert, 0o600))
	require.NoError(t, os.WriteFile(keyFile, renewed.key, 0o600))
	require.NoError(t, srv.ReloadTLS())
	require.Equal(t, int64(200), servedSerial(t, srv, ca.pool), "new handshakes get the new certificate")

	publish(t, early, "reload/t", 1, false, []byte("still here"))
	in.waitMessage(t, "reload/t", "still here")

	mismatched := ca.issue(t, 300)
	for _, tc := range []struct {
		name      string
		cert, key []byte // nil leaves the file as it is
		wantKey   string
	}{
		{"cert garbage", []byte("not a certificate"), nil, "tls.cert_file"},
		{"cert empty", []byte{}, nil, "tls.cert_file"},
		{"key empty", nil, []byte("\n"), "tls.key_file"},
		// A deploy hook that has written the new certificate but not yet
		// its key: the half-written pair must not be served.
		{"new cert, old key", mismatched.cert, nil, "tls.key_file"},
		{"cert and key swapped", renewed.key, renewed.cert, "tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() {
				require.NoError(t, os.WriteFile(certFile, renewed.cert, 0o600))
				require.NoError(t, os.WriteFile(keyFile, renewed.key, 0o600))
			})
			if tc.cert != nil {
				require.NoError(t, os.WriteFile(certFile, tc.cert, 0o600))
			}
			if tc.key != nil {
				require.NoError(t, os.WriteFile(keyFile, tc.key, 0o600))
			}
			err := srv.ReloadTLS()
			var ce *broker.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.wantKey, ce.Key)
			require.Equal(t, int64(200), servedSerial(t, srv, ca.pool), "the good certificate stays in service")
		})
	}

	t.Run("file removed", func(t *testing.T) {
		require.NoError(t, os.Rename(keyFile, keyFile+".moved"))
		t.Cleanup(func() { require.NoError(t, os.Rename(keyFile+".moved", keyFile)) })
		err := srv.ReloadTLS()
		require.ErrorIs(t, err, os.ErrNotExist)
		require.Equal(t, int64(200), servedSerial(t, srv, ca.pool))
	})

	t.Run("no tls, nothing to reload", func(t *testing.T) {
		plain := startServer(t, nil)
		require.NoError(t, plain.ReloadTLS())
		require.Nil(t, plain.TLSAddr())
	})
}

// TestTLSFromEnvironmentPEM: the certificate and key as PEM text in
// PUBSUB_TLS_CERT_PEM / PUBSUB_TLS_KEY_PEM, with real newlines or with the
// literal \n of one-line secret stores.
func TestTLSFromEnvironmentPEM(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	pair := ca.issue(t, 42)
	for _, tc := range []struct {
		name      string
		cert, key string
	}{
		{"multi-line", string(pair.cert), string(pair.key)},
		{"one line with \\n", strings.ReplaceAll(string(pair.cert), "\n", `\n`), strings.ReplaceAll(string(pair.key), "\n", `\n`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PUBSUB_TLS_CERT_PEM": tc.cert, "PUBSUB_TLS_KEY_PEM": tc.key}
			srv, _ := startTLSNode(t, func(c *broker.Config) {
				require.NoError(t, broker.ApplyEnv(c, func(k string) (string, bool) {
					v, ok := env[k]
					return v, ok
				}))
			})
			require.Equal(t, int64(42), servedSerial(t, srv, ca.pool))
		})
	}
}

// TestTLSConfigValidate: broken TLS settings stop the start naming the key
// (I1, I3), before any port is bound.
func TestTLSConfigValidate(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	dir := t.TempDir()
	pair := ca.issue(t, 1)
	other := ca.issue(t, 2)
	certFile := writeFile(t, dir, "cert.pem", pair.cert)
	keyFile := writeFile(t, dir, "key.pem", pair.key)
	otherKey := writeFile(t, dir, "other-key.pem", other.key)
	emptyFile := writeFile(t, dir, "empty.pem", nil)
	combined := writeFile(t, dir, "combined.pem", append(append([]byte{}, pair.cert...), pair.key...))
	encryptedKey := writeFile(t, dir, "encrypted.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	junkKey := writeFile(t, dir, "junk-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}))

	for _, tc := range []struct {
		name    string
		tls     broker.TLSConfig
		wantKey string // "" = valid
		wantMsg string
	}{
		{"off", broker.TLSConfig{}, "", ""},
		{"files", broker.TLSConfig{CertFile: certFile, KeyFile: keyFile}, "", ""},
		{"one file holding both", broker.TLSConfig{CertFile: combined, KeyFile: combined}, "", ""},
		{"inline pem", broker.TLSConfig{CertPEM: string(pair.cert), KeyPEM: string(pair.key)}, "", ""},
		{"acme", broker.TLSConfig{Host: broker.StringList{"example.com"}, ACMEEmail: "ops@example.com"}, "", ""},

		{"cert without key", broker.TLSConfig{CertFile: certFile}, "tls.key_file", "no private key"},
		{"key without cert", broker.TLSConfig{KeyFile: keyFile}, "tls.cert_file", "no certificate"},
		{"mismatched pair", broker.TLSConfig{CertFile: certFile, KeyFile: otherKey}, "tls.key_file", "does not go with the certificate"},
		{"mismatched inline", broker.TLSConfig{CertPEM: string(pair.cert), KeyPEM: string(other.key)}, "tls.key_pem", "does not go with"},
		{"missing cert file", broker.TLSConfig{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: keyFile}, "tls.cert_file", "no such file"},
		{"unreadable cert file", broker.TLSConfig{CertFile: dir, KeyFile: keyFile}, "tls.cert_file", "is a directory"},
		{"empty cert file", broker.TLSConfig{CertFile: emptyFile, KeyFile: keyFile}, "tls.cert_file", "is empty"},
		{"empty key file", broker.TLSConfig{CertFile: certFile, KeyFile: emptyFile}, "tls.key_file", "is empty"},
		{"garbage cert", broker.TLSConfig{CertPEM: "hello", KeyFile: keyFile}, "tls.cert_pem", "no PEM CERTIFICATE"},
		{"swapped", broker.TLSConfig{CertFile: keyFile, KeyFile: certFile}, "tls.cert_file", "swapped"},
		{"key is a certificate", broker.TLSConfig{CertFile: certFile, KeyFile: certFile}, "tls.key_file", "swapped"},
		{"encrypted key", broker.TLSConfig{CertFile: certFile, KeyFile: encryptedKey}, "tls.key_file", "encrypted"},
		{"key does not parse", broker.TLSConfig{CertFile: certFile, KeyFile: junkKey}, "tls.key_file", "failed to parse private key"},
		{"file and pem", broker.TLSConfig{CertFile: certFile, CertPEM: string(pair.cert), KeyFile: keyFile}, "tls.cert_pem", "not both"},
		{"key file and pem", broker.TLSConfig{CertFile: certFile, KeyFile: keyFile, KeyPEM: string(pair.key)}, "tls.key_pem", "not both"},
		{"listen without certificate", broker.TLSConfig{Listen: ":8443"}, "tls.listen", "no certificate"},
		{"bad listen", broker.TLSConfig{Listen: "8443", CertFile: certFile, KeyFile: keyFile}, "tls.listen", "host:port"},
		{"same port as listen", broker.TLSConfig{Listen: ":8080", CertFile: certFile, KeyFile: keyFile}, "tls.listen", "port of its own"},
		{"acme and certificate", broker.TLSConfig{Host: broker.StringList{"example.com"}, CertFile: certFile, KeyFile: keyFile}, "tls.host", "alternatives"},
		{"acme wildcard", broker.TLSConfig{Host: broker.StringList{"*.example.com"}}, "tls.host", "wildcard"},
		{"acme ip", broker.TLSConfig{Host: broker.StringList{"192.0.2.1"}}, "tls.host", "IP address"},
		{"acme url", broker.TLSConfig{Host: broker.StringList{"https://example.com"}}, "tls.host", "bare DNS name"},
		{"acme single label", broker.TLSConfig{Host: broker.StringList{"localhost"}}, "tls.host", "single-label"},
		{"acme bad email", broker.TLSConfig{Host: broker.StringList{"example.com"}, ACMEEmail: "ops"}, "tls.acme_email", "e-mail"},
		{"acme email without host", broker.TLSConfig{ACMEEmail: "ops@example.com"}, "tls.acme_email", "tls.host"},
		{"acme cache without host", broker.TLSConfig{ACMECache: dir, CertFile: certFile, KeyFile: keyFile}, "tls.acme_cache", "tls.host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := broker.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.TLS = tc.tls
			err := cfg.Validate()
			if tc.wantKey == "" {
				require.NoError(t, err)
				return
			}
			var ce *broker.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.wantKey, ce.Key)
			require.Contains(t, err.Error(), tc.wantMsg)
			// New validates too: nothing is built, nothing is bound.
			srv, err := broker.New(cfg, nil)
			require.Nil(t, srv)
			require.ErrorAs(t, err, &ce)
			// A refusal never quotes key material.
			require.NotContains(t, err.Error(), "PRIVATE KEY-----\n")
			require.NotContains(t, err.Error(), strings.Split(string(pair.key), "\n")[1])
		})
	}
}

// TestTLSConfigSources: tls.host is written as a list or a single name in
// YAML, comma-separated in the environment; the PEM keys map to
// PUBSUB_TLS_*_PEM.
func TestTLSConfigSources(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       broker.StringList
	}{
		{"sequence", "tls:\n  host: [a.example.com, b.example.com]\n", broker.StringList{"a.example.com", "b.example.com"}},
		{"block sequence", "tls:\n  host:\n    - a.example.com\n", broker.StringList{"a.example.com"}},
		{"scalar", "tls:\n  host: a.example.com\n", broker.StringList{"a.example.com"}},
		{"comma scalar", "tls:\n  host: \"a.example.com, b.example.com\"\n", broker.StringList{"a.example.com", "b.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := broker.DefaultConfig()
			require.NoError(t, broker.LoadConfigFile(&cfg, writeFile(t, t.TempDir(), "pubsub.yaml", []byte(tc.yaml))))
			require.Equal(t, tc.want, cfg.TLS.Host)
			// Printed back (--print-config), it reads in again the same.
			out, err := yaml.Marshal(cfg)
			require.NoError(t, err)
			again := broker.DefaultConfig()
			require.NoError(t, broker.LoadConfigFile(&again, writeFile(t, t.TempDir(), "again.yaml", out)))
			require.Equal(t, tc.want, again.TLS.Host)
		})
	}
	t.Run("wrong type", func(t *testing.T) {
		cfg := broker.DefaultConfig()
		err := broker.LoadConfigFile(&cfg, writeFile(t, t.TempDir(), "pubsub.yaml", []byte("tls:\n  host: {a: b}\n")))
		require.Error(t, err)
	})
	t.Run("environment", func(t *testing.T) {
		env := map[string]string{
			"PUBSUB_TLS_HOST":       "a.example.com, b.example.com",
			"PUBSUB_TLS_LISTEN":     ":443",
			"PUBSUB_TLS_CERT_PEM":   "c",
			"PUBSUB_TLS_KEY_PEM":    "k",
			"PUBSUB_TLS_ACME_EMAIL": "ops@example.com",
		}
		cfg := broker.DefaultConfig()
		require.NoError(t, broker.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
		require.Equal(t, broker.TLSConfig{
			Listen: ":443", CertPEM: "c", KeyPEM: "k",
			Host: broker.StringList{"a.example.com", "b.example.com"}, ACMEEmail: "ops@example.com",
		}, cfg.TLS)
	})
	for _, key := range []string{"tls.listen", "tls.cert_file", "tls.key_file", "tls.cert_pem", "tls.key_pem", "tls.host", "tls.acme_cache", "tls.acme_email"} {
		require.Contains(t, broker.ConfigKeys(), key)
	}
}

// TestTLSACME: with tls.host the certificate comes from autocert. No ACME
// server is contacted: the cache is seeded with a certificate for the
// allowed name (autocert's cache format: private key PEM, then the chain),
// so the test checks what the node builds — host policy, cache directory,
// HTTP-01 handler on the plain port — without the network.
func TestTLSACME(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	cache := t.TempDir()
	pair := ca.issue(t, 7, "mqtt.example.com")
	block, _ := pem.Decode(pair.key)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	ecDER, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	entry := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), pair.cert...)
	writeFile(t, cache, "mqtt.example.com", entry)

	srv, logs := startTLSNode(t, func(c *broker.Config) {
		c.TLS.Host = broker.StringList{"mqtt.example.com"}
		c.TLS.ACMECache = cache
	})

	t.Run("allowed host served from the cache", func(t *testing.T) {
		tc, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool, ServerName: "mqtt.example.com"})
		require.NoError(t, err)
		require.Equal(t, int64(7), tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64())
		c := newRawClient(t, tc)
		c.mustConnect(mqtt.Connect{ClientID: "acme", CleanSession: true})
	})
	t.Run("other host refused by the policy", func(t *testing.T) {
		// Refused before any ACME request: the policy runs first.
		_, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool, ServerName: "evil.example.net"})
		require.Error(t, err)
		waitFor(t, opTimeout, func() bool {
			return strings.Contains(logs.String(), `host \"evil.example.net\" not configured in HostWhitelist`)
		})
	})
	t.Run("no SNI refused", func(t *testing.T) {
		_, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool})
		require.Error(t, err)
		waitFor(t, opTimeout, func() bool { return strings.Contains(logs.String(), "missing server name") })
	})

	get := func(t *testing.T, host, path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+srv.Addr().String()+path, nil)
		require.NoError(t, err)
		req.Host = host
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: opTimeout}).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	t.Run("http-01 on the plain port", func(t *testing.T) {
		// The challenge path is autocert's: an unknown token for an
		// allowed host is 404, any token for another host 403.
		code, _ := get(t, "mqtt.example.com", "/.well-known/acme-challenge/unknown-token")
		require.Equal(t, http.StatusNotFound, code)
		code, _ = get(t, "evil.example.net", "/.well-known/acme-challenge/unknown-token")
		require.Equal(t, http.StatusForbidden, code)
		// Everything else reaches the node's own handler, not a redirect.
		code, body := get(t, "mqtt.example.com", "/healthz")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "ok")
	})
}

// TestTLSACMEDefaultCache: without tls.acme_cache the cache is
// DATA_DIR/acme, owner-only (F9).
func TestTLSACMEDefaultCache(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.TLS.Host = broker.StringList{"mqtt.example.com"}
	srv, err := broker.New(cfg, nil)
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	st, err := os.Stat(filepath.Join(cfg.DataDir, "acme"))
	require.NoError(t, err)
	require.True(t, st.IsDir())
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}

// TestTLSPortInUse: a taken tls.listen fails Start, and the plain port it
// bound first is released (I2: no partial start).
func TestTLSPortInUse(t *testing.T) {
	ca := newTestCA(t, "pubsub test CA")
	pair := ca.issue(t, 1)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	plainAddr := free.Addr().String()
	require.NoError(t, free.Close())

	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = plainAddr
	cfg.TLS = broker.TLSConfig{Listen: taken.Addr().String(), CertPEM: string(pair.cert), KeyPEM: string(pair.key)}
	srv, err := broker.New(cfg, nil)
	require.NoError(t, err)
	err = srv.Start()
	require.Error(t, err)
	require.Contains(t, err.Error(), "tls.listen")
	require.NoError(t, srv.Close())
	ln, err := net.Listen("tcp", plainAddr)
	require.NoError(t, err, "the plain port is released after the failed start")
	require.NoError(t, ln.Close())
}

// FuzzTLSConfigPEM feeds arbitrary certificate and key text to the PEM
// loader through Config.Validate: it must never panic, and every refusal is
// a *ConfigError naming one of the TLS keys.
func FuzzTLSConfigPEM(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	pair := ca.issue(f, 1)
	other := ca.issue(f, 2)
	f.Add(string(pair.cert), string(pair.key))
	f.Add(string(pair.cert), string(other.key))
	f.Add(string(pair.key), string(pair.cert))
	f.Add(strings.ReplaceAll(string(pair.cert), "\n", `\n`), strings.ReplaceAll(string(pair.key), "\n", `\n`))
	f.Add(string(pair.cert)+string(pair.key), string(pair.cert)+string(pair.key))
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	f.Add("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "")
	f.Add("", "")
	f.Add("\\n", "\x00")
	tlsKeys := map[string]bool{"tls.cert_pem": true, "tls.key_pem": true, "tls.cert_file": true, "tls.key_file": true}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM string) {
		cfg := broker.DefaultConfig()
		cfg.TLS.CertPEM, cfg.TLS.KeyPEM = certPEM, keyPEM
		err := cfg.Validate()
		if err == nil {
			return
		}
		var ce *broker.ConfigError
		if !errors.As(err, &ce) || !tlsKeys[ce.Key] {
			t.Fatalf("refusal %v does not name a TLS key", err)
		}
	})
}

// ---------------------------------------------------------------- benchmarks

// benchTLSNode starts a TLS node for a benchmark.
func benchTLSNode(b *testing.B) (*broker.Server, *x509.CertPool) {
	b.Helper()
	ca := newTestCA(b, "bench CA")
	pair := ca.issue(b, 1)
	cfg := broker.DefaultConfig()
	cfg.Listen, cfg.TLS.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NoAuth = true
	cfg.DataDir = b.TempDir()
	cfg.TLS.CertPEM, cfg.TLS.KeyPEM = string(pair.cert), string(pair.key)
	srv, err := broker.New(cfg, nil)
	require.NoError(b, err)
	require.NoError(b, srv.Start())
	b.Cleanup(func() { require.NoError(b, srv.Close()) })
	return srv, ca.pool
}

// BenchmarkTLSHandshake is one new client per op: TCP connect, a full TLS
// 1.3 handshake with an ECDSA P-256 certificate (no resumption), close. The
// client's half of the work runs in the same process and is included.
func BenchmarkTLSHandshake(b *testing.B) {
	srv, roots := benchTLSNode(b)
	cfg := &tls.Config{RootCAs: roots} // no ClientSessionCache: every op is a full handshake
	addr := srv.TLSAddr().String()
	b.ReportAllocs()
	for b.Loop() {
		nc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		_ = nc.Close()
	}
}

// BenchmarkTLSRoundTrip is one QoS 0 PUBLISH per op from a client to itself
// through the node, plain and over TLS, to show what TLS adds per message
// (one record seal and open on each side).
func BenchmarkTLSRoundTrip(b *testing.B) {
	srv, roots := benchTLSNode(b)
	payload := make([]byte, 256)
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"plain", func() (net.Conn, error) { return net.Dial("tcp", srv.Addr().String()) }},
		{"tls", func() (net.Conn, error) { return tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{RootCAs: roots}) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nc, err := tc.dial()
			require.NoError(b, err)
			defer nc.Close()
			r := mqtt.NewReader(nc, 0)
			next := func(want mqtt.Type) []byte {
				h, body, err := r.Next()
				if err != nil || h.Type != want {
					b.Fatalf("want %v, got %v (%v)", want, h.Type, err)
				}
				return body
			}
			_, err = nc.Write((&mqtt.Connect{ClientID: "bench-" + tc.name, CleanSession: true}).AppendTo(nil))
			require.NoError(b, err)
			next(mqtt.TypeConnack)
			_, err = nc.Write(mqtt.AppendSubscribe(nil, 1, []mqtt.Subscription{{Filter: []byte("bench/rt"), QoS: 0}}))
			require.NoError(b, err)
			next(mqtt.TypeSuback)
			pkt := (&mqtt.Publish{Topic: []byte("bench/rt"), Payload: payload}).AppendTo(nil)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := nc.Write(pkt); err != nil {
					b.Fatal(err)
				}
				next(mqtt.TypePublish)
			}
		})
	}
}
