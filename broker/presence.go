package broker

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
)

// Emitter's presence (emitter.md §4, docs/emitter.md "presence").
//
// A status request on emitter/presence/ lists this node's MQTT connections
// subscribed to a filter that matches the channel, Emitter-dialect and plain
// MQTT subscriptions alike: it is a lookup in the subscription trie, so a
// subscriber to "a/" is present on "a/b/" (prefix semantics), as in Emitter.
//
// A connection that asks with "changes": true becomes a watcher of the
// channel: whenever a connection subscribes to or unsubscribes from a
// channel the watch covers (the watch is a prefix, so a watcher of "a/" also
// hears about "a/b/"), the watcher gets a QoS 0 PUBLISH on emitter/presence/.
// A connection that ends or is taken over counts as unsubscribing from
// everything it had; a persistent session that a new connection resumes
// counts as that connection subscribing.
//
// Cost: events are built only when somebody watches; the check is one
// atomic load. They are encoded once per event, whatever the number of
// watchers, and appended to each watcher's outbound queue, which never
// blocks (a watcher that does not read is closed as a slow consumer like
// any subscriber, DESIGN §3). Emitter instead feeds events through a
// 100-deep queue whose sender blocks subscribers when it is full; there is
// no queue here, so nothing can block and nothing is dropped.
//
// Presence is node-local: the status lists this node's connections and
// events come from subscriptions made on this node.

// presenceTopic is where status answers and change events are delivered.
const presenceTopic = "emitter/presence/"

// Change events (emitter.md §4).
const (
	presenceSubscribe   = "subscribe"
	presenceUnsubscribe = "unsubscribe"
)

// presenceWatchCache is the match cache of the watch index: events are
// rare next to publishes and their channels repeat, so a small cache does.
const presenceWatchCache = 256

// presenceHub is the node's index of presence watches.
type presenceHub struct {
	// watches counts live watches, so that subscribe and unsubscribe cost
	// one atomic load when nobody watches. Changed under mu.
	watches atomic.Int64
	// trie maps a watched channel's filter ("a/b/#" for "a/b/") to the
	// connections watching it; notify reads it without taking mu.
	trie *topic.Trie[*conn]

	// mu guards byConn: each connection's watch filters and the key that
	// granted each, so a watch ends with its key (E8) and with its
	// connection. Taken before the watch trie's lock and never held while
	// taking Server.mu or session.mu (LOCKS.md).
	mu     sync.Mutex
	byConn map[*conn]map[string]keyRef
}

func newPresenceHub() *presenceHub {
	return &presenceHub{
		trie:   topic.NewTrie[*conn](presenceWatchCache),
		byConn: make(map[*conn]map[string]keyRef),
	}
}

// presenceInfo is one entry of "who": a connection id (what emitter/me/
// returns) and the MQTT CONNECT username.
type presenceInfo struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// presenceEvent is a change event. Unlike the status answer's array, its
// "who" is one object (emitter.md §4); SDKs depend on the difference.
type presenceEvent struct {
	Time    int64        `json:"time"`
	Event   string       `json:"event"`
	Channel string       `json:"channel"`
	Who     presenceInfo `json:"who"`
}

// presenceRequest is the body of an emitter/presence/ request. Status and
// Changes are pointers because absent differs from false: status defaults
// to true, and an absent changes leaves the watch as it is.
type presenceRequest struct {
	Key     string `json:"key"`
	Channel string `json:"channel"`
	Status  *bool  `json:"status"`
	Changes *bool  `json:"changes"`
}

// apiPresence answers emitter/presence/: it changes this connection's
// watch when "changes" is given, then answers with the status, or with
// {"status":200} alone when "status" is false.
func (c *conn) apiPresence(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req presenceRequest
	if err := json.Unmarshal(body, &req); err != nil {
		fail(400, msgBadRequest)
		return
	}
	channel, filter, ok := presenceChannel(req.Channel)
	if !ok {
		fail(400, msgBadRequest)
		return
	}
	var ref keyRef
	if !c.srv.cfg.NoAuth {
		// The key in the request, else the CONNECT key (as emitter/history/
		// does). It needs 'p' and must not be an extend key, which
		// CanPresence also checks (emitter.md §4, E7).
		cl := c.claims.Load()
		if req.Key != "" {
			var err error
			if cl, err = c.verifyKey(req.Key); err != nil {
				fail(401, msgUnauthorized)
				return
			}
			// A watch made with a request key ends with that key; one
			// made with the CONNECT key ends with the connection, which
			// that key's expiry closes.
			ref = refOf(cl)
		}
		if cl == nil || !cl.CanPresence(filter) {
			fail(401, msgUnauthorized)
			return
		}
	}
	if req.Changes != nil {
		// Watch before reading the status, so a subscription made in
		// between is reported (as an event, and maybe in the status too)
		// rather than lost.
		if *req.Changes {
			if !c.srv.presence.watch(c, filter, ref, c.srv.cfg.Limits.MaxSubscriptions) {
				fail(400, "too many presence watches on this connection (limits.max_subscriptions)")
				return
			}
		} else {
			c.srv.presence.unwatch(c, filter)
		}
	}
	if req.Status != nil && !*req.Status {
		reply(map[string]any{"status": 200})
		return
	}
	reply(map[string]any{
		"status":  200,
		"time":    time.Now().Unix(),
		"event":   "status",
		"channel": channel,
		"who":     c.srv.presentOn(filter),
	})
}

// presenceChannel normalises a requested channel the way Emitter does: an
// options level is ignored and a missing trailing '/' is added. It returns
// that channel and the filter it stands for ("a/b/" -> "a/b/#").
func presenceChannel(raw string) (channel, filter string, ok bool) {
	channel = raw
	if i := strings.Index(channel, "?"); i >= 0 {
		channel = channel[:i]
	}
	if !strings.HasSuffix(channel, "/") {
		channel += "/"
	}
	filter, err := emitterChannel(channel, true)
	if err != nil || topic.ValidateFilter(filter) != nil || strings.HasPrefix(filter, "$share/") {
		return "", "", false
	}
	return channel, filter, true
}

// presentOn lists this node's MQTT connections with a subscription matching
// the topic filter's channel stands for ("a/b/#" -> topic "a/b"): shared
// subscriptions count for every member, JSON-RPC and SSE subscribers (which
// have no connection id) are not listed. Sorted by id, never nil, so the
// answer's "who" is always an array.
func (s *Server) presentOn(filter string) []presenceInfo {
	res := s.trie.Match([]byte(presenceMatchTopic(filter)))
	who := make([]presenceInfo, 0, len(res.Subs))
	seen := make(map[*conn]struct{}, len(res.Subs))
	add := func(e topic.Entry[*session]) {
		if e.Tag&tagJSON != 0 {
			return
		}
		c := e.Sub.conn.Load()
		if c == nil || c.id == "" {
			return // an offline persistent session is not present
		}
		if _, dup := seen[c]; dup {
			return
		}
		seen[c] = struct{}{}
		who = append(who, presenceInfo{ID: c.id, Username: c.username})
	}
	for _, e := range res.Subs {
		add(e)
	}
	for _, g := range res.Groups {
		for _, e := range g.Members {
			add(e)
		}
	}
	slices.SortFunc(who, func(a, b presenceInfo) int { return strings.Compare(a.ID, b.ID) })
	return who
}

// presenceMatchTopic is the concrete topic a subscription filter's channel
// names, for matching against filters: "a/b/#" -> "a/b", "a/b" -> "a/b",
// "$share/g/a/#" -> "a". A wildcard level stays a literal '+' or '#', which
// only a wildcard at that level matches.
func presenceMatchTopic(filter string) string {
	if _, inner, shared := topic.SplitShared(filter); shared {
		filter = inner
	}
	if filter == "#" {
		return filter
	}
	return strings.TrimSuffix(filter, "/#")
}

// watch makes c a watcher of filter, granted by ref (zero: by the CONNECT
// key or with auth off), replacing the grant of the same watch. It reports
// false when c already holds limit watches (0 = no limit), which bounds
// the index one connection can grow.
func (h *presenceHub) watch(c *conn, filter string, ref keyRef, limit int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	mine := h.byConn[c]
	if _, ok := mine[filter]; ok {
		mine[filter] = ref
		return true
	}
	if limit > 0 && len(mine) >= limit {
		return false
	}
	if _, err := h.trie.Subscribe(filter, c, 0, 0); err != nil {
		return false
	}
	if mine == nil {
		mine = make(map[string]keyRef)
		h.byConn[c] = mine
	}
	mine[filter] = ref
	h.watches.Add(1)
	return true
}

// unwatch ends c's watch of filter, if any.
func (h *presenceHub) unwatch(c *conn, filter string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unwatchLocked(c, filter)
}

// unwatchLocked is unwatch with h.mu held.
func (h *presenceHub) unwatchLocked(c *conn, filter string) {
	mine := h.byConn[c]
	if _, ok := mine[filter]; !ok {
		return
	}
	delete(mine, filter)
	if len(mine) == 0 {
		delete(h.byConn, c)
	}
	h.trie.Unsubscribe(filter, c)
	h.watches.Add(-1)
}

// unwatchAll ends every watch of c; called when the connection ends.
func (h *presenceHub) unwatchAll(c *conn) {
	if h.watches.Load() == 0 {
		return // the common case: a disconnect takes no lock here
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.byConn[c] {
		h.unwatchLocked(c, f)
	}
}

// dropExpired ends the watches whose key has expired (with the same 5 s
// of leeway as subscriptions) or been revoked (E8). The key enforcer calls
// it every second and after a revocation.
func (h *presenceHub) dropExpired(now time.Time, revoked func(jti string) bool) {
	if h.watches.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c, mine := range h.byConn {
		for f, ref := range mine {
			expired := !ref.expires.IsZero() && now.After(ref.expires.Add(5*time.Second))
			if expired || (ref.jti != "" && revoked(ref.jti)) {
				h.unwatchLocked(c, f)
			}
		}
	}
}

// notify tells the watchers of filter's channel that who subscribed to it
// or unsubscribed from it. who may be nil (an offline session, a
// subscription restored at start): nobody is connected, so there is no
// change to report. Callers may hold Server.mu and session.mu; notify
// takes the watch index's lock and the watchers' conn.omu, which come after
// those (LOCKS.md), and never blocks.
func (h *presenceHub) notify(who *conn, filter, event string) {
	if h.watches.Load() == 0 || who == nil || who.id == "" {
		return
	}
	t := presenceMatchTopic(filter)
	res := h.trie.Match([]byte(t))
	if len(res.Subs) == 0 {
		return
	}
	payload, err := json.Marshal(presenceEvent{
		Time:    time.Now().Unix(),
		Event:   event,
		Channel: t + "/",
		Who:     presenceInfo{ID: who.id, Username: who.username},
	})
	if err != nil {
		return
	}
	// Encoded once for every watcher; enqueue copies it.
	pkt := (&mqtt.Publish{Topic: []byte(presenceTopic), Payload: payload}).AppendTo(nil)
	for _, e := range res.Subs {
		e.Sub.enqueue(pkt)
	}
}

// notifyAll reports event for every subscription of sess on behalf of who:
// a connection that ends unsubscribes from everything, one that resumes a
// persistent session subscribes to everything. sess.mu must be held.
func (h *presenceHub) notifyAll(sess *session, who *conn, event string) {
	if h.watches.Load() == 0 || who == nil {
		return
	}
	for f := range sess.subs {
		h.notify(who, f, event)
	}
}

// left reports that c, which was sess's connection, has ended. Takes
// sess.mu; the caller may hold Server.mu (LOCKS.md order).
func (h *presenceHub) left(sess *session, c *conn) {
	if h.watches.Load() == 0 {
		return
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	h.notifyAll(sess, c, presenceUnsubscribe)
}
