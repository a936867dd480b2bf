package broker

// White-box tests of the parts of issue 4 a socket cannot reach precisely:
// history paging bounds, the reply budget, and the decoders of what the
// store hands back at start (session records, encoded queue entries) and
// of history channels, each with a fuzz target.

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
)

// newStoreServer builds a node with the memory store that is never served:
// New starts no goroutine, so tests can call its methods directly.
func newStoreServer(t testing.TB) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NoAuth = true
	cfg.DataDir = t.TempDir()
	s, err := New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestHistoryBefore(t *testing.T) {
	s := newStoreServer(t)
	// Five messages in millisecond 1000 and three in 1001, so "older than"
	// must split a millisecond.
	var msgs []store.Message
	add := func(ms int64, seq uint32) {
		msgs = append(msgs, store.Message{
			ID: store.MakeID(ms, 0, seq), Topic: "p/a", QoS: 1,
			Payload: []byte(strconv.FormatInt(ms, 10) + "." + strconv.Itoa(int(seq))),
			Expires: time.Now().Add(time.Hour),
		})
	}
	for seq := range uint32(5) {
		add(1000, seq)
	}
	for seq := range uint32(3) {
		add(1001, seq)
	}
	require.NoError(t, s.store.Append(msgs))
	tests := []struct {
		name   string
		before store.ID
		from   int64 // ms, 0 = none
		until  int64
		limit  int
		want   []string
	}{
		{"no bound: the newest", store.ID{}, 0, 0, 3, []string{"1001.0", "1001.1", "1001.2"}},
		{"inside a millisecond", store.MakeID(1001, 0, 1), 0, 0, 3, []string{"1000.3", "1000.4", "1001.0"}},
		{"the millisecond alone is enough", store.MakeID(1001, 0, 2), 0, 0, 2, []string{"1001.0", "1001.1"}},
		{"at the start of a millisecond", store.MakeID(1001, 0, 0), 0, 0, 2, []string{"1000.3", "1000.4"}},
		{"before everything", store.MakeID(1000, 0, 0), 0, 0, 5, nil},
		{"until excludes the millisecond", store.MakeID(1001, 0, 2), 0, 1000, 2, []string{"1000.3", "1000.4"}},
		{"from cuts the older part", store.MakeID(1001, 0, 1), 1001, 0, 5, []string{"1001.0"}},
		{"window entirely before the bound", store.MakeID(1001, 0, 1), 0, 999, 5, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := store.Query{Filter: "p/#"}
			if tc.from != 0 {
				q.From = time.UnixMilli(tc.from)
			}
			if tc.until != 0 {
				q.Until = time.UnixMilli(tc.until)
			}
			got, err := s.historyBefore(context.Background(), q, tc.before, tc.limit)
			require.NoError(t, err)
			var payloads []string
			for _, m := range got {
				payloads = append(payloads, string(m.Payload))
			}
			require.Equal(t, tc.want, payloads)
		})
	}
}

func TestNewestWithin(t *testing.T) {
	msg := func(n int) store.Message { return store.Message{Topic: "t", Payload: make([]byte, n)} }
	tests := []struct {
		name   string
		sizes  []int
		budget int
		want   int // messages kept, the newest
	}{
		{"all fit", []int{10, 10, 10}, 1 << 10, 3},
		{"the oldest go first", []int{600, 600, 600}, 1800, 2},
		{"one is always sent", []int{1 << 20}, 1 << 10, 1},
		{"nothing", nil, 1 << 10, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var msgs []store.Message
			for _, n := range tc.sizes {
				msgs = append(msgs, msg(n))
			}
			got := newestWithin(msgs, tc.budget)
			require.Len(t, got, tc.want)
			if tc.want > 0 {
				require.Equal(t, len(msgs[len(msgs)-1].Payload), len(got[len(got)-1].Payload), "the newest is kept")
			}
		})
	}
}

func TestHistoryChannel(t *testing.T) {
	const key = "aaaaaaaaaa.bbbbbbbbbb.cccccccccc"
	tests := []struct {
		raw         string
		route       string
		emitterForm bool
		wantErr     bool
	}{
		{key + "/a/b/?last=5", "a/b/#", true, false},
		{key + "/a/#/", "a/#", true, false},
		{"a/b/", "a/b/#", true, false}, // no key: still an Emitter channel
		{"a/b/?last=1&from=1600000000", "a/b/#", true, false},
		{"a/+/c", "a/+/c", false, false}, // an MQTT filter
		{"a/b/?last=1", "a/b/#", true, false},
		{"emitter/history/", "", false, true},
		{key + "/$share/g/a/", "", false, true},
		{key + "/a/#/b/", "", false, true},
		{key + "/a//", "", false, true},
		{"?last=1", "", false, true},
		{"a/b/?last=x", "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			pt, emitterForm, err := historyChannel(tc.raw)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.route, pt.route)
			require.Equal(t, tc.emitterForm, emitterForm)
		})
	}
}

func FuzzHistoryChannel(f *testing.F) {
	for _, seed := range []string{
		"a/b/", "KEY.KEYKEYKEYKEYKEY.KEY/a/b/?last=5&from=1&until=2", "a/#", "a/+/c/?last=1",
		"emitter/x/", "$share/g/a/", "/", "//", "?", "a/?", "a/b/?last=1/x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pt, _, err := historyChannel(raw)
		if err != nil {
			return
		}
		// Whatever is accepted is a filter the store can be asked about.
		require.NoError(t, topic.ValidateFilter(pt.route), "route %q from %q", pt.route, raw)
		_, _, shared := topic.SplitShared(pt.route)
		require.False(t, shared)
	})
}

func TestOutboundParts(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		for _, payload := range [][]byte{nil, []byte("x"), make([]byte, 300)} {
			p := mqtt.Publish{QoS: qos, Topic: []byte("a/b/"), Payload: payload}
			pkt := p.AppendTo(nil)
			gotTopic, gotPayload, ok := outboundParts(pkt)
			require.True(t, ok)
			require.Equal(t, "a/b/", string(gotTopic))
			require.Equal(t, len(payload), len(gotPayload))
		}
	}
	for _, bad := range [][]byte{nil, {0x32}, {0x32, 0x05, 0x00}, {0x32, 0x02, 0x00, 0x09}} {
		_, _, ok := outboundParts(bad)
		require.False(t, ok, "%x", bad)
	}
}

func FuzzOutboundParts(f *testing.F) {
	p := mqtt.Publish{QoS: 1, Topic: []byte("a/b"), Payload: []byte("payload")}
	f.Add(p.AppendTo(nil))
	f.Add([]byte{0x32, 0x02, 0x00, 0x00})
	f.Add([]byte{0x34, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		tp, payload, ok := outboundParts(pkt)
		if !ok {
			return
		}
		// The parts lie inside the packet, in order, after the header.
		require.LessOrEqual(t, len(tp)+len(payload)+4, len(pkt))
	})
}

// restoreFrom writes a record and its index entry for clientID and runs
// the start-up restore on them.
func restoreFrom(t testing.TB, s *Server, clientID string, record []byte) (int, error) {
	t.Helper()
	require.NoError(t, s.store.KVSet(sessionKey(clientID), record, 0))
	return s.restoreSession(clientID)
}

func TestRestoreSessionRecords(t *testing.T) {
	valid := func(subs ...savedSub) []byte {
		b, err := json.Marshal(sessionRecord{ClientID: "c", Subs: subs})
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name    string
		record  []byte
		wantErr bool
		subs    int
	}{
		{"valid", valid(savedSub{Filter: "a/#", QoS: 1}, savedSub{Filter: "b", QoS: 0, Tag: tagEmitter, Keyed: true, KeyID: "j", KeyExpires: 1}), false, 2},
		{"no subscriptions", valid(), false, 0},
		{"not JSON", []byte("{"), true, 0},
		{"another client id", []byte(`{"client_id":"other","subs":[]}`), true, 0},
		{"QoS 3", valid(savedSub{Filter: "a", QoS: 3}), true, 0},
		{"invalid filter", valid(savedSub{Filter: "a/#/b", QoS: 1}), true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStoreServer(t)
			_, err := restoreFrom(t, s, "c", tc.record)
			if tc.wantErr {
				require.Error(t, err)
				require.Zero(t, s.trie.Len(), "a refused record leaves nothing behind in the trie")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.subs, s.trie.Len())
			s.mu.Lock()
			sess := s.sessions["c"]
			s.mu.Unlock()
			require.NotNil(t, sess)
			require.True(t, sess.offline)
			if tc.subs == 2 {
				require.Equal(t, tagEmitter, sess.tags["b"])
				require.Equal(t, time.UnixMilli(1), sess.keyed["b"].expires)
			}
		})
	}
}

func FuzzRestoreSession(f *testing.F) {
	f.Add([]byte(`{"client_id":"c","subs":[{"filter":"a/#","qos":1,"tag":1,"keyed":true,"key_id":"x","key_expires_ms":5}]}`))
	f.Add([]byte(`{"client_id":"c","subs":null}`))
	f.Add([]byte(`{"client_id":"c","subs":[{"filter":"","qos":0}]}`))
	f.Add([]byte(`[]`))
	s := newStoreServer(f)
	f.Fuzz(func(t *testing.T, record []byte) {
		if _, err := restoreFrom(t, s, "c", record); err != nil {
			return
		}
		s.mu.Lock()
		sess := s.sessions["c"]
		delete(s.sessions, "c")
		s.dropSessionLocked(sess)
		s.mu.Unlock()
		require.Zero(t, s.trie.Len())
	})
}

// BenchmarkOfflineQueue routes one QoS 1 PUBLISH per op to an offline
// persistent session, which appends it to the store's session queue before
// the publisher's PUBACK would go out: the price of a queue that survives
// a restart, per provider and sync policy.
func BenchmarkOfflineQueue(b *testing.B) {
	cases := []struct{ name, provider, sync string }{
		{"memory", "memory", "100ms"},
		{"disk-100ms", "disk", "100ms"},
		{"disk-always", "disk", "always"},
	}
	payload := make([]byte, 64)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.NoAuth = true
			cfg.DataDir = b.TempDir()
			cfg.Storage.Provider, cfg.Storage.Sync = tc.provider, tc.sync
			cfg.Limits.MaxQueued = 1 << 30
			s, err := New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			sess := newSession(s, "offline", false)
			if _, ok := s.subscribe(sess, "q/#", 1, 0, nil); !ok {
				b.Fatal("subscribe")
			}
			sess.offline = true
			topic := []byte("q/t")
			var enc encoder
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.publish(&enc, topic, payload, 1, false, nil, false)
			}
			b.StopTimer()
			if got := s.store.Stats().Queued; got != int64(b.N) {
				b.Fatalf("%d queued in the store, want %d", got, b.N)
			}
		})
	}
}
