package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/keys"
	"github.com/pubsub/pubsub/tui"
)

// statsTestInterval is how often test nodes publish snapshots: the node's
// minimum, so tests wait as little as possible.
const statsTestInterval = 100 * time.Millisecond

// startTopBroker runs an in-process node publishing stats every
// statsTestInterval on addr ("127.0.0.1:0" for any port); configure
// adjusts the config. The node is closed when the test ends, or earlier by
// calling the returned stop function.
func startTopBroker(t *testing.T, addr string, configure func(*broker.Config)) (srv *broker.Server, listenAddr string, stop func()) {
	t.Helper()
	srv, listenAddr = startTestNode(t, addr, func(cfg *broker.Config) {
		cfg.Stats.Interval = broker.Duration(statsTestInterval)
		if configure != nil {
			configure(cfg)
		}
	})
	return srv, listenAddr, func() { _ = srv.Close() }
}

// noEnv is an empty environment, so PUBSUB_* and NO_COLOR of the machine
// running the tests do not leak in.
func noEnv(string) (string, bool) { return "", false }

// runTopCLI runs `pubsub top ARGS` through Execute, as main does.
func runTopCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: noEnv}
	code = Execute(ctx, append([]string{"top"}, args...), streams, BuildInfo{})
	return code, out.String(), errOut.String()
}

func TestTopFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantMode topMode
		wantErr  string // substring of the usage error; "" for none
		check    func(*testing.T, topOptions)
	}{
		{name: "defaults", args: nil, wantMode: topModeTUI, check: func(t *testing.T, o topOptions) {
			require.Equal(t, time.Second, o.interval)
			require.Equal(t, 5*time.Second, o.timeout)
			require.Equal(t, client.DefaultServer, o.client.server)
		}},
		{name: "server and key from the environment", env: map[string]string{"PUBSUB_SERVER": "ws://n1:8080", "PUBSUB_KEY": "k"}, wantMode: topModeTUI,
			check: func(t *testing.T, o topOptions) {
				require.Equal(t, "ws://n1:8080", o.client.server)
				require.Equal(t, "k", o.client.key)
			}},
		{name: "once", args: []string{"--once"}, wantMode: topModeOnce},
		{name: "once json with timeout", args: []string{"--once", "--json", "-W", "2s", "-i", "250ms"}, wantMode: topModeOnce,
			check: func(t *testing.T, o topOptions) {
				require.True(t, o.json)
				require.Equal(t, 2*time.Second, o.timeout)
				require.Equal(t, 250*time.Millisecond, o.interval)
			}},
		{name: "once with redundant no-tui", args: []string{"--once", "--no-tui"}, wantMode: topModeOnce},
		{name: "tui with relay", args: []string{"--statsd", "127.0.0.1:8125"}, wantMode: topModeTUI},
		{name: "headless relay", args: []string{"--no-tui", "--statsd", "127.0.0.1:8125"}, wantMode: topModeRelay},
		{name: "relay with tags", args: []string{"--no-tui", "--statsd", "127.0.0.1:8125", "--statsd-tags-format", "datadog", "--statsd-tag", "env=prod", "--statsd-tag", "dc=eu"}, wantMode: topModeRelay,
			check: func(t *testing.T, o topOptions) {
				cfg, err := o.statsdConfig()
				require.NoError(t, err)
				require.Equal(t, map[string]string{"env": "prod", "dc": "eu"}, cfg.Tags)
			}},
		{name: "zero interval", args: []string{"--interval", "0s"}, wantErr: "--interval"},
		{name: "negative interval", args: []string{"--interval", "-1s"}, wantErr: "--interval"},
		{name: "zero timeout", args: []string{"--once", "--timeout", "0s"}, wantErr: "--timeout"},
		{name: "json without once", args: []string{"--json"}, wantErr: "--json needs --once"},
		{name: "no-tui without statsd", args: []string{"--no-tui"}, wantErr: "--no-tui needs --statsd"},
		{name: "statsd with once", args: []string{"--once", "--statsd", "127.0.0.1:8125"}, wantErr: "cannot go with --once"},
		{name: "statsd prefix without statsd", args: []string{"--statsd-prefix", "x"}, wantErr: "need --statsd"},
		{name: "tag without format", args: []string{"--statsd", "127.0.0.1:8125", "--statsd-tag", "a=b"}, wantErr: "--statsd-tags-format"},
		{name: "tag without value", args: []string{"--statsd", "127.0.0.1:8125", "--statsd-tags-format", "influxdb", "--statsd-tag", "novalue"}, wantErr: "key=value"},
		{name: "unknown tags format", args: []string{"--statsd", "127.0.0.1:8125", "--statsd-tags-format", "graphite"}, wantErr: "tags_format"},
		{name: "prefix with a delimiter", args: []string{"--statsd", "127.0.0.1:8125", "--statsd-prefix", "a:b"}, wantErr: "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			streams := Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, Env: env}
			var got topOptions
			var mode topMode
			cmd := newTopCommand(streams, func(_ context.Context, o topOptions, _ Streams) error {
				got = o
				var err error
				mode, err = o.mode()
				return err
			})
			cmd.SetArgs(tt.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tt.wantErr)
				var ee *exitError
				require.True(t, errors.As(err, &ee), "want a usage error, got %T", err)
				require.Equal(t, ExitUsage, ee.code)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantMode, mode)
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestTopUsageExitCodes runs refusals through Execute: exit 2, one line,
// and nothing dialled (no node listens on the address).
func TestTopUsageExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"positional argument", []string{"extra"}, "unknown command"},
		{"json without once", []string{"--json"}, "--json needs --once"},
		{"live view into a pipe", []string{"--server", "127.0.0.1:1"}, "stdout is not a terminal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runTopCLI(context.Background(), tt.args...)
			require.Equal(t, ExitUsage, code, "stderr: %s", stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
		})
	}
}

// publishLoad publishes on load/x until the test ends, so rates move.
func publishLoad(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Dial(ctx, client.Options{Server: addr})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if c.Publish(ctx, "load/x", []byte("payload"), 0, false) != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
	})
}

func TestTopOnceJSON(t *testing.T) {
	verifyNoLeaks(t)
	_, addr, _ := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.NodeName = "once-node" })
	publishLoad(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	code, stdout, stderr := runTopCLI(ctx, "--once", "--json", "--server", addr, "--interval", statsTestInterval.String(), "--timeout", "5s")
	require.Equal(t, ExitOK, code, "stderr: %s", stderr)
	require.Empty(t, stderr, "every node reported twice, so no warning")

	var view tui.ClusterView
	dec := json.NewDecoder(strings.NewReader(stdout))
	require.NoError(t, dec.Decode(&view), "stdout: %s", stdout)
	require.False(t, dec.More(), "stdout must hold one JSON document")
	require.Len(t, view.Nodes, 1)
	row := view.Nodes[0]
	require.Equal(t, "once-node", row.Node)
	require.True(t, row.Up)
	require.True(t, row.HasRates, "--once waits for two snapshots per node")
	require.GreaterOrEqual(t, row.Connections, int64(2), "the publisher and top itself")
	require.Greater(t, row.MessagesInPS, 0.0)
	require.Equal(t, 1, view.Totals.Nodes)
	require.Equal(t, 1, view.Totals.NodesUp)
	require.InDelta(t, statsTestInterval.Seconds(), view.Interval, 1e-9)
}

func TestTopOnceText(t *testing.T) {
	verifyNoLeaks(t)
	_, addr, _ := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.NodeName = "text-node" })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	code, stdout, stderr := runTopCLI(ctx, "--once", "-s", addr, "-i", statsTestInterval.String())
	require.Equal(t, ExitOK, code, "stderr: %s", stderr)
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var header, row string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "NODE"):
			header = l
		case strings.HasPrefix(l, "text-node "):
			row = l
		}
	}
	require.NotEmpty(t, header, "stdout: %s", stdout)
	require.NotEmpty(t, row, "stdout: %s", stdout)
	// A pipe gets every column, however narrow the test's terminal.
	for _, col := range []string{"ADDRESS", "MSG/S IN", "GOROUTINES", "PEERS"} {
		require.Contains(t, header, col)
	}
	require.NotContains(t, stdout, "\x1b[", "no escape sequences into a pipe")
}

// TestTopOnceKeys: reading $SYS/stats needs a master key or one minted
// for it; any other key is refused with one line saying so (exit 1).
func TestTopOnceKeys(t *testing.T) {
	verifyNoLeaks(t)
	srv, addr, _ := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) {
		c.NoAuth = false
		c.NodeName = "auth-node"
	})
	sign := func(c keys.Claims) string {
		k, err := srv.Keyring().Sign(c)
		require.NoError(t, err)
		return k
	}
	tests := []struct {
		name    string
		key     string
		wantErr string // "" for success
	}{
		{"master key", sign(keys.Claims{Perm: "m"}), ""},
		{"key minted for the stats channel", sign(keys.Claims{Perm: "r", Read: []string{"$SYS/stats/#"}}), ""},
		{"key for every ordinary topic", sign(keys.Claims{Perm: "rw", Read: []string{"#"}, Write: []string{"#"}}), "needs a master key"},
		{"no key", "", "no key was given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, stdout, stderr := runTopCLI(ctx, "--once", "--json", "-s", addr, "-k", tt.key, "-i", statsTestInterval.String())
			if tt.wantErr == "" {
				require.Equal(t, ExitOK, code, "stderr: %s", stderr)
				var view tui.ClusterView
				require.NoError(t, json.Unmarshal([]byte(stdout), &view))
				require.Len(t, view.Nodes, 1)
				require.Equal(t, "auth-node", view.Nodes[0].Node)
				return
			}
			require.Equal(t, ExitRuntime, code, "stderr: %s", stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.wantErr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
}

// TestTopOnceNothingInTime: a node that publishes no snapshot within
// --timeout is exit 1 with a hint, not an empty document.
func TestTopOnceNothingInTime(t *testing.T) {
	verifyNoLeaks(t)
	_, addr, _ := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.Stats.Interval = broker.Duration(time.Hour) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	code, stdout, stderr := runTopCLI(ctx, "--once", "-s", addr, "-W", "300ms")
	require.Equal(t, ExitRuntime, code, "stderr: %s", stderr)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "no node reported on $SYS/stats/+ within 300ms")
	require.Less(t, time.Since(start), 5*time.Second, "--timeout bounds the wait")
}

// statsdListener collects the lines a UDP StatsD server on 127.0.0.1
// receives.
type statsdListener struct {
	conn  net.PacketConn
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func listenStatsD(t *testing.T) *statsdListener {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &statsdListener{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		buf := make([]byte, 64<<10)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.lines = append(l.lines, strings.Split(strings.TrimSpace(string(buf[:n])), "\n")...)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-l.done
	})
	return l
}

func (l *statsdListener) addr() string { return l.conn.LocalAddr().String() }

// has reports whether a received line starts with prefix.
func (l *statsdListener) has(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// pollUntil polls cond every few milliseconds until it holds or timeout
// passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncWriter is a buffer the relay logs into while the test reads it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startRelay runs `pubsub top --no-tui --statsd ADDR ARGS` with a short
// reconnect backoff until the returned stop function is called, which
// returns the exit code.
func startRelay(t *testing.T, args ...string) (stderr *syncWriter, stop func() int) {
	t.Helper()
	stderr = &syncWriter{}
	streams := Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: stderr, Env: noEnv}
	root := NewRootCommand(streams, BuildInfo{})
	for _, c := range root.Commands() {
		if c.Name() == "top" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newTopCommand(streams, func(ctx context.Context, o topOptions, s Streams) error {
		o.retryMin, o.retryMax = 10*time.Millisecond, 50*time.Millisecond
		return runTop(ctx, o, s)
	}))
	root.SetArgs(append([]string{"top", "--no-tui"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		code := ExitOK
		if err := root.ExecuteContext(ctx); err != nil {
			code = ExitRuntime
			t.Logf("relay: %v", err)
		}
		exit <- code
	}()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-exit:
			case <-time.After(10 * time.Second):
				t.Error("relay did not stop after its context was cancelled")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stderr, stop
}

func TestTopRelayToStatsD(t *testing.T) {
	verifyNoLeaks(t)
	statsd := listenStatsD(t)
	_, addr, _ := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.NodeName = "relay-node" })
	stderr, stop := startRelay(t, "--statsd", statsd.addr(), "--server", addr, "--interval", statsTestInterval.String())

	// The node started before the relay, so its first snapshot only sets
	// the counters' baseline; the second is relayed in full.
	pollUntil(t, 10*time.Second, "relayed gauge", func() bool { return statsd.has("pubsub.relay-node.connections:") })
	pollUntil(t, 10*time.Second, "relayed counter", func() bool { return statsd.has("pubsub.relay-node.messages_in:") })
	require.Equal(t, ExitOK, stop(), "an interrupted relay exits 0")
	require.Contains(t, stderr.String(), "relaying cluster stats to StatsD")
}

// TestTopRelayReconnects: when the node goes away, the relay keeps trying
// and resumes with whatever node answers on the address next.
func TestTopRelayReconnects(t *testing.T) {
	verifyNoLeaks(t)
	statsd := listenStatsD(t)
	_, addr, stopFirst := startTopBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.NodeName = "first" })
	stderr, stop := startRelay(t, "--statsd", statsd.addr(), "-s", addr, "-i", statsTestInterval.String())
	pollUntil(t, 10*time.Second, "first node relayed", func() bool { return statsd.has("pubsub.first.connections:") })

	stopFirst()
	pollUntil(t, 10*time.Second, "lost connection logged", func() bool { return strings.Contains(stderr.String(), "reconnecting") })
	startTopBroker(t, addr, func(c *broker.Config) { c.NodeName = "second" })
	pollUntil(t, 10*time.Second, "second node relayed", func() bool { return statsd.has("pubsub.second.connections:") })
	require.Contains(t, stderr.String(), "stats connection restored")
	require.Equal(t, ExitOK, stop())
}

func TestTopReconnectFatalErrors(t *testing.T) {
	tests := []struct {
		err   error
		fatal bool
	}{
		{&client.ConnackError{Code: 5}, true},
		{&client.ConnackError{Code: 4}, true},
		{&client.ConnackError{Code: 3}, false}, // server unavailable: try again
		{errStatsRefused, true},
		{errors.New("dial tcp: connection refused"), false},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.fatal, isFatal(tt.err), "%v", tt.err)
	}
}

func TestTopJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, time.Millisecond, topRetryMax} {
		for range 100 {
			got := jitter(d)
			require.GreaterOrEqual(t, got, d/2)
			require.LessOrEqual(t, got, max(d, d/2))
			if d >= 2 {
				require.Less(t, got, d)
			}
		}
	}
}
