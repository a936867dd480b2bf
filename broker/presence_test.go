package broker_test

// Emitter presence and links (emitter.md §3-4, docs/emitter.md): first with
// the real Emitter Go SDK, used as an application would use it, then over
// raw MQTT to pin the exact JSON shapes, the error statuses and the
// lifecycle rules (disconnect, persistent sessions, link scope) that an SDK
// cannot show.

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	emitter "github.com/emitter-io/go/v2"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
)

// linkNameText is Emitter's 400 text for a bad link name (emitter.md §10).
const linkNameText = "the link must be an alphanumeric string of 1 or 2 characters"

// ---------------------------------------------------------------- SDK

// presenceInbox collects what an SDK client's OnPresence handler receives.
type presenceInbox struct {
	mu     sync.Mutex
	events []emitter.PresenceEvent
}

// option installs the handler when the SDK client is built, before it
// connects, so no callback can race the setter.
func (in *presenceInbox) option() func(*emitter.Client) {
	return func(c *emitter.Client) {
		c.OnPresence(func(_ *emitter.Client, e emitter.PresenceEvent) {
			in.mu.Lock()
			defer in.mu.Unlock()
			in.events = append(in.events, e)
		})
	}
}

// next waits for the next event and removes it from the inbox.
func (in *presenceInbox) next(t *testing.T) emitter.PresenceEvent {
	t.Helper()
	var e emitter.PresenceEvent
	waitFor(t, opTimeout, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		if len(in.events) == 0 {
			return false
		}
		e = in.events[0]
		in.events = in.events[1:]
		return true
	})
	return e
}

// sortedWho orders presence entries by id, as the node lists them.
func sortedWho(who ...emitter.PresenceInfo) []emitter.PresenceInfo {
	sort.Slice(who, func(i, j int) bool { return who[i].ID < who[j].ID })
	return who
}

// presence calls the SDK's Presence with a deadline.
func (c *sdkClient) presence(t *testing.T, key, channel string, status, changes bool) {
	t.Helper()
	require.NoError(t, sdkCall(t, func() error { return c.Presence(key, channel, status, changes) }))
}

// TestEmitterSDKPresence: Presence(key, "chat/", true, true) lists the
// subscribers with their CONNECT usernames and watches the channel; another
// client's subscribe, unsubscribe and disconnect reach OnPresence with the
// shapes the SDK decodes (a status's who is an array, an event's an object,
// which the SDK wraps in a one-element slice).
func TestEmitterSDKPresence(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rp")
	alice := connectSDK(t, n, "sdk-alice", emitter.WithUsername("alice"))
	bob := connectSDK(t, n, "sdk-bob", emitter.WithUsername("bob"))
	var events presenceInbox
	watcher := connectSDK(t, n, "sdk-watcher", emitter.WithUsername("watcher"), events.option())
	for _, c := range []*sdkClient{alice, bob} {
		require.NoError(t, sdkCall(t, func() error { return c.Subscribe(key, "chat/", nil) }))
	}
	aliceInfo := emitter.PresenceInfo{ID: alice.id(t), Username: "alice"}
	bobInfo := emitter.PresenceInfo{ID: bob.id(t), Username: "bob"}

	watcher.presence(t, key, "chat/", true, true)
	status := events.next(t)
	require.Equal(t, "status", status.Event)
	require.Equal(t, "chat/", status.Channel)
	require.InDelta(t, time.Now().Unix(), status.Time, 60)
	require.NotZero(t, status.Request, "req carries the request's packet id")
	require.Equal(t, sortedWho(aliceInfo, bobInfo), status.Who)

	carol := connectSDK(t, n, "sdk-carol", emitter.WithUsername("carol"))
	carolInfo := emitter.PresenceInfo{ID: carol.id(t), Username: "carol"}
	require.NoError(t, sdkCall(t, func() error { return carol.Subscribe(key, "chat/room1/", nil) }))
	e := events.next(t)
	require.Equal(t, "subscribe", e.Event)
	require.Equal(t, "chat/room1/", e.Channel, "a watch covers the channels below it")
	require.Zero(t, e.Request, "events answer no request")
	require.Equal(t, []emitter.PresenceInfo{carolInfo}, e.Who)

	require.NoError(t, sdkCall(t, func() error { return carol.Unsubscribe(key, "chat/room1/") }))
	e = events.next(t)
	require.Equal(t, "unsubscribe", e.Event)
	require.Equal(t, "chat/room1/", e.Channel)
	require.Equal(t, []emitter.PresenceInfo{carolInfo}, e.Who)

	bob.Disconnect(100 * time.Millisecond)
	e = events.next(t)
	require.Equal(t, "unsubscribe", e.Event, "a connection that ends leaves its channels")
	require.Equal(t, "chat/", e.Channel)
	require.Equal(t, []emitter.PresenceInfo{bobInfo}, e.Who)

	// Status only (the SDK sends changes:false, which ends the watch).
	watcher.presence(t, key, "chat/", true, false)
	status = events.next(t)
	require.Equal(t, "status", status.Event)
	require.Equal(t, []emitter.PresenceInfo{aliceInfo}, status.Who)
	// No more events: carol subscribes, then the next status request's
	// answer is the next thing the watcher gets (the node queues an event
	// before the subscriber's SUBACK, so it would come first).
	require.NoError(t, sdkCall(t, func() error { return carol.Subscribe(key, "chat/", nil) }))
	watcher.presence(t, key, "chat/", true, false)
	status = events.next(t)
	require.Equal(t, "status", status.Event, "an event arrived after changes:false")
	require.Equal(t, sortedWho(aliceInfo, carolInfo), status.Who)
}

// TestEmitterSDKPresenceRefused: presence needs 'p' and refuses extend
// keys (emitter.md §4). Emitter answers a request's error on the request's
// own topic, which the Go SDK hands to OnPresence as an event with no
// "event" and the request's id; the status itself is pinned over raw MQTT
// in TestPresenceErrorsWire.
func TestEmitterSDKPresenceRefused(t *testing.T) {
	n := startKeyNode(t, nil)
	var events presenceInbox
	c := connectSDK(t, n, "sdk-refused", events.option())
	for _, perm := range []string{"r", "rpe"} {
		t.Run(perm, func(t *testing.T) {
			c.presence(t, n.scopedKey(t, "chat/#", perm), "chat/", true, false)
			e := events.next(t)
			require.Empty(t, e.Event, "a refusal is no status")
			require.Empty(t, e.Channel)
			require.NotZero(t, e.Request)
		})
	}
}

// TestEmitterSDKLink: CreateLink then PublishWithLink delivers on the
// linked channel, with and without the link's own subscription; a bad name
// is refused with Emitter's text.
func TestEmitterSDKLink(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rw")
	a := connectSDK(t, n, "sdk-link-a")
	b := connectSDK(t, n, "sdk-link-b")
	var inB sdkInbox
	require.NoError(t, sdkCall(t, func() error { return b.Subscribe(key, "chat/", inB.handle) }))

	var inA sdkInbox
	var got *emitter.Link
	require.NoError(t, sdkCall(t, func() error {
		var err error
		got, err = a.CreateLink(key, "chat/room1/", "r1", inA.handle)
		return err
	}))
	require.Equal(t, "r1", got.Name)
	require.Equal(t, "chat/room1/", got.Channel)
	require.NoError(t, sdkCall(t, func() error { return a.PublishWithLink("r1", "via link") }))
	require.Equal(t, "chat/room1/", inA.waitFor(t, "via link"), "subscribe:true subscribed the link's channel")
	require.Equal(t, "chat/room1/", inB.waitFor(t, "via link"))

	// Without a handler the SDK asks for no subscription; QoS 1 through
	// the link is acknowledged.
	require.NoError(t, sdkCall(t, func() error {
		_, err := a.CreateLink(key, "chat/", "c", nil)
		return err
	}))
	require.NoError(t, sdkCall(t, func() error { return a.PublishWithLink("c", "acked", emitter.WithAtLeastOnce()) }))
	require.Equal(t, "chat/", inB.waitFor(t, "acked"))

	for _, name := range []string{"abc", "a-", ""} {
		err := sdkCall(t, func() error {
			_, err := a.CreateLink(key, "chat/", name, nil)
			return err
		})
		require.EqualError(t, err, linkNameText, "name %q", name)
	}
}

// ---------------------------------------------------------------- raw MQTT

// wireEvent is a presence change event as sent on the wire.
type wireEvent struct {
	Time    int64  `json:"time"`
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Who     struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"who"`
}

// wireWho is one entry of a status answer's "who".
type wireWho struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// apiClient is a raw client for the request API. Presence events share
// the topic of presence answers and may arrive while it waits for an
// answer; they are kept, in order, for event().
type apiClient struct {
	*keyClient
	id      string // connection id, from emitter/me/
	events  []wireEvent
	nextReq uint16
}

// dialAPI connects a clean-session raw client with a username and, when
// key is not "", that CONNECT key; it learns its connection id.
func dialAPI(t *testing.T, srv *broker.Server, clientID, username, key string) *apiClient {
	t.Helper()
	return connectAPI(t, srv, mqtt.Connect{ClientID: clientID, CleanSession: true, KeepAlive: 60,
		Username: username, Password: []byte(key), PasswordFlag: key != ""})
}

func connectAPI(t *testing.T, srv *broker.Server, p mqtt.Connect) *apiClient {
	t.Helper()
	c := &apiClient{keyClient: &keyClient{rawClient: dialRaw(t, srv, transportTCP)}}
	p.UsernameFlag = p.Username != ""
	c.mustConnect(p)
	var me struct {
		ID    string            `json:"id"`
		Links map[string]string `json:"links"`
	}
	c.decode(c.request("me", nil), &me)
	c.id = me.ID
	require.NotEmpty(t, c.id)
	return c
}

// request publishes a QoS 1 request to emitter/<op>/ and returns the
// answer, which the node sends before its PUBACK (emitter.md §1).
func (c *apiClient) request(op string, body any) map[string]json.RawMessage {
	c.t.Helper()
	b, ok := body.([]byte)
	if !ok {
		var err error
		b, err = json.Marshal(body)
		require.NoError(c.t, err)
	}
	c.nextReq++
	id := c.nextReq
	topic := "emitter/" + op + "/"
	p := mqtt.Publish{QoS: 1, PacketID: id, Topic: []byte(topic), Payload: b}
	c.write(p.AppendTo(nil))
	var answer map[string]json.RawMessage
	for {
		h, body := c.next()
		if h.Type == mqtt.TypePuback {
			gotID, err := mqtt.DecodeAck(body)
			require.NoError(c.t, err)
			require.Equal(c.t, id, gotID)
			require.NotNil(c.t, answer, "the answer to %s comes before the PUBACK", topic)
			return answer
		}
		require.Equal(c.t, mqtt.TypePublish, h.Type)
		pub := c.decodePublish(h, body)
		var fields map[string]json.RawMessage
		require.NoError(c.t, json.Unmarshal(pub.Payload, &fields), "payload %s", pub.Payload)
		if _, hasReq := fields["req"]; !hasReq && string(pub.Topic) == "emitter/presence/" {
			c.events = append(c.events, decodeWireEvent(c.t, pub.Payload))
			continue
		}
		require.Equal(c.t, topic, string(pub.Topic), "payload %s", pub.Payload)
		require.Nil(c.t, answer, "one answer per request")
		require.JSONEq(c.t, itoa(id), string(fields["req"]), "req is the packet id")
		answer = fields
	}
}

func itoa(id uint16) string { b, _ := json.Marshal(id); return string(b) }

func (c *apiClient) decodePublish(h mqtt.FixedHeader, body []byte) mqtt.Publish {
	c.t.Helper()
	var p mqtt.Publish
	require.NoError(c.t, mqtt.DecodePublish(h.Flags, body, &p))
	require.Equal(c.t, byte(0), p.QoS, "answers and events are QoS 0")
	return p
}

func (c *apiClient) decode(fields map[string]json.RawMessage, into any) {
	c.t.Helper()
	b, err := json.Marshal(fields)
	require.NoError(c.t, err)
	require.NoError(c.t, json.Unmarshal(b, into))
}

// decodeWireEvent requires exactly an event's fields, with "who" an object.
func decodeWireEvent(t testing.TB, payload []byte) wireEvent {
	t.Helper()
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(payload, &fields))
	require.ElementsMatch(t, []string{"time", "event", "channel", "who"}, mapKeys(fields), "event %s", payload)
	var who map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(fields["who"], &who), "an event's who is an object: %s", payload)
	require.ElementsMatch(t, []string{"id", "username"}, mapKeys(who))
	var e wireEvent
	require.NoError(t, json.Unmarshal(payload, &e))
	require.InDelta(t, time.Now().Unix(), e.Time, 60)
	return e
}

// event returns the next presence event, reading if none is kept.
func (c *apiClient) event() wireEvent {
	c.t.Helper()
	if len(c.events) == 0 {
		p := c.readPublish()
		require.Equal(c.t, "emitter/presence/", string(p.Topic), "payload %s", p.Payload)
		return decodeWireEvent(c.t, p.Payload)
	}
	e := c.events[0]
	c.events = c.events[1:]
	return e
}

// noEvents proves that no event is owed: an event is queued to watchers
// before the change it reports is acknowledged to its author, so any event
// for a change already acknowledged arrives before the answer to a request
// sent now.
func (c *apiClient) noEvents() {
	c.t.Helper()
	c.request("me", nil)
	require.Empty(c.t, c.events, "unexpected presence events")
}

// requireEvent requires the next event to be this one.
func (c *apiClient) requireEvent(event, channel string, who *apiClient, username string) {
	c.t.Helper()
	e := c.event()
	require.Equal(c.t, event, e.Event)
	require.Equal(c.t, channel, e.Channel)
	require.Equal(c.t, who.id, e.Who.ID)
	require.Equal(c.t, username, e.Who.Username)
}

// status asks for the status of channel with key and returns "who".
func (c *apiClient) status(key, channel string) []wireWho {
	c.t.Helper()
	ans := c.request("presence", map[string]any{"key": key, "channel": channel, "changes": nil})
	require.ElementsMatch(c.t, []string{"req", "status", "time", "event", "channel", "who"}, mapKeys(ans))
	var st struct {
		Status  int       `json:"status"`
		Event   string    `json:"event"`
		Time    int64     `json:"time"`
		Who     []wireWho `json:"who"`
		Channel string    `json:"channel"`
	}
	c.decode(ans, &st)
	require.Equal(c.t, 200, st.Status)
	require.Equal(c.t, "status", st.Event)
	require.InDelta(c.t, time.Now().Unix(), st.Time, 60)
	require.NotNil(c.t, st.Who, "who is an array, never null")
	return st.Who
}

// watch sets this connection's watch of channel without asking for status.
func (c *apiClient) watch(key, channel string, on bool) {
	c.t.Helper()
	ans := c.request("presence", map[string]any{"key": key, "channel": channel, "status": false, "changes": on})
	require.ElementsMatch(c.t, []string{"req", "status"}, mapKeys(ans), "status:false answers only req and status")
	require.JSONEq(c.t, "200", string(ans["status"]))
}

func who(entries ...*apiClient) []string {
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.id)
	}
	sort.Strings(ids)
	return ids
}

func whoIDs(list []wireWho) []string {
	var ids []string
	for _, w := range list {
		ids = append(ids, w.ID)
	}
	return ids
}

// TestPresenceStatusWire: who lists this node's connections whose
// subscription matches the channel, Emitter-dialect and plain MQTT alike,
// by prefix (a subscriber to chat/ is present on chat/room1/, not the
// reverse), with their CONNECT usernames, sorted by id.
func TestPresenceStatusWire(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rp")
	alice := dialAPI(t, n.srv, "alice", "alice", key) // plain MQTT, CONNECT key
	bob := dialAPI(t, n.srv, "bob", "bob", "")        // Emitter dialect
	carol := dialAPI(t, n.srv, "carol", "", "")       // no username
	other := dialAPI(t, n.srv, "other", "other", n.masterKey(t))
	alice.subscribe(1, "chat/#", 0)
	bob.subscribe(1, key+"/chat/", 0)
	carol.subscribe(1, key+"/chat/room1/", 0)
	other.subscribe(1, "news/#", 0)
	watcher := dialAPI(t, n.srv, "watcher", "watcher", "")

	got := watcher.status(key, "chat/")
	require.Equal(t, who(alice, bob), whoIDs(got))
	for _, w := range got {
		want := map[string]string{alice.id: "alice", bob.id: "bob"}[w.ID]
		require.Equal(t, want, w.Username)
	}
	require.Equal(t, who(alice, bob, carol), whoIDs(watcher.status(key, "chat/room1/")))
	require.Equal(t, who(alice, bob, carol), whoIDs(watcher.status(key, "chat/room1")), "a missing '/' is added")
	require.Equal(t, who(alice, bob), whoIDs(watcher.status(key, "chat/?last=3")), "options are ignored")
	require.Equal(t, []wireWho{{ID: carol.id, Username: ""}},
		filterWho(watcher.status(key, "chat/room1/"), carol.id), "no username: empty string")
	require.Empty(t, watcher.status(n.scopedKey(t, "empty/#", "p"), "empty/"), "nobody: an empty array")

	// The channel comes back normalised; status:false answers only
	// {"req","status":200}.
	ans := watcher.request("presence", map[string]any{"key": key, "channel": "chat"})
	require.JSONEq(t, `"chat/"`, string(ans["channel"]))
	watcher.watch(key, "chat/", false)

	// Without "key" the CONNECT key authorises, as for emitter/history/.
	require.Equal(t, who(alice, bob), whoIDs(alice.status("", "chat/")))

	// A connection that ends is no longer present.
	alice.write(mqtt.AppendDisconnect(nil))
	alice.expectClosed()
	waitFor(t, opTimeout, func() bool { return len(watcher.status(key, "chat/")) == 1 })
	require.Equal(t, who(bob), whoIDs(watcher.status(key, "chat/")))
}

func filterWho(list []wireWho, id string) []wireWho {
	for _, w := range list {
		if w.ID == id {
			return []wireWho{w}
		}
	}
	return nil
}

// TestPresenceErrorsWire: refusals come back on emitter/presence/ as
// {"req","status","message"} (emitter.md §3, §10): 400 for a body or
// channel Emitter cannot read, 401 for a key that is invalid, lacks 'p',
// is an extend key or does not cover the channel.
func TestPresenceErrorsWire(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rp")
	c := dialAPI(t, n.srv, "asker", "asker", "")
	tests := []struct {
		name   string
		body   any
		status int
	}{
		{"control", map[string]any{"key": key, "channel": "chat/"}, 200},
		{"broken JSON", []byte(`{"key":`), 400},
		{"wrong type", map[string]any{"key": key, "channel": 7}, 400},
		{"empty channel", map[string]any{"key": key, "channel": ""}, 400},
		{"empty level", map[string]any{"key": key, "channel": "chat//room/"}, 400},
		{"share group", map[string]any{"key": key, "channel": "$share/g/chat/"}, 400},
		{"no p", map[string]any{"key": n.scopedKey(t, "chat/#", "rw"), "channel": "chat/"}, 401},
		{"extend key", map[string]any{"key": n.scopedKey(t, "chat/#", "rpe"), "channel": "chat/"}, 401},
		{"other channel", map[string]any{"key": n.scopedKey(t, "news/#", "rp"), "channel": "chat/"}, 401},
		{"parent channel", map[string]any{"key": key, "channel": "ch/"}, 401},
		{"not a key", map[string]any{"key": "not-a-key", "channel": "chat/"}, 401},
		{"no key at all", map[string]any{"channel": "chat/"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			ans := c.request("presence", tt.body)
			if tt.status == 200 {
				require.JSONEq(t, "200", string(ans["status"]))
				return
			}
			b, err := json.Marshal(ans)
			require.NoError(t, err)
			e := decodeEmitterError(t, b, true)
			require.Equal(t, tt.status, e.Status)
			if tt.status == 401 {
				require.Equal(t, keyUnauthorizedText, e.Message)
			}
		})
	}
}

// TestPresenceEventsWire: a watcher hears of subscribe and unsubscribe on
// the channels its watch covers, as {"time","event","channel","who":{}};
// a replaced subscription, an unknown unsubscribe and other channels are
// silent; an absent "changes" keeps the watch and false ends it.
func TestPresenceEventsWire(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rwp")
	watcher := dialAPI(t, n.srv, "watcher", "w", "")
	deep := dialAPI(t, n.srv, "deep-watcher", "d", "")
	alice := dialAPI(t, n.srv, "alice", "alice", key)
	bob := dialAPI(t, n.srv, "bob", "bob", n.masterKey(t))
	watcher.watch(key, "chat/", true)
	deep.watch(key, "chat/room1/", true)

	bob.subscribe(1, key+"/chat/room1/", 0)
	watcher.requireEvent("subscribe", "chat/room1/", bob, "bob")
	deep.requireEvent("subscribe", "chat/room1/", bob, "bob")
	alice.subscribe(1, "chat/plain", 0) // plain MQTT filters count too
	watcher.requireEvent("subscribe", "chat/plain/", alice, "alice")
	alice.subscribe(2, "chat/#", 0)
	watcher.requireEvent("subscribe", "chat/", alice, "alice")
	deep.noEvents() // a watch of chat/room1/ does not cover chat/ (Emitter's prefix rule)

	bob.subscribe(2, key+"/chat/room1/", 0) // the same filter again: no change
	bob.subscribe(3, "news/#", 0)           // not watched
	watcher.noEvents()

	alice.write(mqtt.AppendUnsubscribe(nil, 3, [][]byte{[]byte("chat/plain")}))
	h, _ := alice.next()
	require.Equal(t, mqtt.TypeUnsuback, h.Type)
	watcher.requireEvent("unsubscribe", "chat/plain/", alice, "alice")
	alice.write(mqtt.AppendUnsubscribe(nil, 4, [][]byte{[]byte("never/subscribed")}))
	h, _ = alice.next()
	require.Equal(t, mqtt.TypeUnsuback, h.Type)
	watcher.noEvents()

	// A status request without "changes" leaves the watch on. (bob, on
	// chat/room1/ only, is not present on chat/.)
	require.Equal(t, who(alice), whoIDs(watcher.status(key, "chat/")))
	// A connection that drops without DISCONNECT leaves every channel.
	require.NoError(t, bob.nc.Close())
	watcher.requireEvent("unsubscribe", "chat/room1/", bob, "bob")
	deep.requireEvent("unsubscribe", "chat/room1/", bob, "bob")

	watcher.watch(key, "chat/", false)
	carol := dialAPI(t, n.srv, "carol", "carol", key)
	carol.subscribe(1, "chat/#", 0)
	watcher.noEvents()
}

// TestPresencePersistentSession: presence follows connections, not
// sessions. A persistent session's subscriptions outlive its connection,
// but the connection leaves its channels when it ends, and the one that
// resumes the session joins them under its own id.
func TestPresencePersistentSession(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rp")
	watcher := dialAPI(t, n.srv, "watcher", "w", "")
	watcher.watch(key, "chat/", true)
	persistent := mqtt.Connect{ClientID: "dora", CleanSession: false, KeepAlive: 60, Username: "dora"}

	first := connectAPI(t, n.srv, persistent)
	first.subscribe(1, key+"/chat/", 1)
	watcher.requireEvent("subscribe", "chat/", first, "dora")
	first.write(mqtt.AppendDisconnect(nil))
	first.expectClosed()
	watcher.requireEvent("unsubscribe", "chat/", first, "dora")
	require.Empty(t, watcher.status(key, "chat/"), "an offline session is not present")

	second := connectAPI(t, n.srv, persistent)
	require.NotEqual(t, first.id, second.id)
	watcher.requireEvent("subscribe", "chat/", second, "dora")
	require.Equal(t, who(second), whoIDs(watcher.status(key, "chat/")))

	// Taken over by a third connection: the second leaves, the third joins.
	third := connectAPI(t, n.srv, persistent)
	watcher.requireEvent("unsubscribe", "chat/", second, "dora")
	watcher.requireEvent("subscribe", "chat/", third, "dora")
	second.expectClosed()
	watcher.noEvents()
}

// TestPresenceWatchEndsWithKey: a watch made with a request key ends when
// that key is revoked (E8), like a subscription made with a topic key; a
// watch made with another key goes on.
func TestPresenceWatchEndsWithKey(t *testing.T) {
	n := startKeyNode(t, nil)
	doomed := n.scopedKey(t, "chat/#", "rp")
	kept := n.scopedKey(t, "chat/#", "rp")
	revokedWatcher := dialAPI(t, n.srv, "revoked-watcher", "rw", "")
	control := dialAPI(t, n.srv, "control", "c", "")
	revokedWatcher.watch(doomed, "chat/", true)
	control.watch(kept, "chat/", true)
	sub := dialAPI(t, n.srv, "sub", "s", n.masterKey(t))
	sub.subscribe(1, "chat/a", 0)
	revokedWatcher.requireEvent("subscribe", "chat/a/", sub, "s")
	control.requireEvent("subscribe", "chat/a/", sub, "s")

	cl, err := n.srv.Keyring().Verify(doomed)
	require.NoError(t, err)
	require.NoError(t, n.srv.Revoke(cl.ID, time.Time{})) // enforces at once
	sub.subscribe(2, "chat/b", 0)
	control.requireEvent("subscribe", "chat/b/", sub, "s")
	revokedWatcher.noEvents()
}

// TestPresenceWatchLimit: limits.max_subscriptions also bounds one
// connection's presence watches; a repeated watch does not count twice.
func TestPresenceWatchLimit(t *testing.T) {
	n := startKeyNode(t, func(cfg *broker.Config) { cfg.Limits.MaxSubscriptions = 2 })
	key := n.scopedKey(t, "chat/#", "rp")
	c := dialAPI(t, n.srv, "watcher", "w", "")
	c.watch(key, "chat/a/", true)
	c.watch(key, "chat/a/", true)
	c.watch(key, "chat/b/", true)
	ans := c.request("presence", map[string]any{"key": key, "channel": "chat/c/", "changes": true})
	require.JSONEq(t, "400", string(ans["status"]))
	c.watch(key, "chat/a/", false)
	c.watch(key, "chat/c/", true)
}

// ---------------------------------------------------------------- links

// link asks for a link and returns the answer.
func (c *apiClient) link(name, key, channel string, subscribe bool) map[string]json.RawMessage {
	c.t.Helper()
	return c.request("link", map[string]any{"name": name, "key": key, "channel": channel, "subscribe": subscribe})
}

// TestLinkWire: a link answers {"req","status":200,"name","channel"}, is
// listed by emitter/me/, and a PUBLISH to its name is the PUBLISH to
// KEY/channel/?opts, options included; subscribe:true subscribes without
// replaying history; the link dies with its connection.
func TestLinkWire(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rwsl")
	obs := n.observe(t)
	c := dialAPI(t, n.srv, "linker", "l", "")

	ans := c.link("c1", key, "chat/room/?ttl=60", false)
	require.ElementsMatch(t, []string{"req", "status", "name", "channel"}, mapKeys(ans))
	require.JSONEq(t, `{"status":200,"name":"c1","channel":"chat/room/?ttl=60","req":`+itoa(c.nextReq)+`}`, mustJSON(t, ans))
	require.JSONEq(t, `{"c1":"chat/room/?ttl=60"}`, string(c.request("me", nil)["links"]))

	require.Empty(t, c.publishAcked(1, "c1", 1, "via link"))
	require.Equal(t, "chat/room", obs.in.waitMessage(t, "chat/room", "via link").Topic)
	// ?ttl=60 came with the link: the message was stored.
	reader := dialAPI(t, n.srv, "reader", "r", "")
	replay := reader.subscribeReplay(1, key+"/chat/room/?last=1", 0)
	require.Equal(t, []string{"via link"}, publishedPayloads(replay))

	// A link of the same name replaces the old one.
	c.link("c1", key, "chat/other/", false)
	require.JSONEq(t, `{"c1":"chat/other/"}`, string(c.request("me", nil)["links"]))

	// subscribe:true: subscribed, with no replay of what is stored.
	c.publishAcked(2, key+"/chat/sub/?ttl=60", 1, "stored before")
	ans = c.link("s", key, "chat/sub/", true)
	require.JSONEq(t, "200", string(ans["status"]), "no replayed message before the answer")
	obs.publish(t, "chat/sub/x", 0, "live")
	p := c.readPublish()
	require.Equal(t, "chat/sub/x/", string(p.Topic), "delivered the Emitter way, with the '/'")
	require.Equal(t, "live", string(p.Payload))

	// Ordinary short topics are not links.
	master := dialAPI(t, n.srv, "master", "m", n.masterKey(t))
	require.Empty(t, master.publishAcked(1, "zz", 1, "short"))
	obs.in.waitMessage(t, "zz", "short")
	// Links belong to their connection and die with it.
	require.Empty(t, master.publishAcked(2, "c1", 1, "not a link here"))
	obs.in.waitMessage(t, "c1", "not a link here")
	c.write(mqtt.AppendDisconnect(nil))
	c.expectClosed()
	again := dialAPI(t, n.srv, "linker", "l", n.masterKey(t))
	require.JSONEq(t, `{}`, string(again.request("me", nil)["links"]))
	require.Empty(t, again.publishAcked(1, "c1", 1, "after"))
	obs.in.waitMessage(t, "c1", "after")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestLinkErrorsWire: Emitter's statuses for bad link requests, answered on
// emitter/link/: 400 with Emitter's text for a bad name, 400 for a channel
// it cannot read, 401 for a bad key or, with subscribe:true, one that may
// not read the channel.
func TestLinkErrorsWire(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "chat/#", "rw")
	c := dialAPI(t, n.srv, "linker", "l", "")
	tests := []struct {
		name    string
		body    any
		status  int
		message string
	}{
		{"control", map[string]any{"name": "ok", "key": key, "channel": "chat/"}, 200, ""},
		{"three characters", map[string]any{"name": "abc", "key": key, "channel": "chat/"}, 400, linkNameText},
		{"empty name", map[string]any{"name": "", "key": key, "channel": "chat/"}, 400, linkNameText},
		{"not alphanumeric", map[string]any{"name": "a-", "key": key, "channel": "chat/"}, 400, linkNameText},
		{"UTF-8 letter", map[string]any{"name": "é", "key": key, "channel": "chat/"}, 400, linkNameText},
		{"broken JSON", []byte(`{"name":`), 400, ""},
		{"no trailing slash", map[string]any{"name": "a", "key": key, "channel": "chat"}, 400, ""},
		{"empty channel", map[string]any{"name": "a", "key": key, "channel": ""}, 400, ""},
		{"bad options", map[string]any{"name": "a", "key": key, "channel": "chat/?ttl"}, 400, ""},
		{"not a key", map[string]any{"name": "a", "key": "not-a-key", "channel": "chat/"}, 401, keyUnauthorizedText},
		{"no key", map[string]any{"name": "a", "channel": "chat/"}, 401, keyUnauthorizedText},
		{"subscribe without r", map[string]any{"name": "a", "key": n.scopedKey(t, "chat/#", "w"), "channel": "chat/", "subscribe": true}, 401, keyUnauthorizedText},
		{"subscribe elsewhere", map[string]any{"name": "a", "key": key, "channel": "news/", "subscribe": true}, 401, keyUnauthorizedText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			ans := c.request("link", tt.body)
			if tt.status == 200 {
				require.JSONEq(t, "200", string(ans["status"]))
				return
			}
			e := decodeEmitterError(t, []byte(mustJSON(t, ans)), true)
			require.Equal(t, tt.status, e.Status)
			if tt.message != "" {
				require.Equal(t, tt.message, e.Message)
			}
		})
	}
	c.t = t
	require.JSONEq(t, `{"ok":"chat/"}`, string(c.request("me", nil)["links"]), "refused links are not kept")
}

// TestLinkAuthorisedAtUse: a link is only an alias. Its key is checked at
// every PUBLISH, so revoking the key stops the link (401 on emitter/error/,
// nothing routed), and a key that may not write gets nothing through it.
func TestLinkAuthorisedAtUse(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	key := n.scopedKey(t, "chat/#", "rw")
	readOnly := n.scopedKey(t, "chat/#", "r")
	c := dialAPI(t, n.srv, "linker", "l", "")
	c.link("w", key, "chat/w/", false)
	c.link("r", readOnly, "chat/r/", false)

	require.Empty(t, c.publishAcked(1, "w", 1, "before"))
	obs.in.waitMessage(t, "chat/w", "before")
	requireUnauthorized(t, c.publishAcked(2, "r", 1, "read-only"), 2)
	require.False(t, obs.routed(t, "chat/r"))

	cl, err := n.srv.Keyring().Verify(key)
	require.NoError(t, err)
	require.NoError(t, n.srv.Revoke(cl.ID, time.Time{}))
	requireUnauthorized(t, c.publishAcked(3, "w", 1, "revoked"), 3)
	require.False(t, obs.routed(t, "unused/topic")) // a sentinel: what was routed has arrived
	for _, m := range obs.in.snapshot() {
		require.NotEqual(t, "revoked", string(m.Payload), "a revoked key's link still routes")
	}
}
