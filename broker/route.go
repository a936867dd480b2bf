package broker

import (
	"sync"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
)

// encoder holds the wire forms of the message being routed. Each form is
// encoded at most once per publish, however many subscribers receive it
// (DESIGN §3); the buffers belong to the publishing connection and are
// reused, so routing a QoS 0 message allocates nothing.
type encoder struct {
	topic, payload []byte
	q0             []byte // QoS 0 form
	q1             []byte // QoS 1/2 form, packet id 0, patched per subscriber
	q1PidAt        int
	have0, have1   bool
	ack            []byte // scratch for small replies
}

func (e *encoder) reset(t, payload []byte) {
	e.topic, e.payload = t, payload
	e.have0, e.have1 = false, false
}

func (e *encoder) form0() []byte {
	if !e.have0 {
		// Retain is 0 on delivery to existing subscriptions [MQTT-3.3.1-9].
		p := mqtt.Publish{Topic: e.topic, Payload: e.payload}
		e.q0 = p.AppendTo(e.q0[:0])
		e.have0 = true
	}
	return e.q0
}

func (e *encoder) form1() ([]byte, int) {
	if !e.have1 {
		p := mqtt.Publish{QoS: 1, Topic: e.topic, Payload: e.payload}
		e.q1 = p.AppendTo(e.q1[:0])
		e.q1PidAt = p.PacketIDOffset()
		e.have1 = true
	}
	return e.q1, e.q1PidAt
}

// encoders serve publishes that do not come from a connection (wills,
// retained replays, node messages).
var encoders = sync.Pool{New: func() any { return new(encoder) }}

// publish routes one message to every matching subscription. qos is the
// publisher's; each subscriber gets min(qos, granted) [MQTT-3.8.4-6]. The
// hot path: one cached trie lookup, one encoding per form, one copy into
// each recipient's outbound queue.
func (s *Server) publish(enc *encoder, t, payload []byte, qos byte, retain bool, from *session) {
	if retain {
		s.retained.set(t, payload, qos, s.log)
	}
	enc.reset(t, payload)
	res := s.trie.Match(t)
	for i := range res.Subs {
		e := &res.Subs[i]
		s.deliver(enc, e.Sub, min(qos, e.QoS))
	}
	for _, g := range res.Groups {
		e := g.Pick()
		s.deliver(enc, e.Sub, min(qos, e.QoS))
	}
}

func (s *Server) deliver(enc *encoder, to *session, qos byte) {
	if qos == 0 {
		// QoS 0 is not kept for offline sessions; it is "at most once".
		if c := to.conn.Load(); c != nil && c.enqueue(enc.form0()) {
			s.messagesOut.Add(1)
		}
		return
	}
	b, pidAt := enc.form1()
	to.sendQoS(b, pidAt, qos)
}

// publishWill publishes a connection's will message (B7).
func (s *Server) publishWill(from *session, w *willMessage) {
	enc := encoders.Get().(*encoder)
	s.publish(enc, []byte(w.topic), w.payload, w.qos, w.retain, from)
	encoders.Put(enc)
}

// subscribe adds one filter for sess and returns the SUBACK code: the
// granted QoS, or 0x80 for a filter that is invalid or over the limits
// (A16, H7; pinned in docs/mqtt.md). ok reports success.
func (s *Server) subscribe(sess *session, filter string, qos byte) (code byte, ok bool) {
	if err := topic.ValidateFilter(filter); err != nil {
		s.log.Debug("subscribe refused", "client_id", sess.id, "err", err)
		return mqtt.SubackFailure, false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if _, exists := sess.subs[filter]; !exists {
		if max := s.cfg.Limits.MaxSubscriptions; max > 0 && len(sess.subs) >= max {
			s.log.Debug("subscribe refused: limits.max_subscriptions", "client_id", sess.id)
			return mqtt.SubackFailure, false
		}
	}
	// A repeated filter replaces the old subscription and keeps one copy
	// [MQTT-3.8.4-3].
	if _, err := s.trie.Subscribe(filter, sess, qos, 0); err != nil {
		return mqtt.SubackFailure, false
	}
	sess.subs[filter] = qos
	return qos, true
}

func (s *Server) unsubscribe(sess *session, filter string) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if _, ok := sess.subs[filter]; !ok {
		return
	}
	delete(sess.subs, filter)
	s.trie.Unsubscribe(filter, sess)
}

// sendRetained sends the retained messages matching a new subscription,
// with RETAIN set [MQTT-3.3.1-6], at min(stored QoS, granted QoS). Shared
// subscriptions get none: they are for work distribution, not state.
func (s *Server) sendRetained(sess *session, filter string, granted byte) {
	if _, _, shared := topic.SplitShared(filter); shared {
		return
	}
	msgs := s.retained.match(filter)
	if len(msgs) == 0 {
		return
	}
	c := sess.conn.Load()
	if c == nil {
		return
	}
	var buf []byte
	for _, m := range msgs {
		qos := min(m.qos, granted)
		p := mqtt.Publish{QoS: qos, Retain: true, Topic: m.topic, Payload: m.payload}
		buf = p.AppendTo(buf[:0])
		if qos == 0 {
			if c.enqueue(buf) {
				s.messagesOut.Add(1)
			}
			continue
		}
		sess.sendQoS(buf, p.PacketIDOffset(), qos)
	}
}

// retainedStore keeps the last retained message of each topic
// [MQTT-3.3.1-5]; an empty payload deletes it [MQTT-3.3.1-10/11].
type retainedStore struct {
	mu    sync.RWMutex
	max   int
	msgs  map[string]*retainedMsg
	warns int
}

type retainedMsg struct {
	topic   []byte
	payload []byte
	qos     byte
}

func newRetainedStore(max int) *retainedStore {
	return &retainedStore{max: max, msgs: make(map[string]*retainedMsg)}
}

func (r *retainedStore) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.msgs)
}

type logger interface {
	Warn(msg string, args ...any)
}

func (r *retainedStore) set(t, payload []byte, qos byte, log logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(payload) == 0 {
		delete(r.msgs, string(t))
		return
	}
	key := string(t)
	if _, exists := r.msgs[key]; !exists && r.max > 0 && len(r.msgs) >= r.max {
		// H8: overwrites still work, new topics are refused. Log the first
		// few so a flood does not flood the log too.
		if r.warns < 10 {
			r.warns++
			log.Warn("retained message refused: limits.max_retained reached", "topic", key, "max_retained", r.max)
		}
		return
	}
	r.msgs[key] = &retainedMsg{
		topic:   []byte(key),
		payload: append([]byte(nil), payload...),
		qos:     qos,
	}
}

func (r *retainedStore) match(filter string) []*retainedMsg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*retainedMsg
	for _, m := range r.msgs {
		if topic.Matches(filter, m.topic) {
			out = append(out, m)
		}
	}
	return out
}
