package broker

import (
	"sync"
	"sync/atomic"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
)

// session is the state the node keeps for one client id: its subscriptions,
// the QoS 1/2 messages on the wire and the ones waiting for a slot or for
// the client to come back. A clean session lives as long as its connection;
// a persistent one (clean session = 0) outlives it [MQTT-3.1.2-4].
type session struct {
	srv   *Server
	id    string
	clean bool // guarded by srv.mu

	conn atomic.Pointer[conn] // nil while the client is offline

	mu       sync.Mutex
	subs     map[string]byte   // filter -> granted QoS
	keyed    map[string]keyRef // filters granted by an Emitter-dialect key
	inflight []*outbound       // sent, not yet acknowledged, in send order
	queue    []*outbound       // waiting for an inflight slot or a connection
	nextID   uint16
	qos2in   map[uint16]struct{} // QoS 2 ids received and not yet released
	dropped  uint64              // messages dropped from a full queue

	// Persistence (sessionstore.go). tags holds the non-zero tags of subs,
	// which the trie cannot list per session. offline: the connection
	// ended and what it left was spilled to the store, so queued messages
	// are appended there too. gone: dropped; nothing more is persisted.
	tags    map[string]uint8
	offline bool
	gone    bool

	// JSON-RPC child sessions (see rpc.go): the subscribed string, the
	// rendered start of every push, and pushes held while history is sent
	// (nil when not holding).
	rpcFilter string
	rpcPrefix []byte
	held      [][]byte
}

// outbound is one QoS 1/2 PUBLISH owned by a session. pkt is a private copy
// of the encoding (it outlives the publisher's buffers); its packet id and
// DUP flag are patched in place.
type outbound struct {
	pkt   []byte
	pidAt int // offset of the packet id in pkt
	qos   byte
	id    uint16
	// payloadLen is counted as bytes out when the message goes on the wire.
	payloadLen int
	// released: PUBREC received for a QoS 2 message; what is left to send
	// is PUBREL [MQTT-4.3.3-1].
	released bool
	// storeID is the message's entry in the store's session queue; zero
	// when it is kept in memory only (sessionstore.go).
	storeID store.ID
}

func newSession(srv *Server, id string, clean bool) *session {
	return &session{srv: srv, id: id, clean: clean, subs: make(map[string]byte)}
}

// sendQoS delivers a QoS 1 or 2 message: on the wire now when the client is
// connected and its inflight window has room, otherwise queued (bounded;
// the oldest is dropped and counted when full, H6). The conn's outbound
// queue is fed while s.mu is held so packet ids go out in order.
// via: see encoder.via.
func (s *session) sendQoS(encoded []byte, pidAt int, qos byte, payloadLen int, via *conn) {
	pkt := make([]byte, len(encoded))
	copy(pkt, encoded)
	pkt[0] = pkt[0]&^0x06 | qos<<1
	m := &outbound{pkt: pkt, pidAt: pidAt, qos: qos, payloadLen: payloadLen}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn.Load() != nil && len(s.queue) == 0 && len(s.inflight) < s.srv.cfg.Limits.MaxInflight {
		s.sendLocked(m, via)
		return
	}
	if len(s.queue) >= s.srv.cfg.Limits.MaxQueued {
		// Drop the oldest: a client that comes back wants recent data more
		// than stale data, and the newest message was just accepted.
		s.ackStoredLocked(s.queue[0])
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.dropped++
		s.srv.stats.AddDropped(1)
	}
	s.queue = append(s.queue, m)
	if s.offline {
		s.persistLocked(m) // before the publisher's PUBACK
	}
}

// sendLocked assigns a packet id and puts m on the wire. s.mu must be held.
func (s *session) sendLocked(m *outbound, via *conn) {
	m.id = s.allocIDLocked()
	m.pkt[m.pidAt] = byte(m.id >> 8)
	m.pkt[m.pidAt+1] = byte(m.id)
	s.inflight = append(s.inflight, m)
	if c := s.conn.Load(); c != nil && c.enqueueVia(nil, m.pkt, 0, via) {
		s.srv.stats.AddMessagesOut(1)
		s.srv.stats.AddBytesOut(int64(m.payloadLen))
	}
}

// allocIDLocked returns a packet id not used by an inflight message
// [MQTT-2.3.1-2]. s.mu must be held; the window is small, so a scan is cheap.
func (s *session) allocIDLocked() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		free := true
		for _, m := range s.inflight {
			if m.id == s.nextID {
				free = false
				break
			}
		}
		if free {
			return s.nextID
		}
	}
}

// pumpLocked moves queued messages into free inflight slots. s.mu must be held.
func (s *session) pumpLocked(via *conn) {
	for len(s.queue) > 0 && len(s.inflight) < s.srv.cfg.Limits.MaxInflight && s.conn.Load() != nil {
		m := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.sendLocked(m, via)
	}
}

// resume binds a persistent session to its new connection, right after
// CONNACK was queued on it: it resends unacknowledged messages with DUP set,
// then PUBRELs, in their original order [MQTT-4.4.0-1], and then the queue.
// c becomes visible to publishers under s.mu, so sendQoS cannot put a new
// message on the wire ahead of the resent ones.
func (s *session) resume(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Emitter presence: the subscriptions change hands, from the
	// connection taken over (if it is still attached) to c.
	if prev := s.conn.Swap(c); prev != nil && prev != c {
		s.srv.presence.notifyAll(s, prev, presenceUnsubscribe)
	}
	s.srv.presence.notifyAll(s, c, presenceSubscribe)
	s.offline = false
	for _, m := range s.inflight {
		if m.released {
			c.enqueue(mqtt.AppendAck(nil, mqtt.TypePubrel, m.id))
			continue
		}
		m.pkt[0] |= 0x08 // DUP [MQTT-3.3.1-1]
		c.enqueue(m.pkt)
	}
	s.pumpLocked(c)
}

// acked handles PUBACK, PUBREC and PUBCOMP for id. It reports whether the
// id belonged to a message in the matching state.
func (s *session) acked(c *conn, id uint16, t mqtt.Type) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.inflight {
		if m.id != id {
			continue
		}
		switch {
		case t == mqtt.TypePuback && m.qos == 1,
			t == mqtt.TypePubcomp && m.qos == 2:
			s.ackStoredLocked(m)
			copy(s.inflight[i:], s.inflight[i+1:])
			s.inflight[len(s.inflight)-1] = nil
			s.inflight = s.inflight[:len(s.inflight)-1]
			s.pumpLocked(c)
			return true
		case t == mqtt.TypePubrec && m.qos == 2:
			m.released = true
			m.pkt = nil // only PUBREL is left to send
			s.ackStoredLocked(m)
			return true
		}
		return false
	}
	return false
}

// receiveQoS2 records an incoming QoS 2 packet id; it reports false when the
// id is already held, i.e. the PUBLISH is a resend that must not be routed
// again. The set is bounded by the 16-bit id space.
func (s *session) receiveQoS2(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qos2in == nil {
		s.qos2in = make(map[uint16]struct{})
	}
	if _, ok := s.qos2in[id]; ok {
		return false
	}
	s.qos2in[id] = struct{}{}
	return true
}

func (s *session) releaseQoS2(id uint16) {
	s.mu.Lock()
	delete(s.qos2in, id)
	s.mu.Unlock()
}

// attach binds c to the session for its client id, taking over any other
// connection with the same id [MQTT-3.1.4-2], sets c.sess and queues
// CONNACK and, for a resumed session, what it kept. It reports whether a
// previous session was resumed (CONNACK session present, [MQTT-3.2.2-2]).
func (s *Server) attach(c *conn, p *mqtt.Connect) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.sessions[p.ClientID]
	if old != nil {
		if oc := old.conn.Load(); oc != nil {
			oc.closeAs(reasonTakeover)
		}
		if p.CleanSession || old.clean {
			// [MQTT-3.1.2-6]: a clean session starts from nothing.
			delete(s.sessions, p.ClientID)
			s.dropSessionLocked(old)
			old = nil
		}
	}
	// [MQTT-3.2.0-1]: CONNACK must be the first packet on c, so it is
	// queued before c is stored where publishers can see it; a message
	// routed in between would otherwise overtake it.
	if old != nil {
		c.sess = old
		// The session resumes under this connection's key, not the one it
		// was built under (E10, docs/keys.md). Before CONNACK, so the gap
		// between CONNACK and resume stays as short as it was.
		old.restrictToPersisted(c.claims.Load())
		c.enqueueControl(mqtt.AppendConnack(nil, true, mqtt.Accepted))
		old.resume(c)
		return old, true
	}
	sess := newSession(s, p.ClientID, p.CleanSession)
	c.sess = sess
	c.enqueueControl(mqtt.AppendConnack(nil, false, mqtt.Accepted))
	sess.conn.Store(c)
	s.sessions[p.ClientID] = sess
	if !sess.clean {
		s.sessionChanged(sess.id) // its record, written by the saver
	}
	return sess, false
}

// detach unbinds c from its session when the connection ends. A clean
// session ends with it; a persistent one stays, offline, and queues.
func (s *Server) detach(c *conn) {
	sess := c.sess
	if !sess.clean {
		// After s.mu is released: spilling to the store may fsync.
		defer sess.spillOffline()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sess.conn.CompareAndSwap(c, nil) {
		return // taken over: the session belongs to the new connection
	}
	// Emitter presence: the connection is gone from every channel, even
	// when its persistent session keeps the subscriptions.
	s.presence.left(sess, c)
	if sess.clean {
		if s.sessions[sess.id] == sess {
			delete(s.sessions, sess.id)
		}
		s.dropSessionLocked(sess)
	}
}

// dropSessionLocked removes a session's subscriptions and messages.
// s.mu must be held; takes sess.mu. Calling it twice is harmless.
func (s *Server) dropSessionLocked(sess *session) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	// A session dropped under a live connection (taken over by a clean
	// one): that connection leaves its channels. On detach the connection
	// is already unset and has reported itself (Server.detach).
	s.presence.notifyAll(sess, sess.conn.Load(), presenceUnsubscribe)
	for f := range sess.subs {
		s.trie.Unsubscribe(f, sess)
	}
	sess.subs = map[string]byte{}
	sess.keyed = nil
	sess.inflight = nil
	sess.queue = nil
	sess.qos2in = nil
	sess.tags = nil
	sess.forgetLocked()
}

// pushJSON delivers a JSON-RPC push to a child session, or holds it while
// the subscription's history is still being sent.
func (s *session) pushJSON(body []byte, routedAt int64, via *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		msg := append(append(make([]byte, 0, len(s.rpcPrefix)+len(body)), s.rpcPrefix...), body...)
		s.held = append(s.held, msg)
		return true
	}
	c := s.conn.Load()
	return c != nil && c.enqueueVia(s.rpcPrefix, body, routedAt, via)
}

// releaseHeld sends the pushes held during a subscription's replay, in
// order, and stops holding.
func (s *session) releaseHeld() {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conn.Load()
	for _, m := range s.held {
		if c != nil {
			c.enqueue(m)
		}
	}
	s.held = nil
}
