package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Key layout of the disk provider (all integers big-endian, ID = ID.Bytes,
// NUL separates variable-length parts, which is safe because topics, client
// ids and filters never contain U+0000 [MQTT-1.5.3-2]):
//
//	'm' level NUL ID      -> message   history, grouped by first topic level
//	'i' ID                -> ref       global history index, by ID (time)
//	't' topic NUL ID      -> ref       per-topic index (MaxPerTopic eviction)
//	'x' expiresMs(8) ID   -> ref       expiry index (Expire sweeps a prefix)
//	'r' topic             -> message   retained message of topic
//	'k' key               -> kv        KV namespace
//	'y' expiresMs(8) key  -> (empty)   KV expiry index
//	'q' client NUL seq(8) -> message   persistent session queue, in arrival order
//
// Every history index ends its keys with the ID, so the ID range from
// From/Until/AfterID is a key range, walked forward or (Newest) backward and
// left at Limit. A filter without wildcards walks 't' topic NUL and reads one
// record per result: last=1 costs one seek and one read however much is
// stored. A filter with a literal first level ("sensors/+/t") walks
// 'm' level NUL, reading records directly; a wildcard first level walks the
// global 'i' index, whose refs carry topic and expiry so only matching
// records are read.
const (
	prefixMessage  = 'm'
	prefixIndex    = 'i'
	prefixTopic    = 't'
	prefixExpiry   = 'x'
	prefixRetained = 'r'
	prefixKV       = 'k'
	prefixKVExpiry = 'y'
	prefixQueue    = 'q'
)

// markerName is the file that says "this directory is a pubsub store of
// format markerVersion". It is written before pebble creates anything, so a
// directory without it and with other files is never ours.
const (
	markerName    = "PUBSUB-STORE"
	markerMagic   = "pubsub-store"
	markerVersion = 1
)

// blockCacheBytes is pebble's block cache. Its default (8 MiB) holds too few
// index blocks for a million-message history: last=N queries then spend
// their time decompressing blocks again.
const blockCacheBytes = 32 << 20

// maxDamagedKeys bounds the set of damaged keys remembered for log-once; past
// it, damage is still counted and skipped but may be logged again.
const maxDamagedKeys = 1 << 16

// diskQueue is the in-memory bookkeeping of one client's session queue.
type diskQueue struct {
	count int
	next  uint64 // sequence of the next entry
}

type diskStore struct {
	opts      Options
	db        *pebble.DB
	writeOpts *pebble.WriteOptions

	// closeMu is held shared by every operation and exclusively by Close,
	// so pebble is never used after it is closed. Lock order: closeMu, mu, damageMu.
	closeMu sync.RWMutex
	closed  bool

	// mu serialises writers and guards the counters below.
	mu          sync.Mutex
	topicCounts map[string]int
	messages    int64
	bytes       int64
	retained    int64
	keys        int64
	queued      int64
	queues      map[string]*diskQueue
	// maxID is the greatest history ID ever stored (deleted or not): an
	// ID above it cannot be a duplicate, which spares Append a lookup for
	// the usual case of increasing IDs.
	maxID ID

	damageMu sync.Mutex
	damaged  map[string]struct{}
	damages  atomic.Int64

	dirty      atomic.Bool // unsynced writes since the last background sync
	stopSyncer chan struct{}
	syncerDone chan struct{}
}

// OpenDisk opens or creates the disk provider in opts.Dir. A directory that is
// not empty and holds no marker, an empty or unreadable marker, or a marker of
// a newer format is refused with ErrIncompatible and left untouched (F8).
func OpenDisk(opts Options) (Store, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrInvalid)
	}
	fs := opts.FS
	if fs == nil {
		fs = privateFS{vfs.Default}
	}
	fresh, err := prepareDir(fs, opts.Dir)
	if err != nil {
		return nil, err
	}
	if !fresh {
		// Look before opening: pebble.Open writes a LOCK file even when it
		// then refuses, and F8 wants the directory left as it was.
		desc, err := pebble.Peek(opts.Dir, fs)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrIncompatible, opts.Dir, err)
		}
		if !desc.Exists {
			return nil, fmt.Errorf("%w: %s has a %s marker but no database; refusing to create one over its files",
				ErrIncompatible, opts.Dir, markerName)
		}
	}
	s := &diskStore{
		opts:        opts,
		writeOpts:   pebble.Sync,
		topicCounts: make(map[string]int),
		queues:      make(map[string]*diskQueue),
		damaged:     make(map[string]struct{}),
	}
	po := &pebble.Options{
		FS:                 fs,
		Logger:             pebbleLogger{opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
		ErrorIfNotExists:   !fresh,
		CacheSize:          blockCacheBytes,
		// pebble's default reaction to a corrupt block is Fatalf (exit);
		// the store instead reports it as damage and lets the read fail.
		EventListener: &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
			s.reportDamage([]byte("file:"+info.Path), info.Details)
		}},
	}
	for i := range po.Levels {
		// Append checks each ID with a point lookup; the bloom filter answers
		// "not there" without reading data blocks.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", opts.Dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", opts.Dir, err)
	}
	if opts.Sync > 0 {
		s.writeOpts = pebble.NoSync
		s.stopSyncer = make(chan struct{})
		s.syncerDone = make(chan struct{})
		go s.syncLoop(opts.Sync)
	}
	return s, nil
}

// prepareDir creates dir if needed and checks the marker. fresh reports that
// pebble may create a new database there.
func prepareDir(fs vfs.FS, dir string) (fresh bool, err error) {
	if err := fs.MkdirAll(dir, dirMode); err != nil {
		return false, fmt.Errorf("store: create %s: %w", dir, err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return false, fmt.Errorf("store: list %s: %w", dir, err)
	}
	hasMarker := false
	for _, n := range names {
		hasMarker = hasMarker || n == markerName
	}
	markerPath := fs.PathJoin(dir, markerName)
	switch {
	case !hasMarker && len(names) > 0:
		return false, fmt.Errorf("%w: %s is not empty and is not a pubsub store (no %s); refusing to touch it",
			ErrIncompatible, dir, markerName)
	case !hasMarker:
		if err := writeMarker(fs, dir, markerPath); err != nil {
			return false, err
		}
		return true, nil
	}
	if err := checkMarker(fs, markerPath); err != nil {
		return false, err
	}
	// Only the marker: a crash between writing it and pebble's first sync.
	return len(names) == 1, nil
}

func checkMarker(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	var version int
	if n, _ := fmt.Sscanf(string(b), markerMagic+" %d\n", &version); n != 1 {
		return fmt.Errorf("%w: %s is empty or not a pubsub store marker", ErrIncompatible, path)
	}
	if version != markerVersion {
		return fmt.Errorf("%w: %s has format %d, this build reads %d (written by a newer pubsub?)",
			ErrIncompatible, path, version, markerVersion)
	}
	return nil
}

// writeMarker writes the marker atomically: temp file, fsync, rename, fsync dir.
func writeMarker(fs vfs.FS, dir, path string) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", tmp, err)
	}
	_, werr := fmt.Fprintf(f, "%s %d\n", markerMagic, markerVersion)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("store: write %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: rename %s: %w", tmp, err)
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	serr = d.Sync()
	return errors.Join(serr, d.Close())
}

// load rebuilds the in-memory counters from the indexes. Damaged entries
// are reported and left out of the counts; so is the rest of an index whose
// table block is corrupt, so that the store still opens (F4) and serves
// what it can read.
func (s *diskStore) load() error {
	tolerate := func(prefix byte, err error) error {
		if err != nil && pebble.IsCorruptionError(err) {
			s.reportDamage([]byte{prefix}, err)
			return nil
		}
		return err
	}
	err := s.scan([]byte{prefixIndex}, func(k, v []byte) error {
		r, err := decodeRef(v)
		if err != nil {
			s.reportDamage(k, err)
			return nil
		}
		s.topicCounts[r.topic]++
		s.messages++
		s.bytes += r.size
		if id, err := idSuffix(k); err == nil {
			s.maxID = maxID(s.maxID, id)
		}
		return nil
	})
	if err := tolerate(prefixIndex, err); err != nil {
		return err
	}
	err = s.scan([]byte{prefixRetained}, func([]byte, []byte) error { s.retained++; return nil })
	if err := tolerate(prefixRetained, err); err != nil {
		return err
	}
	err = s.scan([]byte{prefixKV}, func([]byte, []byte) error { s.keys++; return nil })
	if err := tolerate(prefixKV, err); err != nil {
		return err
	}
	err = s.scan([]byte{prefixQueue}, func(k, _ []byte) error {
		client, seq, ok := splitQueueKey(k)
		if !ok {
			s.reportDamage(k, errors.New("malformed queue key"))
			return nil
		}
		q := s.queues[client]
		if q == nil {
			q = &diskQueue{}
			s.queues[client] = q
		}
		q.count++
		q.next = max(q.next, seq+1)
		s.queued++
		return nil
	})
	return tolerate(prefixQueue, err)
}

// scan calls fn for every key with prefix, in order. k and v are only valid
// during the call.
func (s *diskStore) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), v)
		}
		if err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close() // returns the iterator's error, if any
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// reportDamage counts a damaged record and logs it once per key. The key is
// logged (quoted) so an operator can find it; values never are.
func (s *diskStore) reportDamage(key []byte, err error) {
	s.damageMu.Lock()
	defer s.damageMu.Unlock()
	if _, seen := s.damaged[string(key)]; seen {
		return
	}
	if len(s.damaged) < maxDamagedKeys {
		s.damaged[string(key)] = struct{}{}
	}
	s.damages.Add(1)
	s.opts.Logger.Error("store: damaged record skipped", "key", fmt.Sprintf("%q", key), "err", err)
}

func (s *diskStore) syncLoop(every time.Duration) {
	defer close(s.syncerDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopSyncer:
			return
		case <-t.C:
			if s.dirty.Swap(false) {
				if err := s.db.LogData(nil, pebble.Sync); err != nil {
					s.dirty.Store(true)
					s.opts.Logger.Error("store: background sync failed", "err", err)
				}
			}
		}
	}
}

// apply commits b with the configured durability and closes it.
func (s *diskStore) apply(b *pebble.Batch) error {
	defer b.Close()
	if b.Empty() {
		return nil
	}
	if err := s.db.Apply(b, s.writeOpts); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	if s.opts.Sync > 0 {
		s.dirty.Store(true)
	}
	return nil
}

// begin takes closeMu shared for an operation; the caller must call
// closeMu.RUnlock when ok.
func (s *diskStore) begin() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// beginWrite is begin plus the store's write lock, taken in that order;
// endWrite releases both. Every mutating method brackets itself with them.
func (s *diskStore) beginWrite() error {
	if err := s.begin(); err != nil {
		return err
	}
	s.mu.Lock()
	return nil
}

func (s *diskStore) endWrite() {
	s.mu.Unlock()
	s.closeMu.RUnlock()
}

func (s *diskStore) nowMs() int64 { return s.opts.Now().UnixMilli() }

// Key builders. Each appends to dst so callers can reuse a scratch buffer.

func messageKey(dst []byte, level string, id ID) []byte {
	dst = append(dst, prefixMessage)
	dst = append(dst, level...)
	dst = append(dst, 0)
	return appendID(dst, id)
}

func indexKey(dst []byte, id ID) []byte {
	return appendID(append(dst, prefixIndex), id)
}

func topicKey(dst []byte, topic string, id ID) []byte {
	dst = append(dst, prefixTopic)
	dst = append(dst, topic...)
	dst = append(dst, 0)
	return appendID(dst, id)
}

func expiryKey(dst []byte, exp uint64, id ID) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixExpiry), exp)
	return appendID(dst, id)
}

func retainedKey(dst []byte, topic string) []byte {
	return append(append(dst, prefixRetained), topic...)
}

func kvKey(dst []byte, key string) []byte {
	return append(append(dst, prefixKV), key...)
}

func kvExpiryKey(dst []byte, exp uint64, key string) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixKVExpiry), exp)
	return append(dst, key...)
}

func queuePrefix(dst []byte, client string) []byte {
	return append(append(append(dst, prefixQueue), client...), 0)
}

func queueKey(dst []byte, client string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(queuePrefix(dst, client), seq)
}

func splitQueueKey(k []byte) (client string, seq uint64, ok bool) {
	if len(k) < 1+1+8 || k[0] != prefixQueue || k[len(k)-9] != 0 {
		return "", 0, false
	}
	return string(k[1 : len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

func appendID(dst []byte, id ID) []byte {
	var b [IDLen]byte
	id.put(b[:])
	return append(dst, b[:]...)
}

// idSuffix decodes the ID at the end of a history key.
func idSuffix(k []byte) (ID, error) {
	if len(k) < IDLen {
		return ID{}, ErrInvalidID
	}
	return IDFromBytes(k[len(k)-IDLen:])
}

// pendingAppend is one message of an Append after validation and dedup.
type pendingAppend struct {
	msg Message
	ref ref
}

func (s *diskStore) Append(msgs []Message) error {
	kept, err := s.opts.prepareAll(msgs, s.nowMs())
	if err != nil {
		return err
	}
	pending := make([]pendingAppend, len(kept))
	for i, m := range kept {
		pending[i] = pendingAppend{msg: m, ref: ref{size: m.size(), expires: expiresMs(m.Expires), topic: m.Topic}}
	}
	if err := s.beginWrite(); err != nil {
		return err
	}
	defer s.endWrite()

	// Drop IDs already stored or repeated within the batch, so counters
	// stay exact and a retried batch is harmless.
	var key []byte
	seen := make(map[ID]struct{}, len(pending))
	fresh := pending[:0]
	for _, p := range pending {
		if _, dup := seen[p.msg.ID]; dup {
			continue
		}
		seen[p.msg.ID] = struct{}{}
		if s.maxID.Less(p.msg.ID) {
			fresh = append(fresh, p)
			continue
		}
		key = indexKey(key[:0], p.msg.ID)
		found, err := s.exists(key)
		if err != nil {
			return err
		}
		if !found {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) == 0 {
		return nil
	}

	// Work out whether any limit will be crossed; only then is an indexed
	// batch (one that can be read back before commit) worth its cost.
	newCounts := make(map[string]int)
	var addBytes int64
	for _, p := range fresh {
		newCounts[p.msg.Topic]++
		addBytes += p.ref.size
	}
	overTopic := false
	if s.opts.MaxPerTopic > 0 {
		for t, n := range newCounts {
			overTopic = overTopic || s.topicCounts[t]+n > s.opts.MaxPerTopic
		}
	}
	overBytes := s.opts.MaxBytes > 0 && s.bytes+addBytes > s.opts.MaxBytes

	var b *pebble.Batch
	if overTopic || overBytes {
		b = s.db.NewIndexedBatch()
	} else {
		b = s.db.NewBatch()
	}
	var rec, rbuf []byte
	for _, p := range fresh {
		m := &p.msg
		rec = appendMessage(rec[:0], m)
		rbuf = appendRef(rbuf[:0], p.ref)
		if err := errors.Join(
			b.Set(messageKey(key[:0], firstLevel(m.Topic), m.ID), rec, nil),
			b.Set(indexKey(key[:0], m.ID), rbuf, nil),
			b.Set(topicKey(key[:0], m.Topic, m.ID), rbuf, nil),
		); err != nil {
			_ = b.Close()
			return err
		}
		if p.ref.expires != 0 {
			if err := b.Set(expiryKey(key[:0], p.ref.expires, m.ID), rbuf, nil); err != nil {
				_ = b.Close()
				return err
			}
		}
	}
	d := counterDelta{topics: newCounts, messages: int64(len(fresh)), bytes: addBytes}
	if overTopic || overBytes {
		if err := s.evict(b, &d, overTopic, overBytes); err != nil {
			_ = b.Close()
			return err
		}
	}
	if err := s.apply(b); err != nil {
		return err
	}
	s.applyDelta(d)
	for _, p := range fresh {
		s.maxID = maxID(s.maxID, p.msg.ID)
	}
	return nil
}

// exists reports whether key is stored.
func (s *diskStore) exists(key []byte) (bool, error) {
	_, closer, err := s.db.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: read: %w", err)
	}
	return true, closer.Close()
}

// counterDelta collects counter changes of a batch, applied only after the
// batch commits so a failed write leaves the counters true.
type counterDelta struct {
	topics   map[string]int
	messages int64
	bytes    int64
}

func (d *counterDelta) remove(r ref) {
	d.topics[r.topic]--
	d.messages--
	d.bytes -= r.size
}

// applyDelta folds d into the counters. Caller holds mu.
func (s *diskStore) applyDelta(d counterDelta) {
	for t, n := range d.topics {
		if c := s.topicCounts[t] + n; c > 0 {
			s.topicCounts[t] = c
		} else {
			delete(s.topicCounts, t)
		}
	}
	s.messages += d.messages
	s.bytes += d.bytes
}

// evict adds to the indexed batch b the deletions that bring the topics in
// d back under MaxPerTopic and the whole history under MaxBytes, oldest
// first. Reading through b sees the batch's own inserts, so a message that
// arrives older than what is stored is itself evictable. Caller holds mu.
func (s *diskStore) evict(b *pebble.Batch, d *counterDelta, overTopic, overBytes bool) error {
	if overTopic {
		for topic := range d.topics {
			excess := s.topicCounts[topic] + d.topics[topic] - s.opts.MaxPerTopic
			if excess <= 0 {
				continue
			}
			prefix := append(append([]byte{prefixTopic}, topic...), 0)
			if err := s.evictScan(b, prefix, d, func() bool { excess--; return excess >= 0 }); err != nil {
				return err
			}
		}
	}
	if overBytes {
		return s.evictScan(b, []byte{prefixIndex}, d, func() bool { return s.bytes+d.bytes > s.opts.MaxBytes })
	}
	return nil
}

// evictScan deletes history entries found under prefix (an index whose keys
// end in an ID and whose values are refs) in key order while more() says so.
func (s *diskStore) evictScan(b *pebble.Batch, prefix []byte, d *counterDelta, more func() bool) error {
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok && more(); ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(err, it.Close())
		}
		id, err := idSuffix(it.Key())
		if err != nil {
			s.reportDamage(it.Key(), err)
			continue
		}
		r, err := decodeRef(v)
		if err != nil {
			// Without the ref the other keys cannot be found; drop this
			// index entry so eviction does not stall on it.
			s.reportDamage(it.Key(), err)
			if err := b.Delete(it.Key(), nil); err != nil {
				return errors.Join(err, it.Close())
			}
			continue
		}
		if err := deleteHistory(b, id, r); err != nil {
			return errors.Join(err, it.Close())
		}
		d.remove(r)
	}
	return it.Close()
}

// deleteHistory adds the deletion of every key of one history message to b.
func deleteHistory(b *pebble.Batch, id ID, r ref) error {
	var key []byte
	err := errors.Join(
		b.Delete(messageKey(key[:0], firstLevel(r.topic), id), nil),
		b.Delete(indexKey(key[:0], id), nil),
		b.Delete(topicKey(key[:0], r.topic, id), nil),
	)
	if r.expires != 0 {
		err = errors.Join(err, b.Delete(expiryKey(key[:0], r.expires, id), nil))
	}
	return err
}

func (s *diskStore) Query(ctx context.Context, q Query) ([]Message, error) {
	if err := validateQuery(&q); err != nil {
		return nil, err
	}
	lo, hi, ok := q.bounds()
	if !ok {
		return nil, nil
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	nowMs := s.nowMs()
	// Pick the narrowest index: the topic's own keys for a filter without
	// wildcards, the first level's records for a literal first level, else
	// the global index.
	var prefix []byte
	literal := false
	if !hasWildcard(q.Filter) {
		prefix = append(append([]byte{prefixTopic}, q.Filter...), 0)
	} else if level, ok := literalFirstLevel(q.Filter); ok {
		prefix = append(append([]byte{prefixMessage}, level...), 0)
		literal = true
	} else {
		prefix = []byte{prefixIndex}
	}
	lower := appendID(bytes.Clone(prefix), lo)
	upper := append(appendID(bytes.Clone(prefix), hi), 0) // just past hi
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var (
		out     []Message
		scanned int
	)
	step, start := it.Next, it.First
	if q.Newest {
		step, start = it.Prev, it.Last
	}
	for ok := start(); ok; ok = step() {
		if scanned++; scanned%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, errors.Join(err, it.Close())
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		m, found, err := s.readEntry(it.Key(), v, literal, q.Filter, nowMs)
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		if !found {
			continue
		}
		out = append(out, m)
		if q.Limit > 0 && len(out) >= q.Limit {
			break
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	if q.Newest {
		reverse(out)
	}
	return out, nil
}

// readEntry turns one index or record entry of a history scan into the
// message to serve. found is false for entries that must not be served:
// damaged, expired, not matching, or evicted since the index was read.
func (s *diskStore) readEntry(k, v []byte, isRecord bool, filter string, nowMs int64) (m Message, found bool, err error) {
	id, err := idSuffix(k)
	if err != nil {
		s.reportDamage(k, err)
		return Message{}, false, nil
	}
	if isRecord {
		if m, found = s.decodeHistory(k, v, id); !found {
			return Message{}, false, nil
		}
	} else {
		r, err := decodeRef(v)
		if err != nil {
			s.reportDamage(k, err)
			return Message{}, false, nil
		}
		// The ref carries topic and expiry, so non-matching and expired
		// messages are skipped without reading them.
		if !match(filter, r.topic) || (r.expires != 0 && int64(r.expires) <= nowMs) {
			return Message{}, false, nil
		}
		if m, found, err = s.getHistory(messageKey(nil, firstLevel(r.topic), id), id); err != nil || !found {
			return Message{}, false, err
		}
	}
	if m.expired(nowMs) || !match(filter, m.Topic) {
		return Message{}, false, nil
	}
	return m, true, nil
}

func reverse(ms []Message) {
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
}

// decodeHistory decodes a history record and checks it is the one its key
// names; a record that fails either is reported and not served.
func (s *diskStore) decodeHistory(key, v []byte, id ID) (Message, bool) {
	m, err := decodeMessage(v)
	if err == nil && m.ID != id {
		err = fmt.Errorf("%w: record id %s under key id %s", errDamaged, m.ID, id)
	}
	if err != nil {
		s.reportDamage(key, err)
		return Message{}, false
	}
	return m, true
}

// getHistory reads one history record by key; ok is false if it is missing
// (evicted between index and read) or damaged.
func (s *diskStore) getHistory(key []byte, id ID) (Message, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("store: read: %w", err)
	}
	m, ok := s.decodeHistory(key, v, id)
	return m, ok, closer.Close()
}

func (s *diskStore) SetRetained(m Message) error {
	if err := validateMessage(&m); err != nil {
		return err
	}
	if err := s.beginWrite(); err != nil {
		return err
	}
	defer s.endWrite()
	key := retainedKey(nil, m.Topic)
	existed, err := s.exists(key)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	if len(m.Payload) == 0 {
		if !existed {
			_ = b.Close()
			return nil
		}
		if err := b.Delete(key, nil); err != nil { // [MQTT-3.3.1-10]
			_ = b.Close()
			return err
		}
		if err := s.apply(b); err != nil {
			return err
		}
		s.retained--
		return nil
	}
	if !existed && s.opts.MaxRetained > 0 && s.retained >= int64(s.opts.MaxRetained) {
		_ = b.Close()
		return fmt.Errorf("%w: %d topics", ErrRetainedFull, s.retained)
	}
	if err := b.Set(key, appendMessage(nil, &m), nil); err != nil { // [MQTT-3.3.1-5]
		_ = b.Close()
		return err
	}
	if err := s.apply(b); err != nil {
		return err
	}
	if !existed {
		s.retained++
	}
	return nil
}

func (s *diskStore) Retained(filter string) ([]Message, error) {
	if err := validateFilter(filter); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	nowMs := s.nowMs()
	prefix := []byte{prefixRetained}
	if level, ok := literalFirstLevel(filter); ok {
		prefix = append(prefix, level...)
	}
	var out []Message
	err := s.scan(prefix, func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err == nil && m.Topic != string(k[1:]) {
			err = fmt.Errorf("%w: retained record of %q under another key", errDamaged, m.Topic)
		}
		if err != nil {
			s.reportDamage(k, err)
			return nil
		}
		if !m.expired(nowMs) && match(filter, m.Topic) {
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	return out, nil
}

func (s *diskStore) KVGet(key string) ([]byte, bool, error) {
	if err := validateKey(key); err != nil {
		return nil, false, err
	}
	if err := s.begin(); err != nil {
		return nil, false, err
	}
	defer s.closeMu.RUnlock()
	value, exp, ok, err := s.kvRead(kvKey(nil, key))
	if err != nil || !ok || (exp != 0 && int64(exp) <= s.nowMs()) {
		return nil, false, err
	}
	return value, true, nil
}

// kvRead reads a KV entry; damaged entries are reported and read as absent.
func (s *diskStore) kvRead(k []byte) (value []byte, exp uint64, ok bool, err error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("store: read: %w", err)
	}
	defer closer.Close()
	value, exp, derr := decodeKV(v)
	if derr != nil {
		s.reportDamage(k, derr)
		return nil, 0, false, nil
	}
	return value, exp, true, nil
}

func (s *diskStore) KVSet(key string, value []byte, ttl time.Duration) error {
	if err := validateKey(key); err != nil {
		return err
	}
	if len(value) > MaxPayloadLen {
		return fmt.Errorf("%w: value of %d bytes", ErrInvalid, len(value))
	}
	var exp uint64
	if ttl > 0 {
		exp = uint64(max(s.opts.Now().Add(ttl).UnixMilli(), 1))
	}
	if err := s.beginWrite(); err != nil {
		return err
	}
	defer s.endWrite()
	k := kvKey(nil, key)
	existed, oldExp, err := s.kvPresence(k)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	err = b.Set(k, appendKV(nil, value, exp), nil)
	if oldExp != 0 && oldExp != exp {
		err = errors.Join(err, b.Delete(kvExpiryKey(nil, oldExp, key), nil))
	}
	if exp != 0 {
		err = errors.Join(err, b.Set(kvExpiryKey(nil, exp, key), nil, nil))
	}
	if err != nil {
		_ = b.Close()
		return err
	}
	if err := s.apply(b); err != nil {
		return err
	}
	if !existed {
		s.keys++
	}
	return nil
}

// kvPresence reports whether a KV key is stored (damaged or not) and its
// expiry if readable.
func (s *diskStore) kvPresence(k []byte) (existed bool, exp uint64, err error) {
	existed, err = s.exists(k)
	if err != nil || !existed {
		return existed, 0, err
	}
	_, exp, _, err = s.kvRead(k)
	return true, exp, err
}

func (s *diskStore) KVDelete(key string) (bool, error) {
	if err := validateKey(key); err != nil {
		return false, err
	}
	if err := s.beginWrite(); err != nil {
		return false, err
	}
	defer s.endWrite()
	k := kvKey(nil, key)
	existed, exp, err := s.kvPresence(k)
	if err != nil || !existed {
		return false, err
	}
	b := s.db.NewBatch()
	err = b.Delete(k, nil)
	if exp != 0 {
		err = errors.Join(err, b.Delete(kvExpiryKey(nil, exp, key), nil))
	}
	if err != nil {
		_ = b.Close()
		return false, err
	}
	if err := s.apply(b); err != nil {
		return false, err
	}
	s.keys--
	return exp == 0 || int64(exp) > s.nowMs(), nil
}

func (s *diskStore) QueueAppend(client string, m Message, limit int) (int, error) {
	if err := validateClient(client); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("%w: queue limit %d", ErrInvalid, limit)
	}
	if err := validateMessage(&m); err != nil {
		return 0, err
	}
	if err := s.beginWrite(); err != nil {
		return 0, err
	}
	defer s.endWrite()
	q := s.queues[client]
	if q == nil {
		q = &diskQueue{}
	}
	b := s.db.NewBatch()
	dropped := 0
	if excess := q.count + 1 - limit; excess > 0 {
		// Drop-oldest (H6): the queue keeps the newest messages.
		err := s.scan(queuePrefix(nil, client), func(k, _ []byte) error {
			if dropped == excess {
				return errStopScan
			}
			dropped++
			return b.Delete(k, nil)
		})
		if err != nil && !errors.Is(err, errStopScan) {
			_ = b.Close()
			return 0, err
		}
	}
	if err := b.Set(queueKey(nil, client, q.next), appendMessage(nil, &m), nil); err != nil {
		_ = b.Close()
		return 0, err
	}
	if err := s.apply(b); err != nil {
		return 0, err
	}
	q.next++
	q.count += 1 - dropped
	s.queued += int64(1 - dropped)
	s.queues[client] = q
	return dropped, nil
}

// errStopScan ends a scan early without being an error to the caller.
var errStopScan = errors.New("stop scan")

func (s *diskStore) QueuePeek(client string, n int) ([]Message, error) {
	if err := validateClient(client); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	s.mu.Lock() // expired entries are removed here
	defer s.mu.Unlock()
	nowMs := s.nowMs()
	var (
		out   []Message
		stale [][]byte
	)
	err := s.scan(queuePrefix(nil, client), func(k, v []byte) error {
		if n > 0 && len(out) == n {
			return errStopScan
		}
		m, err := decodeMessage(v)
		if err != nil {
			s.reportDamage(k, err)
			return nil
		}
		if m.expired(nowMs) {
			stale = append(stale, bytes.Clone(k))
			return nil
		}
		out = append(out, m)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	if len(stale) > 0 {
		if err := s.queueDelete(client, stale); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queueDelete removes the given keys of client's queue. Caller holds mu.
func (s *diskStore) queueDelete(client string, keys [][]byte) error {
	b := s.db.NewBatch()
	for _, k := range keys {
		if err := b.Delete(k, nil); err != nil {
			_ = b.Close()
			return err
		}
	}
	if err := s.apply(b); err != nil {
		return err
	}
	if q := s.queues[client]; q != nil {
		// An empty queue may restart its sequence at 0: no entry is left
		// to be ordered against.
		if q.count -= len(keys); q.count <= 0 {
			delete(s.queues, client)
		}
	}
	s.queued -= int64(len(keys))
	return nil
}

func (s *diskStore) QueueAck(client string, id ID) error {
	if err := validateClient(client); err != nil {
		return err
	}
	if err := s.beginWrite(); err != nil {
		return err
	}
	defer s.endWrite()
	var found []byte
	err := s.scan(queuePrefix(nil, client), func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			s.reportDamage(k, err)
			return nil
		}
		if m.ID == id {
			found = bytes.Clone(k)
			return errStopScan
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("store: read: %w", err)
	}
	if found == nil {
		return nil
	}
	return s.queueDelete(client, [][]byte{found})
}

func (s *diskStore) QueueDrop(client string) error {
	if err := validateClient(client); err != nil {
		return err
	}
	if err := s.beginWrite(); err != nil {
		return err
	}
	defer s.endWrite()
	q := s.queues[client]
	if q == nil {
		return nil
	}
	prefix := queuePrefix(nil, client)
	b := s.db.NewBatch()
	if err := b.DeleteRange(prefix, prefixEnd(prefix), nil); err != nil {
		_ = b.Close()
		return err
	}
	if err := s.apply(b); err != nil {
		return err
	}
	s.queued -= int64(q.count)
	delete(s.queues, client)
	return nil
}

func (s *diskStore) Expire(now time.Time) (int, error) {
	if err := s.beginWrite(); err != nil {
		return 0, err
	}
	defer s.endWrite()
	nowMs := uint64(max(now.UnixMilli(), 0))
	b := s.db.NewBatch()
	d := counterDelta{topics: make(map[string]int)}
	removed := 0

	// History: the expiry index is ordered by expiry, so the scan stops at
	// the first entry still alive.
	lo := []byte{prefixExpiry}
	hi := binary.BigEndian.AppendUint64([]byte{prefixExpiry}, nowMs+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		_ = b.Close()
		return 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = b.Close()
			return 0, errors.Join(err, it.Close())
		}
		id, iderr := idSuffix(it.Key())
		r, rerr := decodeRef(v)
		if err := errors.Join(iderr, rerr); err != nil {
			s.reportDamage(it.Key(), err)
			err = b.Delete(it.Key(), nil)
		} else {
			err = deleteHistory(b, id, r)
			d.remove(r)
			removed++
		}
		if err != nil {
			_ = b.Close()
			return 0, errors.Join(err, it.Close())
		}
	}
	if err := it.Close(); err != nil {
		_ = b.Close()
		return 0, err
	}

	// KV entries, by their expiry index.
	var expiredKeys int64
	err = s.scanRange([]byte{prefixKVExpiry}, binary.BigEndian.AppendUint64([]byte{prefixKVExpiry}, nowMs+1),
		func(k, _ []byte) error {
			if len(k) < 1+8 {
				return b.Delete(k, nil)
			}
			expiredKeys++
			return errors.Join(b.Delete(k, nil), b.Delete(kvKey(nil, string(k[9:])), nil))
		})
	if err != nil {
		_ = b.Close()
		return 0, err
	}

	// Retained messages rarely expire and have no expiry index: a full scan.
	var expiredRetained int64
	err = s.scan([]byte{prefixRetained}, func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil || !m.expired(int64(nowMs)) {
			return nil // damage is reported when the record is read
		}
		expiredRetained++
		return b.Delete(k, nil)
	})
	if err != nil {
		_ = b.Close()
		return 0, err
	}
	if err := s.apply(b); err != nil {
		return 0, err
	}
	s.applyDelta(d)
	s.keys -= expiredKeys
	s.retained -= expiredRetained
	return removed + int(expiredKeys+expiredRetained), nil
}

// scanRange is scan over [lo, hi).
func (s *diskStore) scanRange(lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return it.Close()
}

func (s *diskStore) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Messages: s.messages,
		Bytes:    s.bytes,
		Retained: s.retained,
		Queued:   s.queued,
		Keys:     s.keys,
		Damaged:  s.damages.Load(),
	}
}

func (s *diskStore) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	var syncErr error
	if s.stopSyncer != nil {
		close(s.stopSyncer)
		<-s.syncerDone
		// Whatever the last interval wrote is made durable on a clean close.
		syncErr = s.db.LogData(nil, pebble.Sync)
	}
	return errors.Join(syncErr, s.db.Close())
}

// Compile-time checks that both providers implement Store.
var (
	_ Store = (*diskStore)(nil)
	_ Store = (*memStore)(nil)
)
