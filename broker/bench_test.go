package broker

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// discardConn is a net.Conn whose writes always succeed at once, so the
// benchmarks below measure the broker's own work (match, encode, queue,
// flush), not the kernel's.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { select {} }
func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// benchServer returns a server with n connected sessions subscribed to filter.
func benchServer(b *testing.B, n int, filter string, qos byte) *Server {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Limits.MaxPendingBytes = 1 << 30
	cfg.Limits.MaxInflight = 65535
	cfg.Limits.MaxQueued = 1 << 30
	cfg.NoAuth = true
	cfg.DataDir = b.TempDir()
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() }) // stops the flushers it started
	for i := 0; i < n; i++ {
		c := &conn{srv: s, nc: discardConn{}, connected: true}
		sess := newSession(s, "sub-"+strconv.Itoa(i), true)
		sess.conn.Store(c)
		c.sess = sess
		if code, ok := s.subscribe(sess, filter, qos, 0, nil); !ok {
			b.Fatalf("subscribe %q: code %#x", filter, code)
		}
	}
	return s
}

// BenchmarkFanout routes one QoS 0 PUBLISH to n subscribers per op: trie
// lookup (cached), one encoding, n copies into outbound queues and the
// writers' flushes. DESIGN §3 asks for 0 allocs per delivered message.
func BenchmarkFanout(b *testing.B) {
	payload := make([]byte, 64)
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("qos0-%d", n), func(b *testing.B) {
			s := benchServer(b, n, "bench/+/t", 0)
			topic := []byte("bench/x/t")
			var enc encoder
			b.ReportAllocs()
			b.SetBytes(int64(len(payload) * n))
			for b.Loop() {
				s.publish(&enc, topic, payload, 0, false, nil, false)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFanoutQoS1 shows the cost of QoS 1 delivery: each recipient keeps
// a private copy of the packet until it is acknowledged (one allocation per
// delivery for the copy and one for its record).
func BenchmarkFanoutQoS1(b *testing.B) {
	payload := make([]byte, 64)
	s := benchServer(b, 100, "bench/#", 1)
	topic := []byte("bench/x")
	var enc encoder
	b.ReportAllocs()
	for b.Loop() {
		s.publish(&enc, topic, payload, 1, false, nil, false)
		// Acknowledge everything so the inflight window stays small.
		s.mu.Lock()
		s.mu.Unlock()
		s.trie.Match(topic)
		for _, e := range s.trie.Match(topic).Subs {
			e.Sub.mu.Lock()
			e.Sub.inflight = e.Sub.inflight[:0]
			e.Sub.mu.Unlock()
		}
	}
}
