package broker

// White-box tests of Emitter presence and links (presence.go, links.go):
// the request decoders with fuzz targets, the channel normalisation tables,
// and benchmarks of what presence and links add to the hot paths. The wire
// behaviour, with the real Emitter SDK, is in presence_test.go.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/keys"
)

func TestPresenceChannel(t *testing.T) {
	tests := []struct {
		raw             string
		channel, filter string
		ok              bool
	}{
		{raw: "a/b/", channel: "a/b/", filter: "a/b/#", ok: true},
		{raw: "a/b", channel: "a/b/", filter: "a/b/#", ok: true}, // Emitter adds the '/'
		{raw: "a/b/?last=5", channel: "a/b/", filter: "a/b/#", ok: true},
		{raw: "a/+/c/", channel: "a/+/c/", filter: "a/+/c/#", ok: true},
		{raw: "a/#/", channel: "a/#/", filter: "a/#", ok: true},
		{raw: "", ok: false},
		{raw: "/", ok: false},
		{raw: "a//b/", ok: false},
		{raw: "a/#/b/", ok: false},
		{raw: "$share/g/a/", ok: false}, // a group is not a channel
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			channel, filter, ok := presenceChannel(tt.raw)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.channel, channel)
			require.Equal(t, tt.filter, filter)
		})
	}
}

func TestPresenceMatchTopic(t *testing.T) {
	tests := map[string]string{
		"a/b/#":        "a/b",
		"a/b":          "a/b",
		"a/+/c":        "a/+/c",
		"#":            "#",
		"$share/g/a/#": "a",
		"$SYS/stats/#": "$SYS/stats",
	}
	for filter, want := range tests {
		require.Equal(t, want, presenceMatchTopic(filter), filter)
	}
}

func TestValidLinkName(t *testing.T) {
	tests := map[string]bool{
		"a": true, "Z9": true, "00": true,
		"": false, "abc": false, "a-": false, "a/": false, "é": false, " a": false, "+": false,
	}
	for name, want := range tests {
		require.Equal(t, want, validLinkName(name), "%q", name)
	}
}

// apiHarness is a node with auth on and one connected (but unserved)
// connection whose API answers are captured.
type apiHarness struct {
	srv *Server
	c   *conn
	key string // a key for channel a/ with every letter but e and m
}

func newAPIHarness(t testing.TB) *apiHarness {
	t.Helper()
	sec, err := keys.GenerateSecret()
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Secret = sec.Encode()
	cfg.DataDir = t.TempDir()
	cfg.Limits.MaxSubscriptions = 64
	s, err := New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	key, err := s.keyring.Sign(keys.Claims{Subject: "h", Perm: "rwslp", Read: []string{"a/#"}, Write: []string{"a/#"}})
	require.NoError(t, err)
	c := &conn{srv: s, nc: discardConn{}, connected: true, id: newConnID(), username: "harness"}
	c.enc.via = c
	c.sess = newSession(s, "harness", true)
	c.sess.conn.Store(c)
	return &apiHarness{srv: s, c: c, key: key}
}

// call runs one API request and returns the statuses it answered with.
func (h *apiHarness) call(op string, body []byte) []int {
	var statuses []int
	reply := func(m map[string]any) {
		st, _ := m["status"].(int)
		statuses = append(statuses, st)
	}
	fail := func(status int, _ string) { statuses = append(statuses, status) }
	switch op {
	case "presence":
		h.c.apiPresence(body, reply, fail)
	case "link":
		h.c.apiLink(body, reply, fail)
	}
	return statuses
}

// FuzzEmitterAPIRequest feeds arbitrary bodies to emitter/presence/ and
// emitter/link/. Whatever the body, the node answers exactly once with
// one of Emitter's statuses, never panics, and a link it accepts is one a
// PUBLISH can use. "$KEY" in a body stands for a valid key.
func FuzzEmitterAPIRequest(f *testing.F) {
	seeds := []struct {
		link bool
		body string
	}{
		{false, `{"key":"$KEY","channel":"a/b/"}`},
		{false, `{"key":"$KEY","channel":"a/b","status":false,"changes":true}`},
		{false, `{"key":"$KEY","channel":"a/b/?last=1","changes":false}`},
		{false, `{"key":"$KEY","channel":"a//b/"}`},
		{false, `{"key":"nope","channel":"a/"}`},
		{false, `{"channel":"x/"}`},
		{false, `{"key":"$KEY","channel":"$share/g/a/"}`},
		{false, `{"key":"$KEY","channel":1}`},
		{false, `{`},
		{false, `null`},
		{true, `{"name":"a1","key":"$KEY","channel":"a/b/?ttl=5","subscribe":true}`},
		{true, `{"name":"b","key":"$KEY","channel":"a/+/","subscribe":true}`},
		{true, `{"name":"abc","key":"$KEY","channel":"a/"}`},
		{true, `{"name":"é","key":"$KEY","channel":"a/"}`},
		{true, `{"name":"x","key":"$KEY","channel":"a"}`},
		{true, `{"name":"x","key":"$KEY","channel":"emitter/me/"}`},
		{true, `{"name":"x","key":"","channel":"a/"}`},
		{true, `{"name":"x","key":"$KEY","channel":"a/?bad"}`},
		{true, `[]`},
	}
	for _, s := range seeds {
		f.Add(s.link, []byte(s.body))
	}
	h := newAPIHarness(f)
	f.Fuzz(func(t *testing.T, link bool, body []byte) {
		body = []byte(strings.ReplaceAll(string(body), "$KEY", h.key))
		op := "presence"
		if link {
			op = "link"
		}
		statuses := h.call(op, body)
		require.Len(t, statuses, 1, "one answer per request")
		require.Contains(t, []int{200, 400, 401}, statuses[0])
		if link && statuses[0] == 200 {
			var req linkRequest
			require.NoError(t, json.Unmarshal(body, &req))
			require.NotNil(t, h.c.linkTopic([]byte(req.Name)), "an accepted link must be usable")
		}
	})
}

// BenchmarkRoutePublishLinks shows what links cost a PUBLISH: an ordinary
// topic pays one length check even on a connection with links (0 allocs,
// DESIGN §3); a link name pays a map lookup, then the Emitter-dialect
// parsing the full topic would have cost.
func BenchmarkRoutePublishLinks(b *testing.B) {
	s := benchServer(b, 1, "bench/#", 0)
	b.Cleanup(func() { _ = s.Close() })
	key, err := s.keyring.Sign(keys.Claims{Perm: "rw", Read: []string{"bench/#"}, Write: []string{"bench/#"}})
	if err != nil {
		b.Fatal(err)
	}
	c := &conn{srv: s, nc: discardConn{}, connected: true, id: newConnID()}
	c.enc.via = c
	c.sess = newSession(s, "publisher", true)
	c.sess.conn.Store(c)
	c.emitterAPI().links = map[string]link{"l1": {channel: "bench/x/", topic: []byte(key + "/bench/x/")}}
	payload := make([]byte, 64)
	for _, tc := range []struct{ name, topic string }{
		{"plain-topic", "bench/x"},
		{"link", "l1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := mqtt.Publish{Topic: []byte(tc.topic), Payload: payload}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.routePublish(&p); err != nil {
					b.Fatal(err)
				}
				c.flushPending()
			}
		})
	}
}

// BenchmarkPresenceNotify is the cost presence adds to a SUBSCRIBE or
// UNSUBSCRIBE: nothing but an atomic load when nobody watches (0 allocs),
// otherwise one event encoded once and queued to each watcher.
func BenchmarkPresenceNotify(b *testing.B) {
	for _, watchers := range []int{0, 1, 100} {
		b.Run(fmt.Sprintf("watchers-%d", watchers), func(b *testing.B) {
			s := benchServer(b, 0, "", 0)
			b.Cleanup(func() { _ = s.Close() })
			for i := range watchers {
				w := &conn{srv: s, nc: discardConn{}, connected: true, id: "w" + strconv.Itoa(i)}
				w.sess = newSession(s, w.id, true)
				if !s.presence.watch(w, "chat/#", keyRef{}, 0) {
					b.Fatal("watch refused")
				}
			}
			who := &conn{srv: s, nc: discardConn{}, connected: true, id: newConnID(), username: "alice"}
			b.ReportAllocs()
			for b.Loop() {
				s.presence.notify(who, "chat/room1/#", presenceSubscribe)
			}
		})
	}
}
