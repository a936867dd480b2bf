package cli

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
)

// startTestNode runs an in-process node for the command tests: listening
// on addr ("127.0.0.1:0" for any port), its own data dir, no auth unless
// configure turns it on. It is closed when the test ends (Close is
// idempotent, so a test may also close it early).
func startTestNode(tb testing.TB, addr string, configure func(*broker.Config)) (*broker.Server, string) {
	tb.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = addr
	cfg.DataDir = tb.TempDir()
	cfg.LogLevel = "error"
	cfg.NoAuth = true
	if configure != nil {
		configure(&cfg)
	}
	srv, err := broker.New(cfg, nil)
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(tb, err)
	srv.Serve(ln)
	tb.Cleanup(func() { _ = srv.Close() })
	return srv, ln.Addr().String()
}
