package broker_test

// Message history, retained messages and persistent sessions in the store
// (issue 4, docs/storage.md), black-box over real sockets: what is stored
// (ttl with 's', storage.record), replay with last/from/until before the
// SUBACK (with 'l'), emitter/history/ paging (raw and with the Emitter
// SDK), and what survives Close + New on the same data dir with the disk
// provider: retained messages, persistent sessions' subscriptions and
// queues, and unacknowledged messages.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	emitter "github.com/emitter-io/go/v2"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
)

// providers are the store providers every history test runs against.
var providers = []string{"memory", "disk"}

// startStoreServer runs a node with the given provider on dataDir
// ("" = a fresh temporary one).
func startStoreServer(t *testing.T, provider, dataDir string, configure func(*broker.Config)) *broker.Server {
	t.Helper()
	return startServer(t, func(cfg *broker.Config) {
		cfg.Storage.Provider = provider
		if dataDir != "" {
			cfg.DataDir = dataDir
		}
		if configure != nil {
			configure(cfg)
		}
	})
}

// restart closes srv and starts a node on the same data dir.
func restart(t *testing.T, srv *broker.Server, dataDir string, configure func(*broker.Config)) *broker.Server {
	t.Helper()
	require.NoError(t, srv.Close())
	return startStoreServer(t, "disk", dataDir, configure)
}

// dialPlain connects a raw clean-session client without a key.
func dialPlain(t *testing.T, srv *broker.Server, clientID string) *keyClient {
	t.Helper()
	return dialKey(t, srv, clientID, "")
}

// dialSession connects a raw client with clean session = 0 and returns it
// with CONNACK's session present flag.
func dialSession(t *testing.T, srv *broker.Server, clientID string) (*keyClient, bool) {
	t.Helper()
	c := &keyClient{rawClient: dialRaw(t, srv, transportTCP)}
	present := c.mustConnect(mqtt.Connect{ClientID: clientID, CleanSession: false, KeepAlive: 60})
	return c, present
}

// disconnect sends DISCONNECT and waits for the node to close the socket,
// so the session is detached when it returns.
func (c *keyClient) disconnect() {
	c.t.Helper()
	c.write(mqtt.AppendDisconnect(nil))
	c.expectClosed()
}

// subscribeReplay subscribes one filter and returns the PUBLISHes that
// arrived before the SUBACK, which must grant qos.
func (c *keyClient) subscribeReplay(id uint16, filter string, qos byte) []mqtt.Publish {
	c.t.Helper()
	c.write(mqtt.AppendSubscribe(nil, id, []mqtt.Subscription{{Filter: []byte(filter), QoS: qos}}))
	var got []mqtt.Publish
	for {
		h, body := c.next()
		switch h.Type {
		case mqtt.TypePublish:
			var p mqtt.Publish
			require.NoError(c.t, mqtt.DecodePublish(h.Flags, body, &p))
			got = append(got, p)
		case mqtt.TypeSuback:
			gotID, codes, err := mqtt.DecodeSuback(body, nil)
			require.NoError(c.t, err)
			require.Equal(c.t, id, gotID)
			require.Equal(c.t, []byte{qos}, codes, "SUBACK for %q", filter)
			return got
		default:
			c.t.Fatalf("subscribe %q: unexpected %v", filter, h.Type)
		}
	}
}

func publishedPayloads(ps []mqtt.Publish) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p.Payload)
	}
	return out
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func TestStorageReplayBeforeSuback(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			srv := startStoreServer(t, provider, "", nil)
			pub := dialPlain(t, srv, "pub")
			for i := 1; i <= 5; i++ {
				require.Empty(t, pub.publishAcked(uint16(i), "hist/a/?ttl=3600", 1, strconv.Itoa(i)))
			}
			require.Empty(t, pub.publishAcked(9, "hist/b", 1, "not stored"))

			sub := dialPlain(t, srv, "sub")
			// Replayed PUBLISHes are read before the SUBACK bytes, in
			// store order, on the routed topic without the options level.
			got := sub.subscribeReplay(1, "hist/a/?last=3", 1)
			require.Equal(t, []string{"3", "4", "5"}, publishedPayloads(got))
			for _, p := range got {
				require.Equal(t, "hist/a", string(p.Topic))
				require.Equal(t, byte(1), p.QoS, "min(stored QoS 1, granted 1)")
				sub.puback(p.PacketID)
			}
			require.Equal(t, []string{"1", "2", "3", "4", "5"}, publishedPayloads(sub.subscribeReplay(2, "hist/#/?last=10", 0)),
				"a wildcard filter replays every matching topic")
			require.Empty(t, sub.subscribeReplay(3, "hist/b/?last=5", 0), "a publish without ttl is not stored")
			require.Empty(t, sub.subscribeReplay(4, "hist/a", 0), "no options level, no replay")

			// Live messages follow the replay on the same subscription.
			require.Empty(t, pub.publishAcked(10, "hist/a", 1, "live"))
			p := sub.readPublish()
			require.Equal(t, "live", string(p.Payload))
		})
	}
}

func TestStorageReplayWindow(t *testing.T) {
	srv := startStoreServer(t, "disk", "", nil)
	// Messages at known times, appended directly: t0, t0+10s, t0+20s, t0+30s.
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs []store.Message
	for i := range 4 {
		at := t0.Add(time.Duration(i*10) * time.Second)
		msgs = append(msgs, store.Message{
			ID: store.MakeID(at.UnixMilli(), 0, 0), Topic: "win/a", Payload: []byte(strconv.Itoa(i)),
			QoS: 1, Expires: time.Now().Add(time.Hour),
		})
	}
	require.NoError(t, srv.Store().Append(msgs))
	unix := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }
	tests := []struct {
		name    string
		options string
		want    []string
	}{
		{"from and until, both inclusive", "from=" + unix(10*time.Second) + "&until=" + unix(20*time.Second), []string{"1", "2"}},
		{"from only", "from=" + unix(25*time.Second), []string{"3"}},
		{"until only", "until=" + unix(0), []string{"0"}},
		{"last within a window", "last=1&from=" + unix(0) + "&until=" + unix(20*time.Second), []string{"2"}},
		{"window after everything", "from=" + unix(time.Hour), nil},
		{"from before 2018 is ignored, as Emitter does", "last=2&from=1000", []string{"2", "3"}},
		{"until after 2066 is ignored", "last=1&until=4000000000", []string{"3"}},
		{"last=0 replays nothing", "last=0", nil},
	}
	sub := dialPlain(t, srv, "window")
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sub.subscribeReplay(uint16(i+1), "win/a/?"+tc.options, 0)
			if tc.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tc.want, publishedPayloads(got))
		})
	}
}

// TestStoragePermissions: ttl stores only with 's' (silently routed
// otherwise, as Emitter does) and replay needs 'l', in both the plain MQTT
// and the Emitter dialect.
func TestStoragePermissions(t *testing.T) {
	n := startKeyNode(t, func(cfg *broker.Config) { cfg.Storage.Provider = "disk" })
	st := n.srv.Store()
	stored := func(filter string) []string {
		msgs, err := st.Query(context.Background(), storeQuery(filter))
		require.NoError(t, err)
		var out []string
		for _, m := range msgs {
			out = append(out, string(m.Payload))
		}
		return out
	}

	noStore := dialKey(t, n.srv, "no-s", n.scopedKey(t, "k/#", "rw"))
	require.Empty(t, noStore.publishAcked(1, "k/a/?ttl=3600", 1, "without s"))
	withStore := dialKey(t, n.srv, "with-s", n.scopedKey(t, "k/#", "rws"))
	require.Empty(t, withStore.publishAcked(1, "k/a/?ttl=3600", 1, "with s"))
	require.Equal(t, []string{"with s"}, stored("k/#"), "a key without 's' stores nothing")

	emitterKey := n.scopedKey(t, "k/#", "rws")
	anon := dialKey(t, n.srv, "anon", "")
	require.Empty(t, anon.publishAcked(1, emitterKey+"/k/e/?ttl=3600", 1, "emitter"))
	require.Equal(t, []string{"emitter"}, stored("k/e"), "stored under the channel without key or '/'")

	noLoad := dialKey(t, n.srv, "no-l", n.scopedKey(t, "k/#", "r"))
	require.Empty(t, noLoad.subscribeReplay(1, "k/a/?last=5", 0), "a key without 'l' gets no replay")
	load := dialKey(t, n.srv, "with-l", n.scopedKey(t, "k/#", "rl"))
	require.Equal(t, []string{"with s"}, publishedPayloads(load.subscribeReplay(1, "k/a/?last=5", 0)))

	loadKey := n.scopedKey(t, "k/#", "rl")
	got := anon.subscribeReplay(2, loadKey+"/k/e/?last=5", 0)
	require.Len(t, got, 1)
	require.Equal(t, "k/e/", string(got[0].Topic), "Emitter form: the channel with its '/', no key")
	require.Empty(t, anon.subscribeReplay(3, n.scopedKey(t, "k/#", "r")+"/k/e/?last=5", 0))
}

func storeQuery(filter string) store.Query { return store.Query{Filter: filter} }

func TestStorageRecord(t *testing.T) {
	srv := startStoreServer(t, "disk", "", func(cfg *broker.Config) {
		cfg.Storage.Record = []string{"rec/#"}
		cfg.Storage.DefaultTTL = broker.Duration(time.Hour)
	})
	pub := dialPlain(t, srv, "pub")
	require.Empty(t, pub.publishAcked(1, "rec/x", 1, "recorded"))
	require.Empty(t, pub.publishAcked(2, "other/x", 1, "not recorded"))
	// PUBACK follows the store write, so both are decided by now.
	msgs, err := srv.Store().Query(context.Background(), storeQuery("#"))
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, "rec/x", msgs[0].Topic)
	require.Equal(t, "recorded", string(msgs[0].Payload))
	require.WithinDuration(t, time.Now().Add(time.Hour), msgs[0].Expires, time.Minute, "kept for storage.default_ttl")
}

// TestStorageRetainedSurvivesRestart is B5 with the disk store: the latest
// retained message per topic, and deletions by empty payload, are still
// there after Close and New on the same data dir.
func TestStorageRetainedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startStoreServer(t, "disk", dir, nil)
	pub := dialPlain(t, srv, "pub")
	for _, m := range []struct{ topic, payload string }{
		{"ret/a", "v1"}, {"ret/b", "b1"}, {"ret/a", "v2"}, {"ret/b", ""}, // [MQTT-3.3.1-10]
	} {
		p := mqtt.Publish{QoS: 1, Retain: true, PacketID: 1, Topic: []byte(m.topic), Payload: []byte(m.payload)}
		pub.write(p.AppendTo(nil))
		h, _ := pub.next()
		require.Equal(t, mqtt.TypePuback, h.Type)
	}
	srv = restart(t, srv, dir, nil)

	sub := dialPlain(t, srv, "sub")
	require.Empty(t, sub.subscribeReplay(1, "ret/#", 1), "retained messages follow the SUBACK")
	p := sub.readPublish()
	require.Equal(t, "ret/a", string(p.Topic))
	require.Equal(t, "v2", string(p.Payload))
	require.True(t, p.Retain, "[MQTT-3.3.1-6]")
	sub.puback(p.PacketID)
	sub.pingOK() // ret/b was deleted: nothing else came
	require.Equal(t, 1, srv.Counters().Retained)
}

// TestStoragePersistentSessionSurvivesRestart is B2 across a restart: a
// clean=0 session's subscriptions and the QoS 1 messages queued while it
// was offline come back, in order, after Close and New.
func TestStoragePersistentSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startStoreServer(t, "disk", dir, nil)
	c, present := dialSession(t, srv, "durable")
	require.False(t, present)
	require.Empty(t, c.subscribeReplay(1, "q/#", 1))
	require.Empty(t, c.subscribeReplay(2, "live/+", 0))
	require.Empty(t, c.subscribeReplay(3, "gone/#", 1))
	c.write(mqtt.AppendUnsubscribe(nil, 4, [][]byte{[]byte("gone/#")}))
	h, _ := c.next()
	require.Equal(t, mqtt.TypeUnsuback, h.Type)
	c.disconnect()

	const queued = 50
	pub := dialPlain(t, srv, "pub")
	for i := 1; i <= queued; i++ {
		require.Empty(t, pub.publishAcked(uint16(i), "q/n", 1, strconv.Itoa(i)))
	}
	require.Empty(t, pub.publishAcked(99, "gone/x", 1, "unsubscribed before"))
	srv = restart(t, srv, dir, nil)
	require.Equal(t, 1, srv.Counters().Sessions, "the session is back before its client")

	c, present = dialSession(t, srv, "durable")
	require.True(t, present, "[MQTT-3.2.2-2]")
	var got []string
	for range queued {
		p := c.readPublish()
		require.Equal(t, "q/n", string(p.Topic))
		require.Equal(t, byte(1), p.QoS)
		got = append(got, string(p.Payload))
		c.puback(p.PacketID)
	}
	require.Equal(t, numbered(1, queued), got, "all queued messages, in order")
	pub = dialPlain(t, srv, "pub")
	pub.publish0("live/x", "restored subscription")
	p := c.readPublish()
	require.Equal(t, "live/x", string(p.Topic), "gone/# stays unsubscribed; live/+ came back")
	waitFor(t, opTimeout, func() bool { return srv.Store().Stats().Queued == 0 })
	c.disconnect()

	// Acknowledged messages are not sent again after another restart.
	srv = restart(t, srv, dir, nil)
	c, present = dialSession(t, srv, "durable")
	require.True(t, present)
	c.pingOK()

	// A clean session ends the persistent one, in the store too
	// [MQTT-3.1.2-6].
	clean := dialPlain(t, srv, "durable")
	clean.pingOK()
	c.expectClosed() // taken over [MQTT-3.1.4-2]
	waitFor(t, opTimeout, func() bool { return keyCount(t, srv) == 0 })
	srv = restart(t, srv, dir, nil)
	require.Equal(t, 0, srv.Counters().Sessions)
	_, present = dialSession(t, srv, "durable")
	require.False(t, present)
}

// keyCount is the number of KV entries in the node's store: with no
// persistent session left, none.
func keyCount(t *testing.T, srv *broker.Server) int64 {
	t.Helper()
	return srv.Store().Stats().Keys
}

// TestStorageUnackedSurviveRestart is B3 across a restart: a message sent
// to a persistent session and never acknowledged, because the client
// vanished, is sent again after the node restarts.
func TestStorageUnackedSurviveRestart(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			dir := t.TempDir()
			srv := startStoreServer(t, "disk", dir, nil)
			c, _ := dialSession(t, srv, "flaky")
			require.Empty(t, c.subscribeReplay(1, "u/#", qos))
			pub := dialPlain(t, srv, "pub")
			require.Empty(t, pub.publishAcked(1, "u/x", qos, "unacked"))
			p := c.readPublish()
			require.Equal(t, "unacked", string(p.Payload))
			require.NoError(t, c.nc.Close()) // no PUBACK/PUBREC, no DISCONNECT
			waitFor(t, opTimeout, func() bool { return srv.Store().Stats().Queued == 1 })

			srv = restart(t, srv, dir, nil)
			c, present := dialSession(t, srv, "flaky")
			require.True(t, present)
			p = c.readPublish()
			require.Equal(t, "unacked", string(p.Payload))
			require.Equal(t, qos, p.QoS)
			if qos == 1 {
				c.puback(p.PacketID)
			} else {
				c.write(mqtt.AppendAck(nil, mqtt.TypePubrec, p.PacketID))
				h, _ := c.next()
				require.Equal(t, mqtt.TypePubrel, h.Type)
				c.write(mqtt.AppendAck(nil, mqtt.TypePubcomp, p.PacketID))
			}
			waitFor(t, opTimeout, func() bool { return srv.Store().Stats().Queued == 0 })
			c.pingOK()
		})
	}
}

// historyAnswer is the emitter/history/ answer (emitter.md §3).
type historyAnswer struct {
	Req      uint16 `json:"req"`
	Messages []struct {
		ID      []byte `json:"id"`
		Channel string `json:"channel"`
		Payload []byte `json:"payload"`
	} `json:"messages"`
}

// historyRequest publishes an emitter/history/ request and returns the raw
// answer, read before the PUBACK that follows it.
func (c *keyClient) historyRequest(id uint16, body any) map[string]json.RawMessage {
	c.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(c.t, err)
	p := mqtt.Publish{QoS: 1, PacketID: id, Topic: []byte("emitter/history/"), Payload: b}
	c.write(p.AppendTo(nil))
	ans := c.readPublish()
	require.Equal(c.t, "emitter/history/", string(ans.Topic))
	var raw map[string]json.RawMessage
	require.NoError(c.t, json.Unmarshal(ans.Payload, &raw))
	h, _ := c.next()
	require.Equal(c.t, mqtt.TypePuback, h.Type)
	return raw
}

func decodeHistory(t *testing.T, raw map[string]json.RawMessage) historyAnswer {
	t.Helper()
	_, hasStatus := raw["status"]
	require.False(t, hasStatus, "a history answer has no status field")
	b, err := json.Marshal(raw)
	require.NoError(t, err)
	var a historyAnswer
	require.NoError(t, json.Unmarshal(b, &a))
	return a
}

func TestStorageHistoryAPI(t *testing.T) {
	n := startKeyNode(t, func(cfg *broker.Config) {
		cfg.Storage.Provider = "disk"
		cfg.Storage.MaxRequestLimit = 4 // pages of 4
	})
	writer := n.scopedKey(t, "h/#", "rws")
	pub := dialKey(t, n.srv, "pub", writer)
	for i := 1; i <= 10; i++ {
		require.Empty(t, pub.publishAcked(uint16(i), "h/a/?ttl=3600", 1, strconv.Itoa(i)))
	}
	require.Empty(t, pub.publishAcked(11, "h/other/?ttl=3600", 1, "other"))
	reader := n.scopedKey(t, "h/#", "rl")
	c := dialKey(t, n.srv, "history", "")

	t.Run("paging backwards with startFromID", func(t *testing.T) {
		var pages [][]string
		var start []byte
		for id := uint16(1); ; id++ {
			a := decodeHistory(t, c.historyRequest(id, map[string]any{
				"key": "ignored", "channel": reader + "/h/a/?last=10", "startFromID": start,
			}))
			require.Equal(t, id, a.Req)
			if len(a.Messages) == 0 {
				break
			}
			var page []string
			for _, m := range a.Messages {
				require.Equal(t, "h/a/", m.Channel)
				require.Len(t, m.ID, store.IDLen)
				page = append(page, string(m.Payload))
			}
			pages = append(pages, page)
			start = a.Messages[0].ID // the oldest of the page
			require.Less(t, len(pages), 5, "paging ends")
		}
		require.Equal(t, [][]string{{"7", "8", "9", "10"}, {"3", "4", "5", "6"}, {"1", "2"}}, pages)
	})
	t.Run("last and a prefix channel", func(t *testing.T) {
		a := decodeHistory(t, c.historyRequest(20, map[string]any{"channel": reader + "/h/?last=2"}))
		require.Len(t, a.Messages, 2)
		require.Equal(t, "10", string(a.Messages[0].Payload))
		require.Equal(t, "h/a/", a.Messages[0].Channel)
		require.Equal(t, "other", string(a.Messages[1].Payload), "h/ is h and every channel below it")
		require.Equal(t, "h/other/", a.Messages[1].Channel)
	})
	t.Run("window outside the stored times", func(t *testing.T) {
		future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		a := decodeHistory(t, c.historyRequest(21, map[string]any{"channel": reader + "/h/a/?from=" + future}))
		require.Empty(t, a.Messages)
	})
	refusals := []struct {
		name   string
		body   any
		status int
	}{
		{"key without l", map[string]any{"channel": n.scopedKey(t, "h/#", "r") + "/h/a/"}, 401},
		{"key for another channel", map[string]any{"channel": n.scopedKey(t, "x/#", "rl") + "/h/a/"}, 401},
		{"no key at all", map[string]any{"channel": "h/a/"}, 401},
		{"bad JSON", "not an object", 400},
		{"no channel", map[string]any{"key": reader}, 400},
		{"bad startFromID", map[string]any{"channel": reader + "/h/a/", "startFromID": []byte{1, 2, 3}}, 400},
		{"wildcard in the middle of a channel", map[string]any{"channel": reader + "/h/#/a/"}, 400},
	}
	for i, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			raw := c.historyRequest(uint16(30+i), tc.body)
			var status int
			require.NoError(t, json.Unmarshal(raw["status"], &status))
			require.Equal(t, tc.status, status)
			require.NotContains(t, raw, "messages")
		})
	}
}

// TestStorageHistoryEmitterSDK reads history with the real Emitter Go SDK,
// whose History iterator pages with startFromID.
func TestStorageHistoryEmitterSDK(t *testing.T) {
	n := startKeyNode(t, func(cfg *broker.Config) {
		cfg.Storage.Provider = "disk"
		cfg.Storage.MaxRequestLimit = 3
	})
	pub := dialKey(t, n.srv, "pub", n.scopedKey(t, "sdk/#", "rws"))
	for i := 1; i <= 7; i++ {
		require.Empty(t, pub.publishAcked(uint16(i), "sdk/h/?ttl=3600", 1, strconv.Itoa(i)))
	}
	sdk := connectSDK(t, n, "sdk-history")
	key := n.scopedKey(t, "sdk/#", "rl")
	// The iterator blocks in the SDK's requests (60 s timeout of its own),
	// so it runs apart and the test waits with its own deadline.
	done := make(chan []emitter.HistoryMessage, 1)
	go func() {
		var msgs []emitter.HistoryMessage
		for m, err := range sdk.History(key, "sdk/h/", 0, 0, 7) {
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		done <- msgs
	}()
	var msgs []emitter.HistoryMessage
	select {
	case msgs = <-done:
	case <-time.After(4 * opTimeout):
		t.Fatal("SDK History did not finish")
	}
	var got []string
	for _, m := range msgs {
		require.Equal(t, "sdk/h/", m.Topic)
		payload, err := base64.StdEncoding.DecodeString(m.Payload) // the SDK keeps the base64 text
		require.NoError(t, err)
		got = append(got, string(payload))
	}
	// Pages of 3, newest first; each page oldest first.
	require.Equal(t, []string{"5", "6", "7", "2", "3", "4", "1"}, got)
}
