package stats

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexcesaro/statsd"
	"github.com/stretchr/testify/require"
)

// statsdServer is a real UDP socket on 127.0.0.1 that collects StatsD lines.
type statsdServer struct {
	t    *testing.T
	conn net.PacketConn
}

func newStatsdServer(t *testing.T) *statsdServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &statsdServer{t: t, conn: conn}
}

func (s *statsdServer) addr() string { return s.conn.LocalAddr().String() }

// readUntil reads datagrams until the line for bucket has arrived and
// returns every line read. The read deadline bounds a lost datagram.
func (s *statsdServer) readUntil(bucket string) []string {
	s.t.Helper()
	var lines []string
	buf := make([]byte, 64<<10)
	require.NoError(s.t, s.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		n, _, err := s.conn.ReadFrom(buf)
		require.NoError(s.t, err, "waiting for %q; got %q", bucket, lines)
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			lines = append(lines, line)
			if strings.HasPrefix(line, bucket) {
				return lines
			}
		}
	}
}

// recordingHandler is a slog.Handler that keeps the records it is given.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		out = append(out, r.Level.String()+" "+r.Message)
	}
	return out
}

// freshSnapshot is a snapshot of a node that started just now, so a sink
// created just before counts its counters from zero.
func freshSnapshot(node string, uptime time.Duration) Snapshot {
	return Snapshot{
		Schema: SchemaVersion, Node: node, Time: time.Now(), Uptime: uptime.Seconds(),
		Connections: 4, Subscriptions: 9, Retained: 2, Stored: 30, StoredBytes: 3000, Peers: 2,
		ConnectionsTotal: 10, MessagesIn: 100, MessagesOut: 250, BytesIn: 1000, BytesOut: 2500,
		Dropped: 1, SlowConsumers: 0,
		LatencyP50: 250, LatencyP99: 1500, LatencyP999: 4000, LatencyCount: 250, LatencySum: 70000,
		CPUPercent: 12.5, RSSBytes: 50 << 20, HeapBytes: 20 << 20, Goroutines: 42, GCCount: 3,
	}
}

func TestStatsDLines(t *testing.T) {
	tests := []struct {
		name   string
		format string
		bucket func(metric string) string // how a metric's bucket is written
		suffix string                     // after the type
	}{
		{
			name:   "no tags: node in the bucket",
			format: TagsNone,
			bucket: func(m string) string { return "pubsub.node_1." + m },
		},
		{
			name:   "datadog",
			format: TagsDatadog,
			bucket: func(m string) string { return "pubsub." + m },
			suffix: "|#env:test,region:eu,node:node_1",
		},
		{
			name:   "influxdb",
			format: TagsInfluxDB,
			bucket: func(m string) string { return "pubsub." + m + ",env=test,region=eu,node=node_1" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := newStatsdServer(t)
			sink := NewStatsD(StatsDConfig{
				Address: server.addr(), TagsFormat: tt.format,
				Tags: map[string]string{"region": "eu", "env": "test"},
			}, nil)
			defer sink.Close()

			// "node.1": the dot would split the bucket, so it is sent as node_1.
			first := freshSnapshot("node.1", time.Second)
			sink.Send(first)
			lines := server.readUntil(tt.bucket("latency_p999"))
			want := map[string]string{ // metric -> value|type
				"connections_total": "10|c", "messages_in": "100|c", "messages_out": "250|c",
				"bytes_in": "1000|c", "bytes_out": "2500|c", "dropped": "1|c", "slow_consumers": "0|c", "gc_count": "3|c",
				"connections": "4|g", "subscriptions": "9|g", "retained": "2|g", "stored": "30|g",
				"stored_bytes": "3000|g", "peers": "2|g", "uptime_seconds": "1|g", "cpu_percent": "12.5|g",
				"rss_bytes": "52428800|g", "heap_bytes": "20971520|g", "goroutines": "42|g",
				"latency_p50": "0.25|ms", "latency_p99": "1.5|ms", "latency_p999": "4|ms",
			}
			requireLines(t, lines, want, tt.bucket, tt.suffix)

			// The next snapshot's counters arrive as deltas; gauges as values.
			second := first
			second.Time = first.Time.Add(time.Second)
			second.Uptime = 2
			second.MessagesIn += 7
			second.BytesIn += 70
			second.Connections = -1 // a transiently negative gauge
			second.LatencyCount += 5
			sink.Send(second)
			lines = server.readUntil(tt.bucket("latency_p999"))
			requireLines(t, lines, map[string]string{
				"messages_in": "7|c", "bytes_in": "70|c", "messages_out": "0|c", "uptime_seconds": "2|g",
				"connections": "-1|g",
			}, tt.bucket, tt.suffix)

			// A restarted node (uptime went down) counts from zero again.
			restarted := freshSnapshot("node.1", time.Second)
			restarted.Time = second.Time.Add(time.Second)
			restarted.MessagesIn = 3
			restarted.LatencyCount = 0 // no deliveries: no timings
			sink.Send(restarted)
			lines = server.readUntil(tt.bucket("goroutines"))
			requireLines(t, lines, map[string]string{"messages_in": "3|c", "messages_out": "250|c"}, tt.bucket, tt.suffix)
		})
	}
}

// requireLines checks that each wanted metric appears in lines with its
// value and type.
func requireLines(t *testing.T, lines []string, want map[string]string, bucket func(string) string, suffix string) {
	t.Helper()
	for metric, valueType := range want {
		line := bucket(metric) + ":" + valueType + suffix
		require.Contains(t, lines, line, "metric %s", metric)
	}
}

func TestStatsDRelayBaseline(t *testing.T) {
	server := newStatsdServer(t)
	sink := NewStatsD(StatsDConfig{Address: server.addr()}, nil)
	defer sink.Close()

	// A node up for a day when the relay starts: its first snapshot only
	// sets the baseline, so the relay does not report a day of traffic as
	// one interval.
	old := freshSnapshot("old", 24*time.Hour)
	old.MessagesIn = 1_000_000
	sink.Send(old)
	next := old
	next.Time = old.Time.Add(time.Second)
	next.Uptime++
	next.MessagesIn += 5
	sink.Send(next)
	lines := server.readUntil("pubsub.old.goroutines")
	require.Contains(t, lines, "pubsub.old.messages_in:5|c")
	require.NotContains(t, lines, "pubsub.old.messages_in:1000000|c")
	require.NotContains(t, lines, "pubsub.old.messages_in:1000005|c")
}

func TestStatsDManyNodes(t *testing.T) {
	server := newStatsdServer(t)
	sink := NewStatsD(StatsDConfig{Address: server.addr(), Prefix: "cluster.a"}, nil)
	defer sink.Close()
	a := freshSnapshot("a", time.Second)
	b := freshSnapshot("b", time.Second)
	b.MessagesIn = 40
	sink.Send(a)
	lines := server.readUntil("cluster.a.a.latency_p999")
	sink.Send(b)
	lines = append(lines, server.readUntil("cluster.a.b.latency_p999")...)
	require.Contains(t, lines, "cluster.a.a.messages_in:100|c")
	require.Contains(t, lines, "cluster.a.b.messages_in:40|c")
}

func TestStatsDDialFailureLoggedOnce(t *testing.T) {
	logs := &recordingHandler{}
	// No port: the dial fails at once, deterministically.
	sink := NewStatsD(StatsDConfig{Address: "127.0.0.1"}, slog.New(logs))
	defer sink.Close()
	for i := 0; i < 5; i++ {
		sink.Send(freshSnapshot("n", time.Second))
	}
	require.Equal(t, []string{"WARN statsd unreachable; metrics not sent, retrying quietly"}, logs.messages())

	// Retries are paced; when the server appears the sink recovers and says so.
	server := newStatsdServer(t)
	sink.mu.Lock()
	sink.redial = 0
	failures := 2
	sink.dial = func() (*statsd.Client, error) {
		if failures > 0 {
			failures--
			return nil, errors.New("still down")
		}
		sink.cfg.Address = server.addr()
		return sink.newClient()
	}
	sink.mu.Unlock()
	for i := 0; i < 3; i++ {
		sink.Send(freshSnapshot("n", time.Second))
	}
	require.Contains(t, server.readUntil("pubsub.n.messages_in"), "pubsub.n.messages_in:100|c")
	require.Equal(t, []string{
		"WARN statsd unreachable; metrics not sent, retrying quietly",
		"INFO statsd reachable again",
	}, logs.messages())
}

func TestStatsDWriteErrorLoggedOnce(t *testing.T) {
	logs := &recordingHandler{}
	server := newStatsdServer(t)
	sink := NewStatsD(StatsDConfig{Address: server.addr()}, slog.New(logs))
	defer sink.Close()
	require.NoError(t, server.conn.Close()) // the server goes away: writes start failing (ECONNREFUSED)
	deadline := time.Now().Add(5 * time.Second)
	for len(logs.messages()) == 0 && time.Now().Before(deadline) {
		sink.Send(freshSnapshot("n", time.Second))
	}
	for i := 0; i < 5; i++ {
		sink.Send(freshSnapshot("n", time.Second))
	}
	require.Equal(t, []string{"WARN statsd write failed; further write errors not logged"}, logs.messages())
}

func TestStatsDConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     StatsDConfig
		wantErr string
	}{
		{"minimal", StatsDConfig{Address: "localhost:8125"}, ""},
		{"full", StatsDConfig{Address: "localhost:8125", Prefix: "prod.pubsub", TagsFormat: TagsDatadog, Tags: map[string]string{"env": "prod"}}, ""},
		{"no address", StatsDConfig{}, "address"},
		{"unknown format", StatsDConfig{Address: "x:1", TagsFormat: "graphite"}, "tags_format"},
		{"prefix with colon", StatsDConfig{Address: "x:1", Prefix: "a:b"}, "prefix"},
		{"tag with pipe", StatsDConfig{Address: "x:1", TagsFormat: TagsInfluxDB, Tags: map[string]string{"a": "b|c"}}, "tags"},
		{"empty tag key", StatsDConfig{Address: "x:1", TagsFormat: TagsInfluxDB, Tags: map[string]string{"": "b"}}, "tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestStatsDInvalidConfigAndClose(t *testing.T) {
	logs := &recordingHandler{}
	sink := NewStatsD(StatsDConfig{Address: "x:1", TagsFormat: "bogus"}, slog.New(logs))
	sink.Send(freshSnapshot("n", time.Second)) // no effect, no panic
	sink.Close()
	require.Equal(t, []string{"ERROR statsd disabled: invalid configuration"}, logs.messages())

	server := newStatsdServer(t)
	sink = NewStatsD(StatsDConfig{Address: server.addr()}, nil)
	sink.Close()
	sink.Close() // idempotent
	sink.Send(freshSnapshot("n", time.Second))
	sink.Send(Snapshot{}) // no node: ignored
}

func BenchmarkStatsDSend(b *testing.B) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(b, err)
	defer conn.Close()
	sink := NewStatsD(StatsDConfig{Address: conn.LocalAddr().String()}, nil)
	defer sink.Close()
	snap := freshSnapshot("n", time.Second)
	b.ReportAllocs()
	for b.Loop() {
		snap.MessagesIn++
		sink.Send(snap)
	}
}
