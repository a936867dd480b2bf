package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

const (
	testLabel = "pubsub-test"
	// gossipToTheDead is shrunk from 30 s so the partition test can outlast
	// it in well under a second (G3).
	gossipToTheDead = 300 * time.Millisecond
)

// fastGossip shrinks memberlist's timers as serf's tests do, while leaving
// enough slack that -race on two busy cores does not fake failures.
func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 80 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = 500 * time.Millisecond
	c.GossipToTheDeadTime = gossipToTheDead
	c.TCPTimeout = time.Second
	c.DeadNodeReclaimTime = 50 * time.Millisecond
}

// testLogger discards logs unless CLUSTER_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig(name string) Config {
	return Config{
		Name:           name,
		BindAddr:       "127.0.0.1:0",
		PeerAddr:       "127.0.0.1:0",
		SecretKey:      testKey,
		Label:          testLabel,
		Version:        "v-test",
		Logger:         testLogger(),
		RejoinInterval: 300 * time.Millisecond,
		TuneMemberlist: fastGossip,
	}
}

// startNode creates and starts a node that is shut down with the test.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	return n
}

// startCluster starts nodes named names, each seeded with the first.
func startCluster(t testing.TB, names []string, tune func(*Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i, name := range names {
		cfg := testConfig(name)
		if i > 0 {
			cfg.Seeds = []string{nodes[0].LocalMember().GossipAddr}
		}
		if tune != nil {
			tune(&cfg)
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	for _, n := range nodes {
		waitAlive(t, n, 5*time.Second, names...)
	}
	return nodes
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// member returns n's view of name.
func member(n *Node, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func stateOf(n *Node, name string) (State, bool) {
	m, ok := member(n, name)
	return m.State, ok
}

// aliveNames returns the members n sees as alive (suspect counts: the
// gossip says alive), sorted.
func aliveNames(n *Node) []string {
	var out []string
	for _, m := range n.Members() {
		if m.State == StateAlive || m.State == StateSuspect {
			out = append(out, m.Name)
		}
	}
	return out
}

func waitAlive(t testing.TB, n *Node, timeout time.Duration, names ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(names))
	eventually(t, timeout, func() bool { return slices.Equal(aliveNames(n), want) },
		"%s sees %v alive, want %v", n.Name(), aliveNames(n), want)
}

func interested(n *Node, topic string) []string {
	return slices.Sorted(slices.Values(n.Interested([]byte(topic))))
}

func waitInterested(t testing.TB, n *Node, topic string, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, 5*time.Second, func() bool { return slices.Equal(interested(n, topic), want) },
		"%s: Interested(%q) = %v, want %v", n.Name(), topic, interested(n, topic), want)
}

// received is a copy of a message taken inside OnMessage.
type received struct {
	from string
	msg  Message
}

// inbox collects messages delivered to OnMessage.
type inbox struct {
	mu   sync.Mutex
	msgs []received
}

func (b *inbox) onMessage(from string, m Message) {
	cp := Message{
		Topic:   bytes.Clone(m.Topic),
		Payload: bytes.Clone(m.Payload),
		QoS:     m.QoS,
		Retain:  m.Retain,
		Origin:  m.Origin,
		ID:      bytes.Clone(m.ID),
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, received{from: from, msg: cp})
	b.mu.Unlock()
}

func (b *inbox) all() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// logCapture is a slog handler that records messages for assertions.
type logCapture struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newLogCapture() (*slog.Logger, *logCapture) {
	c := &logCapture{mu: &sync.Mutex{}, msgs: new([]string)}
	return slog.New(c), c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	*c.msgs = append(*c.msgs, r.Message)
	c.mu.Unlock()
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range *c.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// freeAddr returns a loopback address whose TCP and UDP ports were free a
// moment ago, for a node that must start later at a known address.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

func (c *logCapture) contains(substr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range *c.msgs {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}
