package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
)

// selfSigned makes a certificate for 127.0.0.1 and returns cert and key PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pubsub test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// TestClientCommandsOverTLS: --ca makes pub/sub trust a private CA over
// tls:// and wss://; without it the handshake fails with a clear error.
func TestClientCommandsOverTLS(t *testing.T) {
	verifyNoLeaks(t)
	certPEM, keyPEM := selfSigned(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, certPEM, 0o600))

	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.Listen = "127.0.0.1:0"
	cfg.TLS.CertPEM, cfg.TLS.KeyPEM = string(certPEM), string(keyPEM)
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.NoAuth = true
	srv, err := broker.New(cfg, nil)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Close() })
	addr := srv.TLSAddr().String()

	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: func(string) (string, bool) { return "", false }}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		code := Execute(ctx, args, streams, BuildInfo{})
		return out.String(), errOut.String(), code
	}
	for _, scheme := range []string{"tls://", "wss://"} {
		server := scheme + addr
		_, stderr, code := run("pub", "-s", server, "--ca", ca, "-r", "-q", "1", "tls/x", "secure "+scheme)
		require.Equal(t, 0, code, stderr)
		out, stderr, code := run("sub", "-s", server, "--ca", ca, "-C", "1", "-W", "5s", "tls/#")
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "tls/x secure "+scheme+"\n", out)

		_, stderr, code = run("pub", "-s", server, "tls/x", "untrusted")
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "certificate")
	}
	_, stderr, code := run("pub", "-s", "tls://"+addr, "--ca", filepath.Join(t.TempDir(), "missing.pem"), "a", "b")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, "--ca")
}
