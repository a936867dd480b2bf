package broker

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// Persistent sessions in the store (docs/storage.md, "Sessions"). A session
// with clean session = 0 outlives its connection [MQTT-3.1.2-4]; with the
// disk provider it also outlives the process. Two things are kept:
//
//   - its subscriptions, as one JSON record per session in the store's KV
//     namespace ("session/<sha256(client id)>"), listed by 256 index
//     buckets ("sessions/index/<xx>", JSON arrays of client ids). The KV
//     namespace cannot be listed, hence the index; buckets keep one
//     session's arrival from rewriting every other id.
//   - the QoS 1/2 messages waiting for it while it is offline, in the
//     store's session queue, appended before the publisher's PUBACK and
//     removed when the client acknowledges them.
//
// The in-memory session stays the working copy; the store is written
// beside it and read only by restoreSessions at start.
//
// Records and acknowledgements are written by the session saver goroutine,
// never on a path that holds Server.mu or session.mu, because with
// storage.sync "always" every write is an fsync. A subscription is
// therefore durable shortly after its SUBACK rather than before it; a crash
// in between loses it (docs/storage.md). Queue appends are synchronous: the
// message is in the store when the publisher hears PUBACK.

const (
	sessionIndexPrefix  = "sessions/index/"
	sessionRecordPrefix = "session/"
	sessionIndexBuckets = 256
)

// sessionSaver collects what must be written and the goroutine that writes it.
type sessionSaver struct {
	mu    sync.Mutex
	dirty map[string]struct{} // client ids whose record may be stale
	acks  []queuedRef         // acknowledged queue entries to remove
	wake  chan struct{}       // capacity 1: "there is work"

	// flushMu serialises flushes and guards index, the client ids the
	// store's index lists, by bucket. Lock order: flushMu, then Server.mu,
	// then session.mu; mu is a leaf.
	flushMu sync.Mutex
	index   [sessionIndexBuckets]map[string]struct{}
}

type queuedRef struct {
	client string
	id     store.ID
}

// sessionRecord is the stored form of a persistent session.
type sessionRecord struct {
	ClientID string     `json:"client_id"`
	Subs     []savedSub `json:"subs"`
}

// savedSub is one subscription of a sessionRecord.
type savedSub struct {
	Filter string `json:"filter"`
	QoS    byte   `json:"qos"`
	Tag    uint8  `json:"tag,omitempty"`
	// Keyed marks a subscription granted by an Emitter-dialect topic key:
	// it ends when that key expires or is revoked (E8), after a restart too.
	Keyed      bool   `json:"keyed,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	KeyExpires int64  `json:"key_expires_ms,omitempty"`
}

func sessionDigest(clientID string) [sha256.Size]byte { return sha256.Sum256([]byte(clientID)) }

// sessionKey is the KV key of a session's record. Client ids may be 64 KiB
// long and KV keys are capped at store.MaxKeyLen, so the id is hashed.
func sessionKey(clientID string) string {
	d := sessionDigest(clientID)
	return sessionRecordPrefix + hex.EncodeToString(d[:])
}

func sessionBucket(clientID string) int { return int(sessionDigest(clientID)[0]) }

func sessionIndexKey(bucket int) string { return fmt.Sprintf("%s%02x", sessionIndexPrefix, bucket) }

// sessionChanged asks the saver to rewrite clientID's record from the
// current state. It never blocks and may be called with any lock held.
func (s *Server) sessionChanged(clientID string) {
	sv := &s.saver
	sv.mu.Lock()
	if sv.dirty == nil {
		sv.dirty = make(map[string]struct{})
	}
	sv.dirty[clientID] = struct{}{}
	sv.mu.Unlock()
	sv.signal()
}

// queueAcked asks the saver to remove an acknowledged entry of client's
// stored queue. It never blocks. Removal is not made durable before the
// next packet: a crash in between only redelivers the message, which QoS 1
// allows.
func (s *Server) queueAcked(client string, id store.ID) {
	sv := &s.saver
	sv.mu.Lock()
	sv.acks = append(sv.acks, queuedRef{client: client, id: id})
	sv.mu.Unlock()
	sv.signal()
}

func (sv *sessionSaver) signal() {
	select {
	case sv.wake <- struct{}{}:
	default:
	}
}

// sessionSaverLoop writes session records and queue acknowledgements as
// they are asked for; Close writes what is left after the last connection
// detached.
func (s *Server) sessionSaverLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.saver.wake:
			s.flushSessions()
		case <-s.done:
			return
		}
	}
}

// flushSessions writes everything sessionChanged and queueAcked asked for.
func (s *Server) flushSessions() {
	sv := &s.saver
	sv.flushMu.Lock()
	defer sv.flushMu.Unlock()
	sv.mu.Lock()
	dirty, acks := sv.dirty, sv.acks
	sv.dirty, sv.acks = nil, nil
	sv.mu.Unlock()

	for _, a := range acks {
		if err := s.store.QueueAck(a.client, a.id); err != nil {
			s.log.Warn("acknowledged message not removed from the session queue", "client_id", a.client, "err", err)
		}
	}
	if len(dirty) == 0 {
		return
	}
	type pending struct {
		id  string
		rec *sessionRecord
	}
	var keep, drop []pending
	addBuckets := map[int]bool{}
	for id := range dirty {
		b := sessionBucket(id)
		_, listed := sv.index[b][id]
		rec := s.sessionRecordOf(id)
		switch {
		case rec != nil:
			keep = append(keep, pending{id, rec})
			if !listed {
				if sv.index[b] == nil {
					sv.index[b] = make(map[string]struct{})
				}
				sv.index[b][id] = struct{}{}
				addBuckets[b] = true
			}
		case listed:
			drop = append(drop, pending{id: id})
		}
	}
	failed := func(id string, err error) {
		s.log.Warn("persistent session not saved", "client_id", id, "err", err)
		if !errors.Is(err, store.ErrClosed) {
			s.sessionChanged(id) // retried on the next flush
		}
	}
	// Index entries go first and come out last: a crash in between leaves
	// an entry without a record, which restoreSessions drops, never a
	// record that nothing lists.
	for b := range addBuckets {
		if err := s.writeSessionIndex(b); err != nil {
			s.log.Warn("persistent session index not saved", "bucket", b, "err", err)
		}
	}
	for _, p := range keep {
		value, err := json.Marshal(p.rec)
		if err == nil {
			err = s.store.KVSet(sessionKey(p.id), value, 0)
		}
		if err != nil {
			failed(p.id, err)
		}
	}
	dropBuckets := map[int]bool{}
	for _, p := range drop {
		if _, err := s.store.KVDelete(sessionKey(p.id)); err != nil {
			failed(p.id, err)
			continue
		}
		b := sessionBucket(p.id)
		delete(sv.index[b], p.id)
		dropBuckets[b] = true
	}
	for b := range dropBuckets {
		if err := s.writeSessionIndex(b); err != nil {
			s.log.Warn("persistent session index not saved", "bucket", b, "err", err)
		}
	}
}

// writeSessionIndex stores one index bucket. sv.flushMu must be held.
func (s *Server) writeSessionIndex(b int) error {
	ids := make([]string, 0, len(s.saver.index[b]))
	for id := range s.saver.index[b] {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		_, err := s.store.KVDelete(sessionIndexKey(b))
		return err
	}
	slices.Sort(ids)
	value, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	return s.store.KVSet(sessionIndexKey(b), value, 0)
}

// sessionRecordOf snapshots the persistent session of clientID, or returns
// nil when there is none (it ended, or the id is now a clean session).
// Takes Server.mu, then session.mu.
func (s *Server) sessionRecordOf(clientID string) *sessionRecord {
	s.mu.Lock()
	sess := s.sessions[clientID]
	s.mu.Unlock()
	if sess == nil || sess.clean {
		return nil
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.gone {
		return nil
	}
	rec := &sessionRecord{ClientID: clientID, Subs: make([]savedSub, 0, len(sess.subs))}
	for f, qos := range sess.subs {
		sub := savedSub{Filter: f, QoS: qos, Tag: sess.tags[f]}
		if ref, ok := sess.keyed[f]; ok {
			sub.Keyed, sub.KeyID = true, ref.jti
			if !ref.expires.IsZero() {
				sub.KeyExpires = ref.expires.UnixMilli()
			}
		}
		rec.Subs = append(rec.Subs, sub)
	}
	slices.SortFunc(rec.Subs, func(a, b savedSub) int { return cmp.Compare(a.Filter, b.Filter) })
	return rec
}

// noteSubscribed records a new or replaced subscription's tag, which the
// trie cannot list per session, and schedules the record's rewrite.
// sess.mu must be held.
func (sess *session) noteSubscribed(filter string, tag uint8) {
	if tag != 0 {
		if sess.tags == nil {
			sess.tags = make(map[string]uint8)
		}
		sess.tags[filter] = tag
	} else {
		delete(sess.tags, filter)
	}
	if !sess.clean {
		sess.srv.sessionChanged(sess.id)
	}
}

// noteUnsubscribed is noteSubscribed for a removed filter. sess.mu must be
// held.
func (sess *session) noteUnsubscribed(filter string) {
	delete(sess.tags, filter)
	if !sess.clean {
		sess.srv.sessionChanged(sess.id)
	}
}

// persistLocked appends a queued message of an offline persistent session
// to the store's session queue, bounded like the in-memory queue (H6), so
// it survives a restart. sess.mu must be held: appends happen in queue
// order, which is the order restoreSessions loads them in.
func (sess *session) persistLocked(m *outbound) {
	if sess.clean || sess.gone || m.released || !m.storeID.IsZero() {
		return
	}
	t, payload, ok := outboundParts(m.pkt)
	if !ok {
		return
	}
	srv := sess.srv
	id := srv.ids.Next()
	msg := store.Message{ID: id, Topic: string(t), Payload: payload, QoS: m.qos}
	if _, err := srv.store.QueueAppend(sess.id, msg, srv.cfg.Limits.MaxQueued); err != nil {
		srv.log.Warn("queued message kept in memory only", "client_id", sess.id, "err", err)
		return
	}
	m.storeID = id
}

// ackStoredLocked removes m from the store's session queue once the client
// no longer needs its payload: at PUBACK, and at PUBREC for QoS 2, after
// which only PUBREL is resent and resending the message would deliver it
// twice [MQTT-4.3.3]. Also used when m is dropped from the queue. sess.mu
// must be held.
func (sess *session) ackStoredLocked(m *outbound) {
	if m == nil || m.storeID.IsZero() {
		return
	}
	sess.srv.queueAcked(sess.id, m.storeID)
	m.storeID = store.ID{}
}

// spillOffline runs when a persistent session's connection ends: messages
// still in flight or queued in memory go to the store too, and later ones
// are appended as they are queued (offline). Called without Server.mu, so
// the writes hold up only this session's publishers.
func (sess *session) spillOffline() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.clean || sess.gone || sess.conn.Load() != nil {
		return // dropped, or already resumed by a new connection
	}
	for _, m := range sess.inflight {
		sess.persistLocked(m)
	}
	for _, m := range sess.queue {
		sess.persistLocked(m)
	}
	sess.offline = true
}

// forgetLocked ends a persistent session's life in the store: its queue
// at once (a later session with the same id must not inherit it), its
// record through the saver. Called from dropSessionLocked with Server.mu
// and sess.mu held; the queue drop is one write, and only a persistent
// session being replaced pays it.
func (sess *session) forgetLocked() {
	sess.gone = true
	sess.offline = false
	if sess.clean {
		return
	}
	if err := sess.srv.store.QueueDrop(sess.id); err != nil {
		sess.srv.log.Warn("session queue not removed from the store", "client_id", sess.id, "err", err)
	}
	sess.srv.sessionChanged(sess.id)
}

// restrictToPersisted is restrictTo for a resumed session, keeping the
// store in step: queue entries restrictTo dropped are removed, and the
// record is rewritten without the dropped subscriptions. The caller holds
// Server.mu.
func (sess *session) restrictToPersisted(cl *keys.Claims) {
	stored := sess.storedIDs()
	sess.restrictTo(cl)
	if sess.clean {
		return
	}
	sess.srv.sessionChanged(sess.id)
	if len(stored) == 0 {
		return
	}
	sess.mu.Lock()
	for _, m := range slices.Concat(sess.inflight, sess.queue) {
		delete(stored, m.storeID)
	}
	sess.mu.Unlock()
	for id := range stored {
		sess.srv.queueAcked(sess.id, id)
	}
}

// storedIDs returns the store ids of the session's messages, nil if none.
func (sess *session) storedIDs() map[store.ID]struct{} {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	var ids map[store.ID]struct{}
	for _, m := range slices.Concat(sess.inflight, sess.queue) {
		if !m.storeID.IsZero() {
			if ids == nil {
				ids = make(map[store.ID]struct{})
			}
			ids[m.storeID] = struct{}{}
		}
	}
	return ids
}

// outboundParts returns the topic and payload of an encoded QoS 1/2
// PUBLISH whose packet id may still be 0.
func outboundParts(pkt []byte) (t, payload []byte, ok bool) {
	t = outboundTopic(pkt)
	if t == nil {
		return nil, nil, false
	}
	h, err := mqtt.ParseFixedHeader(pkt, 0)
	if err != nil {
		return nil, nil, false
	}
	start := h.Size + 2 + len(t) + 2 // topic length, topic, packet id
	if start > len(pkt) || h.Size+h.Remaining != len(pkt) {
		return nil, nil, false
	}
	return t, pkt[start:], true
}

// errNoSessionRecord: the index lists a client id whose record is gone (a
// crash between the two writes, or damage).
var errNoSessionRecord = errors.New("no session record")

// restoreSessions recreates, offline, the persistent sessions the store
// kept: subscriptions back in the trie, stored queue in the session's
// queue. It runs in New, before anything can connect. What cannot be read
// is logged and dropped, never served: a session that is lost is the same
// as one that was never made, and the client is told so by CONNACK's
// session present = 0 [MQTT-3.2.2-2].
func (s *Server) restoreSessions() {
	sv := &s.saver
	sv.wake = make(chan struct{}, 1)
	sessions, queued := 0, 0
	for b := range sessionIndexBuckets {
		value, ok, err := s.store.KVGet(sessionIndexKey(b))
		if err != nil || !ok {
			if err != nil {
				s.log.Error("persistent session index unreadable; its sessions are lost", "bucket", b, "err", err)
			}
			continue
		}
		var ids []string
		if err := json.Unmarshal(value, &ids); err != nil {
			s.log.Error("persistent session index damaged; its sessions are lost", "bucket", b, "err", err)
			_, _ = s.store.KVDelete(sessionIndexKey(b))
			continue
		}
		for _, id := range ids {
			if sv.index[b] == nil {
				sv.index[b] = make(map[string]struct{})
			}
			sv.index[b][id] = struct{}{}
			n, err := s.restoreSession(id)
			if err != nil {
				s.log.Warn("persistent session not restored", "client_id", id, "err", err)
				_ = s.store.QueueDrop(id)
				s.sessionChanged(id) // the saver removes it from the index
				continue
			}
			sessions++
			queued += n
		}
	}
	if sessions > 0 {
		s.log.Info("persistent sessions restored", "sessions", sessions, "queued_messages", queued)
	}
}

// restoreSession rebuilds one session and returns how many queued messages
// it got back.
func (s *Server) restoreSession(clientID string) (int, error) {
	value, ok, err := s.store.KVGet(sessionKey(clientID))
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errNoSessionRecord
	}
	var rec sessionRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return 0, fmt.Errorf("session record: %w", err)
	}
	if rec.ClientID != clientID {
		return 0, fmt.Errorf("session record names another client id")
	}
	// All or nothing: a record is checked whole before the trie sees it.
	for _, sub := range rec.Subs {
		if sub.QoS > 2 || topic.ValidateFilter(sub.Filter) != nil {
			return 0, fmt.Errorf("session record: invalid subscription")
		}
	}
	sess := newSession(s, clientID, false)
	sess.offline = true
	for _, sub := range rec.Subs {
		if _, err := s.trie.Subscribe(sub.Filter, sess, sub.QoS, sub.Tag); err != nil {
			for f := range sess.subs {
				s.trie.Unsubscribe(f, sess)
			}
			return 0, fmt.Errorf("session record: %w", err)
		}
		sess.subs[sub.Filter] = sub.QoS
		if sub.Tag != 0 {
			if sess.tags == nil {
				sess.tags = make(map[string]uint8)
			}
			sess.tags[sub.Filter] = sub.Tag
		}
		if sub.Keyed {
			if sess.keyed == nil {
				sess.keyed = make(map[string]keyRef)
			}
			ref := keyRef{jti: sub.KeyID}
			if sub.KeyExpires != 0 {
				ref.expires = time.UnixMilli(sub.KeyExpires)
			}
			sess.keyed[sub.Filter] = ref
		}
	}
	msgs, err := s.store.QueuePeek(clientID, 0)
	if err != nil {
		// The subscriptions are still worth having; the queue is lost.
		s.log.Error("session queue unreadable; its messages are lost", "client_id", clientID, "err", err)
		_ = s.store.QueueDrop(clientID)
		msgs = nil
	}
	if excess := len(msgs) - s.cfg.Limits.MaxQueued; excess > 0 {
		// limits.max_queued was lowered since: keep the newest (H6).
		for _, m := range msgs[:excess] {
			s.queueAcked(clientID, m.ID)
		}
		msgs = msgs[excess:]
	}
	for _, m := range msgs {
		s.ids.Advance(m.ID)
		if m.QoS == 0 || m.QoS > 2 {
			s.queueAcked(clientID, m.ID)
			continue
		}
		p := mqtt.Publish{QoS: m.QoS, Topic: []byte(m.Topic), Payload: m.Payload}
		sess.queue = append(sess.queue, &outbound{
			pkt: p.AppendTo(nil), pidAt: p.PacketIDOffset(), qos: m.QoS,
			payloadLen: len(m.Payload), storeID: m.ID,
		})
	}
	s.mu.Lock()
	s.sessions[clientID] = sess
	s.mu.Unlock()
	return len(sess.queue), nil
}
