package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
)

// btreeDegree is the fan-out of the memory provider's B-trees; 32 keeps nodes
// within a few cache lines of pointers and is google/btree's usual choice.
const btreeDegree = 32

// ctxCheckEvery is how many scanned entries pass between context checks.
const ctxCheckEvery = 1024

// memMsg is one history message held by the memory provider.
type memMsg struct {
	Message
	size  int64
	level string // first topic level, key of memStore.levels
}

func lessByID(a, b *memMsg) bool { return a.ID.Less(b.ID) }

// lessByExpiry orders by expiry then ID so equal expiries stay distinct.
func lessByExpiry(a, b *memMsg) bool {
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.Before(b.Expires)
	}
	return a.ID.Less(b.ID)
}

type kvEntry struct {
	value []byte
	exp   int64 // ms, 0 = never
}

// memStore is the memory provider. One RWMutex guards everything: reads take
// it shared, writes exclusively. Lock order: mu only.
type memStore struct {
	opts Options

	mu       sync.RWMutex
	closed   bool
	all      *btree.BTreeG[*memMsg]            // every history message, by ID
	levels   map[string]*btree.BTreeG[*memMsg] // by first level, by ID
	topics   map[string]*btree.BTreeG[*memMsg] // by topic, by ID (MaxPerTopic)
	expiring *btree.BTreeG[*memMsg]            // messages with an expiry, by expiry
	bytes    int64
	retained *btree.BTreeG[*Message] // by topic
	kv       map[string]kvEntry
	queues   map[string][]Message
	queued   int64
}

// OpenMemory returns the memory provider: nothing survives Close. History is
// bounded by Options.MaxBytes (DefaultMemoryBytes when 0), oldest evicted first.
func OpenMemory(opts Options) (Store, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMemoryBytes
	}
	return &memStore{
		opts:     opts,
		all:      btree.NewG(btreeDegree, lessByID),
		levels:   make(map[string]*btree.BTreeG[*memMsg]),
		topics:   make(map[string]*btree.BTreeG[*memMsg]),
		expiring: btree.NewG(btreeDegree, lessByExpiry),
		retained: btree.NewG(btreeDegree, func(a, b *Message) bool { return a.Topic < b.Topic }),
		kv:       make(map[string]kvEntry),
		queues:   make(map[string][]Message),
	}, nil
}

func (s *memStore) nowMs() int64 { return s.opts.Now().UnixMilli() }

// copyMessage detaches m from the caller's buffers: the broker decodes
// publishes without copying, and the store is where they start to outlive
// the read.
func copyMessage(m Message) Message {
	m.Payload = slices.Clone(m.Payload)
	return m
}

func (s *memStore) Append(msgs []Message) error {
	prepared, err := s.opts.prepareAll(msgs, s.nowMs())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, m := range prepared {
		if _, dup := s.all.Get(&memMsg{Message: Message{ID: m.ID}}); dup {
			continue // a retried batch; see Store.Append
		}
		s.insertLocked(&memMsg{Message: copyMessage(m), size: m.size(), level: firstLevel(m.Topic)})
	}
	s.enforceLimitsLocked(prepared)
	return nil
}

// insertLocked adds mm to every index. Caller holds mu exclusively.
func (s *memStore) insertLocked(mm *memMsg) {
	s.all.ReplaceOrInsert(mm)
	treeFor(s.levels, mm.level).ReplaceOrInsert(mm)
	treeFor(s.topics, mm.Topic).ReplaceOrInsert(mm)
	if !mm.Expires.IsZero() {
		s.expiring.ReplaceOrInsert(mm)
	}
	s.bytes += mm.size
}

// removeLocked deletes mm from every index. Caller holds mu exclusively.
func (s *memStore) removeLocked(mm *memMsg) {
	s.all.Delete(mm)
	deleteFrom(s.levels, mm.level, mm)
	deleteFrom(s.topics, mm.Topic, mm)
	if !mm.Expires.IsZero() {
		s.expiring.Delete(mm)
	}
	s.bytes -= mm.size
}

func treeFor(m map[string]*btree.BTreeG[*memMsg], key string) *btree.BTreeG[*memMsg] {
	t := m[key]
	if t == nil {
		t = btree.NewG(btreeDegree, lessByID)
		m[key] = t
	}
	return t
}

func deleteFrom(m map[string]*btree.BTreeG[*memMsg], key string, mm *memMsg) {
	if t := m[key]; t != nil {
		t.Delete(mm)
		if t.Len() == 0 {
			delete(m, key) // topics come and go; do not keep empty trees
		}
	}
}

// enforceLimitsLocked applies MaxPerTopic to the topics just written, then
// MaxBytes to the whole history, evicting oldest first.
func (s *memStore) enforceLimitsLocked(written []Message) {
	if s.opts.MaxPerTopic > 0 {
		for _, m := range written {
			t := s.topics[m.Topic]
			for t != nil && t.Len() > s.opts.MaxPerTopic {
				oldest, _ := t.Min()
				s.removeLocked(oldest)
				t = s.topics[m.Topic]
			}
		}
	}
	for s.bytes > s.opts.MaxBytes {
		oldest, ok := s.all.Min()
		if !ok {
			break
		}
		s.removeLocked(oldest)
	}
}

func (s *memStore) Query(ctx context.Context, q Query) ([]Message, error) {
	if err := validateQuery(&q); err != nil {
		return nil, err
	}
	lo, hi, ok := q.bounds()
	if !ok {
		return nil, nil
	}
	nowMs := s.nowMs()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	tree := s.all
	if !hasWildcard(q.Filter) {
		tree = s.topics[q.Filter]
	} else if level, ok := literalFirstLevel(q.Filter); ok {
		tree = s.levels[level]
	}
	if tree == nil {
		return nil, nil
	}
	var (
		out     []Message
		scanned int
		err     error
	)
	visit := func(mm *memMsg) bool {
		if scanned++; scanned%ctxCheckEvery == 0 {
			if err = ctx.Err(); err != nil {
				return false
			}
		}
		if !q.Newest && hi.Less(mm.ID) || q.Newest && mm.ID.Less(lo) {
			return false
		}
		if mm.expired(nowMs) || !match(q.Filter, mm.Topic) {
			return true
		}
		out = append(out, mm.Message)
		return q.Limit == 0 || len(out) < q.Limit
	}
	if q.Newest {
		tree.DescendLessOrEqual(&memMsg{Message: Message{ID: hi}}, visit)
		slices.Reverse(out)
	} else {
		tree.AscendGreaterOrEqual(&memMsg{Message: Message{ID: lo}}, visit)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *memStore) SetRetained(m Message) error {
	if err := validateMessage(&m); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(m.Payload) == 0 {
		s.retained.Delete(&Message{Topic: m.Topic}) // [MQTT-3.3.1-10]
		return nil
	}
	if _, exists := s.retained.Get(&m); !exists && s.opts.MaxRetained > 0 && s.retained.Len() >= s.opts.MaxRetained {
		return fmt.Errorf("%w: %d topics", ErrRetainedFull, s.retained.Len())
	}
	m = copyMessage(m)
	s.retained.ReplaceOrInsert(&m) // [MQTT-3.3.1-5] one per topic, replacing
	return nil
}

func (s *memStore) Retained(filter string) ([]Message, error) {
	if err := validateFilter(filter); err != nil {
		return nil, err
	}
	nowMs := s.nowMs()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []Message
	visit := func(m *Message) bool {
		if !m.expired(nowMs) && match(filter, m.Topic) {
			out = append(out, *m)
		}
		return true
	}
	if level, ok := literalFirstLevel(filter); ok {
		s.retained.AscendGreaterOrEqual(&Message{Topic: level}, func(m *Message) bool {
			if !strings.HasPrefix(m.Topic, level) {
				return false
			}
			return visit(m)
		})
	} else {
		s.retained.Ascend(visit)
	}
	return out, nil
}

func (s *memStore) KVGet(key string) ([]byte, bool, error) {
	if err := validateKey(key); err != nil {
		return nil, false, err
	}
	nowMs := s.nowMs()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	e, ok := s.kv[key]
	if !ok || (e.exp != 0 && e.exp <= nowMs) {
		return nil, false, nil
	}
	return slices.Clone(e.value), true, nil
}

func (s *memStore) KVSet(key string, value []byte, ttl time.Duration) error {
	if err := validateKey(key); err != nil {
		return err
	}
	if len(value) > MaxPayloadLen {
		return fmt.Errorf("%w: value of %d bytes", ErrInvalid, len(value))
	}
	e := kvEntry{value: append([]byte{}, value...)}
	if ttl > 0 {
		e.exp = s.opts.Now().Add(ttl).UnixMilli()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.kv[key] = e
	return nil
}

func (s *memStore) KVDelete(key string) (bool, error) {
	if err := validateKey(key); err != nil {
		return false, err
	}
	nowMs := s.nowMs()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	e, ok := s.kv[key]
	delete(s.kv, key)
	return ok && (e.exp == 0 || e.exp > nowMs), nil
}

func (s *memStore) QueueAppend(client string, m Message, limit int) (int, error) {
	if err := validateClient(client); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("%w: queue limit %d", ErrInvalid, limit)
	}
	if err := validateMessage(&m); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	q := s.queues[client]
	dropped := max(len(q)+1-limit, 0)
	q = append(q[dropped:], copyMessage(m))
	s.queues[client] = q
	s.queued += int64(1 - dropped)
	return dropped, nil
}

func (s *memStore) QueuePeek(client string, n int) ([]Message, error) {
	if err := validateClient(client); err != nil {
		return nil, err
	}
	nowMs := s.nowMs()
	s.mu.Lock() // exclusive: expired entries are removed here
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	q := s.queues[client]
	live := q[:0]
	for _, m := range q {
		if !m.expired(nowMs) {
			live = append(live, m)
		}
	}
	clear(q[len(live):]) // drop references to removed payloads
	s.queued -= int64(len(q) - len(live))
	s.setQueueLocked(client, live)
	if n <= 0 || n > len(live) {
		n = len(live)
	}
	return slices.Clone(live[:n]), nil
}

// setQueueLocked stores q for client, forgetting empty queues. Caller holds mu.
func (s *memStore) setQueueLocked(client string, q []Message) {
	if len(q) == 0 {
		delete(s.queues, client)
		return
	}
	s.queues[client] = q
}

func (s *memStore) QueueAck(client string, id ID) error {
	if err := validateClient(client); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	q := s.queues[client]
	if i := slices.IndexFunc(q, func(m Message) bool { return m.ID == id }); i >= 0 {
		s.setQueueLocked(client, slices.Delete(q, i, i+1))
		s.queued--
	}
	return nil
}

func (s *memStore) QueueDrop(client string) error {
	if err := validateClient(client); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.queued -= int64(len(s.queues[client]))
	delete(s.queues, client)
	return nil
}

func (s *memStore) Expire(now time.Time) (int, error) {
	nowMs := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	removed := 0
	for {
		mm, ok := s.expiring.Min()
		if !ok || !mm.expired(nowMs) {
			break
		}
		s.removeLocked(mm)
		removed++
	}
	var stale []*Message
	s.retained.Ascend(func(m *Message) bool {
		if m.expired(nowMs) {
			stale = append(stale, m)
		}
		return true
	})
	for _, m := range stale {
		s.retained.Delete(m)
	}
	removed += len(stale)
	for k, e := range s.kv {
		if e.exp != 0 && e.exp <= nowMs {
			delete(s.kv, k)
			removed++
		}
	}
	return removed, nil
}

func (s *memStore) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Stats{}
	}
	return Stats{
		Messages: int64(s.all.Len()),
		Bytes:    s.bytes,
		Retained: int64(s.retained.Len()),
		Queued:   s.queued,
		Keys:     int64(len(s.kv)),
	}
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.all, s.expiring, s.retained = nil, nil, nil
	s.levels, s.topics, s.kv, s.queues = nil, nil, nil, nil
	return nil
}
