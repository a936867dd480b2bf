package broker

import (
	"sync"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// encoder holds the wire forms of the message being routed. Each form is
// encoded at most once per publish, however many subscribers receive it
// (DESIGN §3); the buffers belong to the publishing connection and are
// reused, so routing a QoS 0 message allocates nothing.
type encoder struct {
	topic, payload []byte
	// forms[tag][0] is the QoS 0 form, forms[tag][1] the QoS 1/2 form with
	// packet id 0, patched per subscriber; tag 1 is the Emitter dialect's
	// topic with a trailing '/'.
	forms  [2][2]wireForm
	etopic []byte // topic + "/" for the Emitter form
	ack    []byte // scratch for small replies
	now    int64  // unix ns when the publish was routed
	// via is the connection whose reading goroutine routes with this
	// encoder; writes are deferred to the end of its read batch. nil for
	// pooled encoders (wills, node messages, JSON-RPC).
	via *conn

	// The message's store id, minted on first use (s.msgID), and its
	// JSON-RPC form (s.appendJSONForm). origin is the publisher's key
	// subject; callers set it before publish and it is not reset.
	id      store.ID
	hasID   bool
	next    store.ID // preset id for the next publish (see reset)
	hasNext bool
	// remote: the message came from a peer node, so it is not sent on
	// (delivery between nodes is one hop, DESIGN §7).
	remote   bool
	peers    []string // scratch for the interested peers
	jsonForm []byte
	hasJSON  bool
	origin   string
}

type wireForm struct {
	b     []byte
	pidAt int
	have  bool
}

func (e *encoder) reset(t, payload []byte) {
	e.topic, e.payload = t, payload
	// An id chosen before the publish (a publisher's timestamp, or the id
	// a peer node sent) becomes this message's id; otherwise one is minted
	// on first use.
	e.id, e.hasID = e.next, e.hasNext
	e.hasNext, e.hasJSON = false, false
	for i := range e.forms {
		e.forms[i][0].have, e.forms[i][1].have = false, false
	}
}

// form returns the encoding for a subscription tag and QoS class, encoding
// it on first use. Retain is 0 on delivery to existing subscriptions
// [MQTT-3.3.1-9].
func (e *encoder) form(tag uint8, qos byte) ([]byte, int) {
	class := min(qos, 1)
	f := &e.forms[tag&1][class]
	if !f.have {
		t := e.topic
		if tag&tagEmitter != 0 {
			e.etopic = append(append(e.etopic[:0], e.topic...), '/')
			t = e.etopic
		}
		p := mqtt.Publish{QoS: class, Topic: t, Payload: e.payload}
		f.b = p.AppendTo(f.b[:0])
		f.pidAt = p.PacketIDOffset()
		f.have = true
	}
	return f.b, f.pidAt
}

// encoders serve publishes that do not come from a connection (wills,
// retained replays, node messages).
var encoders = sync.Pool{New: func() any { return new(encoder) }}

// publish routes one message to every matching subscription. qos is the
// publisher's; each subscriber gets min(qos, granted) [MQTT-3.8.4-6]. The
// hot path: one cached trie lookup, one encoding per form, one copy into
// each recipient's outbound queue.
// With noEcho (Emitter's me=0) the publisher's own session is skipped.
func (s *Server) publish(enc *encoder, t, payload []byte, qos byte, retain bool, from *session, noEcho bool) {
	enc.reset(t, payload)
	if retain {
		s.setRetained(enc, t, payload, qos)
	}
	res := s.trie.Match(t)
	if s.cluster != nil && !enc.remote {
		// Other nodes' subscribers first: their link writer runs in
		// parallel with the local deliveries below.
		s.toPeers(enc, t, payload, qos, retain)
	}
	if len(res.Subs) == 0 && len(res.Groups) == 0 {
		return
	}
	// One clock read per publish stamps the batches it starts, for the
	// publish-to-deliver latency measured when they are written.
	enc.now = time.Now().UnixNano()
	delivered := 0
	for i := range res.Subs {
		e := &res.Subs[i]
		if noEcho && e.Sub == from {
			continue
		}
		delivered += s.deliver(enc, e.Sub, min(qos, e.QoS), e.Tag)
	}
	for _, g := range res.Groups {
		e := g.Pick()
		delivered += s.deliver(enc, e.Sub, min(qos, e.QoS), e.Tag)
	}
	// Counted once per publish, not per recipient: two atomic adds instead
	// of two per delivery.
	if delivered > 0 {
		s.stats.AddMessagesOut(int64(delivered))
		s.stats.AddBytesOut(int64(delivered * len(payload)))
	}
}

// deliver hands one message to a session; it returns 1 when a QoS 0 copy
// was queued on a connection (QoS 1/2 deliveries are counted when they go
// on the wire, in session.sendLocked).
func (s *Server) deliver(enc *encoder, to *session, qos byte, tag uint8) int {
	if tag&tagJSON != 0 {
		if to.pushJSON(s.appendJSONForm(enc), enc.now, enc.via) {
			return 1
		}
		return 0
	}
	b, pidAt := enc.form(tag, qos)
	if qos == 0 {
		// QoS 0 is not kept for offline sessions; it is "at most once".
		if c := to.conn.Load(); c != nil && c.enqueueVia(nil, b, enc.now, enc.via) {
			return 1
		}
		return 0
	}
	to.sendQoS(b, pidAt, qos, len(enc.payload), enc.via)
	return 0
}

// publishWill publishes a connection's will message if the connection's key
// allows it (B7); a forbidden will is dropped and logged.
func (s *Server) publishWill(from *session, cl *keys.Claims, w *willMessage) {
	t, ok := s.authorizeWill(cl, w)
	if !ok {
		s.denied.Add(1)
		s.log.Info("will not published: the key does not allow its topic", "client_id", from.id)
		return
	}
	enc := encoders.Get().(*encoder)
	s.publish(enc, t, w.payload, w.qos, w.retain, from, false)
	encoders.Put(enc)
}

// subscribe adds one filter for sess and returns the SUBACK code: the
// granted QoS, or 0x80 for a filter that is invalid or over the limits
// (A16, H7; pinned in docs/mqtt.md). ok reports success.
// ref, when set, is the Emitter-dialect key that granted the subscription,
// so it ends with that key.
func (s *Server) subscribe(sess *session, filter string, qos byte, tag uint8, ref *keyRef) (code byte, ok bool) {
	if err := topic.ValidateFilter(filter); err != nil {
		s.log.Debug("subscribe refused", "client_id", sess.id, "err", err)
		return mqtt.SubackFailure, false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	_, exists := sess.subs[filter]
	if !exists {
		if max := s.cfg.Limits.MaxSubscriptions; max > 0 && len(sess.subs) >= max {
			s.log.Debug("subscribe refused: limits.max_subscriptions", "client_id", sess.id)
			return mqtt.SubackFailure, false
		}
	}
	// A repeated filter replaces the old subscription and keeps one copy
	// [MQTT-3.8.4-3].
	if _, err := s.trie.Subscribe(filter, sess, qos, tag); err != nil {
		return mqtt.SubackFailure, false
	}
	sess.subs[filter] = qos
	sess.noteSubscribed(filter, tag) // persistent sessions: sessionstore.go
	if ref != nil {
		if sess.keyed == nil {
			sess.keyed = make(map[string]keyRef)
		}
		sess.keyed[filter] = *ref
	} else {
		delete(sess.keyed, filter)
	}
	if !exists {
		// Emitter presence: a replaced subscription is no change.
		s.presence.notify(sess.conn.Load(), filter, presenceSubscribe)
	}
	return qos, true
}

func (s *Server) unsubscribe(sess *session, filter string) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if _, ok := sess.subs[filter]; !ok {
		return
	}
	delete(sess.subs, filter)
	delete(sess.keyed, filter)
	sess.noteUnsubscribed(filter)
	s.trie.Unsubscribe(filter, sess)
	s.presence.notify(sess.conn.Load(), filter, presenceUnsubscribe)
}

// sendRetained sends the retained messages matching a new subscription,
// with RETAIN set [MQTT-3.3.1-6], at min(stored QoS, granted QoS). Shared
// subscriptions get none: they are for work distribution, not state.
func (s *Server) sendRetained(sess *session, filter string, granted byte, tag uint8) {
	if _, _, shared := topic.SplitShared(filter); shared {
		return
	}
	c := sess.conn.Load()
	if c == nil {
		return
	}
	msgs, err := s.store.Retained(filter)
	if err != nil {
		s.log.Warn("retained lookup failed", "err", err)
		return
	}
	c.sendStored(msgs, tag, granted, true)
}
