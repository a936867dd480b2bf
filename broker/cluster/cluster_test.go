package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
)

func TestJoinAndMembers(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, nil)
	for _, n := range nodes {
		members := n.Members()
		require.Len(t, members, 3, "%s members", n.Name())
		for _, m := range members {
			require.Equal(t, StateAlive, m.State, "%s sees %s", n.Name(), m.Name)
			require.Equal(t, "v-test", m.Version)
			require.True(t, strings.HasPrefix(m.GossipAddr, "127.0.0.1:"), m.GossipAddr)
			require.True(t, strings.HasPrefix(m.PeerAddr, "127.0.0.1:"), m.PeerAddr)
			require.NotEqual(t, m.GossipAddr, m.PeerAddr)
		}
	}
	// Every pair ends up with a link (Members would say suspect otherwise
	// after LinkSuspectAfter); check it directly.
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() bool {
			st := n.Stats()
			if len(st.Peers) != 2 {
				return false
			}
			for _, p := range st.Peers {
				if !p.Connected {
					return false
				}
			}
			return true
		}, "%s: links not all up: %+v", n.Name(), n.Stats().Peers)
	}
}

func TestInterestGossip(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	require.NoError(t, n2.AddInterest("sensors/+/temp"))
	waitInterested(t, n1, "sensors/a/temp", "n2")
	waitInterested(t, n3, "sensors/a/temp", "n2")
	require.Empty(t, n1.Interested([]byte("sensors/a/hum")))
	require.Empty(t, n2.Interested([]byte("sensors/a/temp")), "a node is never interested in itself")

	// Refcounted: a second subscription and one removal leave it in place.
	require.NoError(t, n2.AddInterest("sensors/+/temp"))
	require.True(t, n2.RemoveInterest("sensors/+/temp"))
	require.Equal(t, []string{"sensors/+/temp"}, n2.LocalInterest())
	require.True(t, n2.RemoveInterest("sensors/+/temp"))
	require.False(t, n2.RemoveInterest("sensors/+/temp"))
	waitInterested(t, n1, "sensors/a/temp")
	waitInterested(t, n3, "sensors/a/temp")

	// Shared subscriptions are interest in their inner filter.
	require.NoError(t, n3.AddInterest("$share/workers/jobs/#"))
	require.NoError(t, n2.AddInterest("jobs/+"))
	waitInterested(t, n1, "jobs/7", "n2", "n3")
	waitInterested(t, n1, "jobs/7/x", "n3")

	// A set too large for a gossip packet travels as a digest and is
	// fetched over the peer link.
	var big []string
	for i := range 500 {
		big = append(big, fmt.Sprintf("big/%d/#", i))
	}
	require.NoError(t, n3.SetInterest(big))
	waitInterested(t, n1, "big/499/x", "n3")
	waitInterested(t, n2, "big/0", "n3")
	waitInterested(t, n1, "jobs/7", "n2") // SetInterest replaced the shared filter

	require.Error(t, n1.AddInterest("a/#/b"))
	require.Error(t, n1.SetInterest([]string{"ok", "bad/#/x"}))
	require.Empty(t, n1.LocalInterest(), "a failed SetInterest changes nothing")
}

func TestLinkDeliversOnce(t *testing.T) {
	boxes := map[string]*inbox{"n1": {}, "n2": {}, "n3": {}}
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, func(c *Config) {
		c.OnMessage = boxes[c.Name].onMessage
	})
	n1, n2 := nodes[0], nodes[1]

	msg := Message{
		Topic: []byte("chat/room1"), Payload: []byte("hello"), QoS: 1, Retain: true,
		Origin: "n1", ID: []byte{1, 2, 3, 4},
	}
	marker := Message{Topic: []byte("marker"), Origin: "n1"}
	// n1 dials n2; n2 answers on the link n1 opened: test both directions.
	sendUntilQueued(t, n1, "n2", msg)
	sendUntilQueued(t, n1, "n2", marker)
	eventually(t, 5*time.Second, func() bool { return boxes["n2"].len() == 2 }, "n2 got %d messages", boxes["n2"].len())
	got := boxes["n2"].all()
	require.Equal(t, received{from: "n1", msg: msg}, got[0], "exactly once, intact, before the marker")
	require.Equal(t, "marker", string(got[1].msg.Topic))

	reply := Message{Topic: []byte("chat/room1"), Payload: []byte("hi back"), Origin: "n2", ID: []byte("x")}
	sendUntilQueued(t, n2, "n1", reply)
	eventually(t, 5*time.Second, func() bool { return boxes["n1"].len() == 1 }, "n1 got %d", boxes["n1"].len())
	require.Equal(t, received{from: "n2", msg: reply}, boxes["n1"].all()[0])
	require.Zero(t, boxes["n3"].len())

	// Errors, never a panic or a block.
	require.ErrorIs(t, n1.Send("nobody", msg), ErrUnknownPeer)
	require.ErrorIs(t, n1.Send("n2", Message{}), ErrInvalidMessage)
	require.ErrorIs(t, n1.Send("n2", Message{Topic: []byte("t"), QoS: 3}), ErrInvalidMessage)
	require.ErrorIs(t, n1.Send("n2", Message{Topic: []byte("t"), Payload: make([]byte, DefaultMaxFrameBytes+1)}), ErrTooLarge)
}

// sendUntilQueued sends m once the link to peer exists (a member's link is
// created when gossip reports it, and is usable before it connects).
func sendUntilQueued(t *testing.T, n *Node, peer string, m Message) {
	t.Helper()
	var err error
	eventually(t, 5*time.Second, func() bool {
		err = n.Send(peer, m)
		return !errors.Is(err, ErrUnknownPeer)
	}, "%s: Send(%s): %v", n.Name(), peer, err)
	require.NoError(t, err)
}

// TestFailureAndRestart covers G1 (a killed node is declared dead within
// a bound, its interest and link dropped, the survivors unaffected) and G2
// (it restarts under the same name and addresses, rejoins without a
// duplicate, and its interest is gossiped again).
func TestFailureAndRestart(t *testing.T) {
	boxes := map[string]*inbox{"n1": {}, "n2": {}}
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, func(c *Config) {
		if b := boxes[c.Name]; b != nil {
			c.OnMessage = b.onMessage
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	require.NoError(t, n3.AddInterest("orders/#"))
	waitInterested(t, n1, "orders/1", "n3")
	old := n3.LocalMember()

	require.NoError(t, n3.Shutdown()) // no Leave: a crash as far as the others know
	killed := time.Now()
	for _, n := range []*Node{n1, n2} {
		eventually(t, 10*time.Second, func() bool {
			s, _ := stateOf(n, "n3")
			return s == StateDead
		}, "%s never declared n3 dead", n.Name())
		require.Empty(t, n.Interested([]byte("orders/1")), "%s still routes to dead n3", n.Name())
		require.ErrorIs(t, n.Send("n3", Message{Topic: []byte("orders/1")}), ErrUnknownPeer)
	}
	t.Logf("n3 declared dead by both survivors after %v", time.Since(killed).Round(time.Millisecond))

	// The survivors keep talking to each other.
	sendUntilQueued(t, n1, "n2", Message{Topic: []byte("still/up")})
	eventually(t, 5*time.Second, func() bool { return boxes["n2"].len() == 1 }, "n1 -> n2 after the failure")

	// Restart with the same name and addresses (same data dir, same ports).
	cfg := testConfig("n3")
	cfg.BindAddr, cfg.PeerAddr = old.GossipAddr, old.PeerAddr
	cfg.Seeds = []string{n1.LocalMember().GossipAddr}
	restarted := time.Now()
	n3 = startNode(t, cfg)
	require.NoError(t, n3.AddInterest("orders/#"))
	for _, n := range []*Node{n1, n2, n3} {
		waitAlive(t, n, 5*time.Second, "n1", "n2", "n3")
		require.Len(t, n.Members(), 3, "%s: no duplicate or lingering member", n.Name())
	}
	waitInterested(t, n1, "orders/1", "n3")
	waitInterested(t, n2, "orders/1", "n3")
	t.Logf("n3 rejoined and re-advertised after %v", time.Since(restarted).Round(time.Millisecond))
	sendUntilQueued(t, n3, "n1", Message{Topic: []byte("orders/1")})
	eventually(t, 5*time.Second, func() bool { return boxes["n1"].len() == 1 }, "n3 -> n1 after restart")
}

func TestLeave(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, nil)
	n1, n3 := nodes[0], nodes[2]
	require.NoError(t, n3.AddInterest("x"))
	waitInterested(t, n1, "x", "n3")
	require.NoError(t, n3.Leave(2*time.Second))
	eventually(t, 5*time.Second, func() bool {
		s, _ := stateOf(n1, "n3")
		return s == StateLeft
	}, "n1 never saw n3 leave")
	require.Empty(t, n1.Interested([]byte("x")))
	require.NoError(t, n3.Shutdown())
	require.NoError(t, n3.Shutdown(), "idempotent")
}

// TestJoinRejected is G6: a joiner with the wrong key, the wrong label or
// no key at all cannot join, and the cluster view does not change.
func TestJoinRejected(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2"}, nil)
	seed := nodes[0].LocalMember().GossipAddr
	cases := []struct {
		name string
		tune func(*Config)
	}{
		{"wrong key", func(c *Config) { c.SecretKey = []byte("fedcba9876543210fedcba9876543210") }},
		{"wrong label", func(c *Config) { c.Label = "other-cluster" }},
		{"plaintext", func(c *Config) { c.SecretKey = nil }},
		{"short key", func(c *Config) { c.SecretKey = testKey[:16] }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("intruder")
			tc.tune(&cfg)
			cfg.RejoinInterval = time.Hour // only the explicit Join below
			intruder := startNode(t, cfg)
			_, err := intruder.Join(context.Background(), []string{seed})
			require.Error(t, err)
			for _, n := range nodes {
				require.Equal(t, []string{"n1", "n2"}, aliveNames(n), "%s view changed", n.Name())
			}
			require.Equal(t, []string{"intruder"}, aliveNames(intruder))
			require.NoError(t, intruder.Shutdown())
		})
	}
}

// partition drops gossip between groups of nodes: a memberlist Transport
// wrapper refuses packets and streams across groups while active.
type partition struct {
	mu     sync.Mutex
	active bool
	group  map[string]int // gossip address -> group
}

func (p *partition) set(active bool) {
	p.mu.Lock()
	p.active = active
	p.mu.Unlock()
}

func (p *partition) blocked(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active || from == "" {
		return false
	}
	gf, okf := p.group[from]
	gt, okt := p.group[to]
	return okf && okt && gf != gt
}

type partitionedTransport struct {
	memberlist.NodeAwareTransport
	p    *partition
	mu   sync.Mutex
	self string
}

func (t *partitionedTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	aip, aport, err := t.NodeAwareTransport.FinalAdvertiseAddr(ip, port)
	if err == nil {
		t.mu.Lock()
		t.self = net.JoinHostPort(aip.String(), fmt.Sprint(aport))
		t.mu.Unlock()
	}
	return aip, aport, err
}

func (t *partitionedTransport) blocked(to string) bool {
	t.mu.Lock()
	self := t.self
	t.mu.Unlock()
	return t.p.blocked(self, to)
}

var errPartitioned = errors.New("partitioned")

func (t *partitionedTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil // lost on the wire
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *partitionedTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *partitionedTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		return nil, errPartitioned
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *partitionedTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.blocked(a.Addr) {
		return nil, errPartitioned
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// TestPartitionHeals is G3: {n1,n2} | {n3} until both sides have given
// each other up for longer than GossipToTheDeadTime (after which
// memberlist alone never reconnects them), then heal: the periodic re-join
// restores the full view and n3's interest.
func TestPartitionHeals(t *testing.T) {
	p := &partition{group: map[string]int{}}
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, func(c *Config) {
		c.WrapTransport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			return &partitionedTransport{NodeAwareTransport: inner, p: p}
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	p.mu.Lock()
	p.group[n1.LocalMember().GossipAddr] = 1
	p.group[n2.LocalMember().GossipAddr] = 1
	p.group[n3.LocalMember().GossipAddr] = 2
	p.mu.Unlock()
	require.NoError(t, n3.AddInterest("far/#"))
	waitInterested(t, n1, "far/away", "n3")

	p.set(true)
	deadLongEnough := func(n *Node, name string) bool {
		m, _ := member(n, name)
		return m.State == StateDead && time.Since(m.Since) > 2*gossipToTheDead
	}
	eventually(t, 15*time.Second, func() bool {
		return deadLongEnough(n1, "n3") && deadLongEnough(n2, "n3") &&
			deadLongEnough(n3, "n1") && deadLongEnough(n3, "n2")
	}, "partition not observed: n1 sees %v, n3 sees %v", n1.Members(), n3.Members())
	require.Empty(t, n1.Interested([]byte("far/away")))

	p.set(false)
	healed := time.Now()
	for _, n := range nodes {
		waitAlive(t, n, 15*time.Second, "n1", "n2", "n3")
	}
	waitInterested(t, n1, "far/away", "n3")
	waitInterested(t, n2, "far/away", "n3")
	t.Logf("partition healed after %v", time.Since(healed).Round(time.Millisecond))
}

// TestStartAlone is I6: unreachable seeds do not stop a start; the node
// runs alone, logs once, and joins when a seed appears.
func TestStartAlone(t *testing.T) {
	seedAddr := freeAddr(t)
	logger, logs := newLogCapture()
	cfg := testConfig("n2")
	cfg.Seeds = []string{seedAddr}
	cfg.Logger = logger
	n2 := startNode(t, cfg)
	require.Equal(t, []string{"n2"}, aliveNames(n2))
	eventually(t, 5*time.Second, func() bool {
		return logs.count("cluster seeds unreachable; running as a single node and retrying") == 1
	}, "no warning about unreachable seeds")

	seedCfg := testConfig("n1")
	seedCfg.BindAddr = seedAddr
	startNode(t, seedCfg)
	waitAlive(t, n2, 10*time.Second, "n1", "n2")
	require.Equal(t, 1, logs.count("cluster seeds unreachable; running as a single node and retrying"),
		"the warning is logged once, not on every retry")
}

func TestQuery(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range []*Node{n2, n3} {
		name := n.Name()
		require.NoError(t, n.Handle("echo", func(_ context.Context, body []byte) []byte {
			return append([]byte(name+":"), body...)
		}))
	}
	release := make(chan struct{})
	hadDeadline := make(chan bool, 1)
	require.NoError(t, n3.Handle("slow", func(ctx context.Context, _ []byte) []byte {
		_, ok := ctx.Deadline()
		hadDeadline <- ok
		<-release // answers only after the asker has given up
		return []byte("late")
	}))
	require.NoError(t, n2.Handle("slow", func(context.Context, []byte) []byte { return []byte("quick") }))

	// Links connect asynchronously; the first query may race them.
	eventually(t, 5*time.Second, func() bool {
		got, err := n1.Query(context.Background(), "echo", []byte("hi"))
		return err == nil && len(got) == 2
	}, "echo query never reached both peers")
	got, err := n1.Query(context.Background(), "echo", []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"n2": []byte("n2:hi"), "n3": []byte("n3:hi")}, got)

	got, err = n1.Query(context.Background(), "nobody-handles-this", nil)
	require.NoError(t, err)
	require.Empty(t, got)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err = n1.Query(ctx, "slow", nil)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"n2": []byte("quick")}, got, "the deadline cuts off n3")
	close(release)
	require.True(t, <-hadDeadline, "the asker's deadline reaches the handler")

	require.NoError(t, n2.Handle("echo", nil)) // removed
	got, err = n1.Query(context.Background(), "echo", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"n3"}, slices.Sorted(maps.Keys(got)))

	for _, kind := range []string{"", "$interest", strings.Repeat("k", 256)} {
		_, err := n1.Query(context.Background(), kind, nil)
		require.ErrorIs(t, err, ErrInvalidKind, "kind %q", kind)
		require.ErrorIs(t, n1.Handle(kind, nil), ErrInvalidKind)
	}
	_, err = n1.Query(context.Background(), "echo", make([]byte, DefaultMaxFrameBytes))
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestMemberChangeEvents(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(m Member) {
		mu.Lock()
		events = append(events, m.Name+"="+m.State.String())
		mu.Unlock()
	}
	nodes := startCluster(t, []string{"n1", "n2"}, func(c *Config) {
		if c.Name == "n1" {
			c.OnMemberChange = record
		}
	})
	require.NoError(t, nodes[1].Leave(2*time.Second))
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(events, "n2=left")
	}, "no leave event")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"n1=alive", "n2=alive", "n2=left"}, events)
}
