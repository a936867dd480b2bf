package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
)

func TestGossipRoundTrip(t *testing.T) {
	filters := []string{"a/b", "a/+/c", "#", "$SYS/stats/+"}
	msg := appendInterestMsg(nil, "node-1", 42, filters)
	require.Equal(t, recordLen("node-1", 42, filters)+1, len(msg))
	typ, rec, err := decodeGossip(msg)
	require.NoError(t, err)
	require.Equal(t, gossipInterest, typ)
	require.Equal(t, interestRecord{node: "node-1", version: 42, filters: filters}, rec)

	typ, rec, err = decodeGossip(appendDigestMsg(nil, "node-1", 1<<60))
	require.NoError(t, err)
	require.Equal(t, gossipDigest, typ)
	require.Equal(t, interestRecord{node: "node-1", version: 1 << 60}, rec)

	// Shared filters are normalised and duplicates dropped on decode.
	_, rec, err = decodeGossip(appendInterestMsg(nil, "n", 1, []string{"$share/g/x/#", "x/#", "y"}))
	require.NoError(t, err)
	require.Equal(t, []string{"x/#", "y"}, rec.filters)

	in := newInterest("self", 0, time.Unix(0, 100))
	in.memberUp("a")
	_, _ = in.apply(interestRecord{node: "a", version: 3, filters: []string{"t/#"}}, time.Now())
	_, _ = in.apply(interestRecord{node: "ghost", version: 3, filters: []string{"g"}}, time.Now())
	_, err = in.set([]string{"mine"})
	require.NoError(t, err)
	state := in.appendState(nil, maxStateBytes)
	recs, err := decodeState(state)
	require.NoError(t, err)
	require.Equal(t, []interestRecord{
		{node: "self", version: 101, filters: []string{"mine"}},
		{node: "a", version: 3, filters: []string{"t/#"}},
	}, recs, "own record first; unrouted records are not relayed")
}

// rawRecord builds a record without the encoder's help, so tests can lie
// in its fields.
func rawRecord(node string, version, count uint64, filters ...string) []byte {
	b := appendString(nil, node)
	b = binary.AppendUvarint(b, version)
	b = binary.AppendUvarint(b, count)
	for _, f := range filters {
		b = appendString(b, f)
	}
	return b
}

// badGossip are NotifyMsg payloads every decoder must refuse (G10).
var badGossip = []struct {
	name string
	msg  []byte
}{
	{"empty", nil},
	{"type only", []byte{gossipInterest}},
	{"unknown type", []byte{0x7f, 1, 2, 3}},
	{"oversize", append([]byte{gossipInterest}, make([]byte, maxGossipMessage)...)},
	{"truncated name", []byte{gossipInterest, 10, 'a'}},
	{"empty name", append([]byte{gossipInterest}, rawRecord("", 1, 0)...)},
	{"long name", append([]byte{gossipInterest}, rawRecord(strings.Repeat("n", 256), 1, 0)...)},
	{"version zero", append([]byte{gossipInterest}, rawRecord("n", 0, 0)...)},
	{"count lie", append([]byte{gossipInterest}, rawRecord("n", 1, 1<<40, "a")...)},
	{"count short", append([]byte{gossipInterest}, rawRecord("n", 1, 3, "a", "b")...)},
	{"invalid filter", append([]byte{gossipInterest}, rawRecord("n", 1, 1, "a/#/b")...)},
	{"empty filter", append([]byte{gossipInterest}, rawRecord("n", 1, 1, "")...)},
	{"nul in filter", append([]byte{gossipInterest}, rawRecord("n", 1, 1, "a\x00")...)},
	{"trailing bytes", append(appendInterestMsg(nil, "n", 1, []string{"a"}), 0)},
	{"varint overflow", []byte{gossipInterest, 1, 'n', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}},
	{"digest version zero", appendDigestMsg(nil, "n", 0)},
	{"digest truncated", appendDigestMsg(nil, "n", 300)[:4]},
}

var badState = []struct {
	name  string
	state []byte
}{
	{"wrong type", []byte{gossipInterest, 0}},
	{"garbage", []byte("definitely not state")},
	{"record count lie", []byte{gossipState, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	{"bad record", append([]byte{gossipState, 1}, rawRecord("n", 1, 1, "#/x")...)},
	{"trailing", append(append([]byte{gossipState, 1}, rawRecord("n", 1, 0)...), 9)},
	{"oversize", append([]byte{gossipState, 0}, make([]byte, maxStateBytes)...)},
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range badGossip {
		t.Run("gossip/"+tc.name, func(t *testing.T) {
			_, _, err := decodeGossip(tc.msg)
			require.ErrorIs(t, err, errMalformed)
		})
	}
	for _, tc := range badState {
		t.Run("state/"+tc.name, func(t *testing.T) {
			_, err := decodeState(tc.state)
			require.ErrorIs(t, err, errMalformed)
		})
	}
}

// TestMalformedGossipIgnored is G10: malformed and oversize NotifyMsg and
// MergeRemoteState payloads are counted, logged and ignored; the routing
// table is untouched and nothing panics. The last case arrives over the
// network from a foreign memberlist that holds the key.
func TestMalformedGossipIgnored(t *testing.T) {
	logger, logs := newLogCapture()
	nodes := startCluster(t, []string{"n1", "n2"}, func(c *Config) {
		if c.Name == "n1" {
			c.Logger = logger
		}
	})
	n1, n2 := nodes[0], nodes[1]
	require.NoError(t, n2.AddInterest("keep/#"))
	waitInterested(t, n1, "keep/me", "n2")
	d := &delegate{n: n1}

	want := n1.Stats().MalformedGossip
	for _, tc := range badGossip {
		d.NotifyMsg(tc.msg)
		want++
		eventually(t, 5*time.Second, func() bool { return n1.Stats().MalformedGossip == want },
			"%s: counter %d, want %d", tc.name, n1.Stats().MalformedGossip, want)
	}
	for _, tc := range badState {
		d.MergeRemoteState(tc.state, false)
		want++
		require.Equal(t, want, n1.Stats().MalformedGossip, tc.name)
	}
	// A well-formed record naming a node that is not a member routes
	// nothing.
	d.MergeRemoteState(append([]byte{gossipState, 1}, rawRecord("ghost", 1, 1, "keep/#")...), false)
	require.Equal(t, []string{"n2"}, interested(n1, "keep/me"))
	require.Positive(t, logs.count("cluster gossip rejected"))

	// Over the wire: a memberlist with the cluster's key and label but no
	// pubsub delegate sends garbage as a user message.
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "foreign", "127.0.0.1", 0
	mc.SecretKey, mc.Label = testKey, testLabel
	mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = 1, 1, 1
	mc.LogOutput = &bytes.Buffer{}
	foreign, err := memberlist.Create(mc)
	require.NoError(t, err)
	defer func() { _ = foreign.Shutdown() }()
	host, port, _ := net.SplitHostPort(n1.LocalMember().GossipAddr)
	p, _ := strconv.Atoi(port)
	target := &memberlist.Node{Name: "n1", Addr: net.ParseIP(host), Port: uint16(p)}
	before := n1.Stats().MalformedGossip
	require.NoError(t, foreign.SendReliable(target, []byte{0x7f, 0xde, 0xad}))
	require.NoError(t, foreign.SendReliable(target, append([]byte{gossipInterest}, rawRecord("n2", 1<<62, 1, "a/#/b")...)))
	eventually(t, 5*time.Second, func() bool { return n1.Stats().MalformedGossip == before+2 },
		"network garbage not counted: %d", n1.Stats().MalformedGossip-before)
	// Nor can the foreign memberlist become a member: its metadata is not
	// a pubsub node's.
	_, err = foreign.Join([]string{n1.LocalMember().GossipAddr})
	require.NoError(t, err, "the push/pull itself succeeds")
	eventually(t, 5*time.Second, func() bool { return logs.contains("ignoring alive message for 'foreign'") },
		"n1 did not refuse the foreign node")
	require.Equal(t, []string{"n1", "n2"}, aliveNames(n1))
	require.Equal(t, []string{"n2"}, interested(n1, "keep/me"))
}

func TestNodeMeta(t *testing.T) {
	m := nodeMeta{peerAddr: ":7947", version: "1.2.3"}
	enc := m.appendTo(nil)
	got, err := decodeMeta(enc)
	require.NoError(t, err)
	require.Equal(t, m, got)
	got, err = decodeMeta(append(enc, "future fields"...))
	require.NoError(t, err, "later releases may append fields")
	require.Equal(t, m, got)
	require.Equal(t, "10.0.0.7:7947", resolvePeerAddr(":7947", net.ParseIP("10.0.0.7")))
	require.Equal(t, "[::1]:7947", resolvePeerAddr(":7947", net.ParseIP("::1")))
	require.Equal(t, "h:1", resolvePeerAddr("h:1", net.ParseIP("10.0.0.7")))

	for name, b := range map[string][]byte{
		"empty":        nil,
		"format 2":     {2, 0, 0},
		"no port":      nodeMeta{peerAddr: "host"}.appendTo(nil),
		"port 0":       nodeMeta{peerAddr: "host:0"}.appendTo(nil),
		"long version": append([]byte{metaFormat1, 0}, appendString(nil, strings.Repeat("v", 65))...),
		"truncated":    enc[:len(enc)-1],
	} {
		_, err := decodeMeta(b)
		require.ErrorIs(t, err, errMalformed, name)
	}
}

// TestInterestVersions covers the Lamport rules: newer wins, stale and
// duplicate gossip changes nothing, tombstones stop stale gossip about a
// failed node, and a node that hears of itself jumps its clock.
func TestInterestVersions(t *testing.T) {
	now := time.Now()
	in := newInterest("me", 0, time.Unix(0, 1000))
	match := func(topic string) []string { return in.appendMatches(nil, []byte(topic)) }

	// Not routed until the member is alive.
	accepted, _ := in.apply(interestRecord{node: "a", version: 5, filters: []string{"x/#"}}, now)
	require.True(t, accepted)
	require.Empty(t, match("x/1"))
	in.memberUp("a")
	require.Equal(t, []string{"a"}, match("x/1"))

	accepted, _ = in.apply(interestRecord{node: "a", version: 5, filters: []string{"y"}}, now)
	require.False(t, accepted, "same version: a duplicate")
	accepted, _ = in.apply(interestRecord{node: "a", version: 4, filters: []string{"y"}}, now)
	require.False(t, accepted, "older")
	accepted, _ = in.apply(interestRecord{node: "a", version: 6, filters: []string{"y", "x/#"}}, now)
	require.True(t, accepted)
	require.Equal(t, []string{"a"}, match("y"))
	require.Equal(t, []string{"a"}, match("x/2"))
	fetch, _ := in.newer("a", 6)
	require.False(t, fetch)
	fetch, _ = in.newer("a", 7)
	require.True(t, fetch)
	fetch, _ = in.newer("unknown", 7)
	require.False(t, fetch, "no fetch from a node that is not an alive member")

	in.memberDown("a", now)
	require.Empty(t, match("y"))
	accepted, _ = in.apply(interestRecord{node: "a", version: 6, filters: []string{"y"}}, now)
	require.False(t, accepted, "tombstone refuses stale gossip about a failed node")
	in.memberUp("a") // restarted
	accepted, _ = in.apply(interestRecord{node: "a", version: 2, filters: []string{"z"}}, now)
	require.True(t, accepted, "a live member is the authority again")
	require.Equal(t, []string{"a"}, match("z"))

	// Witness: a record about this node as new as its clock moves it on.
	v, _ := in.localRecord()
	_, witnessed := in.apply(interestRecord{node: "me", version: v - 1}, now)
	require.False(t, witnessed)
	_, witnessed = in.apply(interestRecord{node: "me", version: v + 10}, now)
	require.True(t, witnessed)
	v2, _ := in.localRecord()
	require.Equal(t, v+11, v2)
	_, witnessed = in.newer("me", v2)
	require.True(t, witnessed)

	// Unrouted records are capped.
	for i := range maxUnroutedRecords + 10 {
		in.apply(interestRecord{node: fmt.Sprint("ghost", i), version: 1, filters: []string{"g"}}, now)
	}
	require.Equal(t, maxUnroutedRecords, in.unroutedLocked())
	in.sweep(now.Add(2*time.Hour), time.Hour)
	require.Zero(t, in.unroutedLocked())
	require.Empty(t, in.tombstones)
}

func TestInterestRefcount(t *testing.T) {
	in := newInterest("me", 0, time.Now())
	v0, _ := in.localRecord()
	changed, err := in.add("a/+")
	require.NoError(t, err)
	require.True(t, changed)
	changed, _ = in.add("$share/g/a/+")
	require.False(t, changed, "same inner filter")
	changed, held := in.remove("a/+")
	require.True(t, held)
	require.False(t, changed)
	changed, held = in.remove("$share/g/a/+")
	require.True(t, held)
	require.True(t, changed)
	_, held = in.remove("a/+")
	require.False(t, held)
	_, err = in.add("#/x")
	require.Error(t, err)

	changed, err = in.set([]string{"b", "c", "b"})
	require.NoError(t, err)
	require.True(t, changed)
	changed, _ = in.set([]string{"c", "b"})
	require.False(t, changed, "same set")
	changed, held = in.remove("b")
	require.True(t, held)
	require.True(t, changed, "set counts one subscription per entry")
	v, filters := in.localRecord()
	require.Equal(t, []string{"c"}, filters)
	require.Equal(t, v0+4, v, "the version moves only when the set changes")
}

func TestResolveSeeds(t *testing.T) {
	n, err := New(Config{Name: "self", BindAddr: "127.0.0.1:7000"})
	require.NoError(t, err)
	defer func() { _ = n.Shutdown() }()
	n.members["self"] = &Member{Name: "self", GossipAddr: "10.0.0.1:7000"}
	n.lookupIP = func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "pubsub-headless.default.svc":
			return []net.IPAddr{{IP: net.ParseIP("10.0.0.1")}, {IP: net.ParseIP("10.0.0.2")}, {IP: net.ParseIP("10.0.0.3")}}, nil
		}
		return nil, fmt.Errorf("no such host %s", host)
	}
	got := n.resolveSeeds(t.Context(), []string{
		"pubsub-headless.default.svc", // every pod, this node skipped
		"10.0.0.2:7000",               // duplicate
		"10.0.0.9:7100",
		"::1",
		"missing.example",
	})
	require.Equal(t, []string{"10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.9:7100", "[::1]:7000"}, got)
}
