package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors returned by every provider. Wrapped errors carry the detail; test
// with errors.Is.
var (
	ErrClosed        = errors.New("store: closed")
	ErrInvalidTopic  = errors.New("store: invalid topic")
	ErrInvalidFilter = errors.New("store: invalid topic filter")
	ErrInvalid       = errors.New("store: invalid argument")
	ErrRetainedFull  = errors.New("store: retained message limit reached")
	// ErrIncompatible means the data directory holds something this build must
	// not open: foreign files, an empty or damaged marker, or a newer format.
	ErrIncompatible = errors.New("store: incompatible data directory")
)

// Limits on what a caller may store; larger inputs are rejected with
// ErrInvalid rather than truncated.
const (
	MaxTopicLen    = 65535   // [MQTT-1.5.3] a UTF-8 string is at most 65,535 bytes
	MaxClientLen   = 65535   // client ids are MQTT UTF-8 strings too
	MaxKeyLen      = 1024    // KV keys (Eventhub does not bound them; we do)
	MaxPayloadLen  = 1 << 28 // 256 MiB, the MQTT remaining-length maximum
	MaxPublisherID = 65535
)

// DefaultSyncInterval is the interval the configuration layer should use when
// the operator picks periodic syncing without giving a value.
const DefaultSyncInterval = 100 * time.Millisecond

// recordOverhead is added to every message's byte size so that MaxBytes also
// bounds many tiny messages (index keys and bookkeeping are not free).
const recordOverhead = 64

// Message is one stored publish. Payload returned by a provider is read-only:
// the memory provider shares it between readers.
type Message struct {
	ID        ID
	Topic     string // concrete topic, no wildcards
	Payload   []byte
	QoS       byte
	Retain    bool
	Publisher string    // client id or Eventhub origin; may be empty
	Expires   time.Time // zero = never
}

// expired reports whether m must no longer be served at nowMs.
func (m *Message) expired(nowMs int64) bool {
	return !m.Expires.IsZero() && m.Expires.UnixMilli() <= nowMs
}

// size is what m counts against Options.MaxBytes.
func (m *Message) size() int64 {
	return int64(len(m.Topic)+len(m.Payload)+len(m.Publisher)) + recordOverhead
}

// Query selects history. Every bound is optional; results are oldest first.
type Query struct {
	Filter  string    // MQTT filter with '+' and '#'; required
	From    time.Time // inclusive, zero = unbounded
	Until   time.Time // inclusive, zero = unbounded
	AfterID ID        // exclusive lower bound for paging; zero = none
	Limit   int       // at most this many; 0 = no limit
	Newest  bool      // the newest Limit matches (Emitter last=N), still returned oldest first
}

// Stats are a provider's gauges. Damaged counts distinct damaged records seen.
type Stats struct {
	Messages int64 // history messages stored (expired ones count until swept)
	Bytes    int64 // history bytes as counted against MaxBytes
	Retained int64
	Queued   int64 // session-queue entries, all clients
	Keys     int64 // KV entries
	Damaged  int64
}

// Store is the message store. All methods are safe for concurrent use.
type Store interface {
	// Append stores msgs atomically: all or none. IDs must be non-zero; an ID
	// already stored is skipped, so a retried batch is harmless. Messages
	// already expired are not stored. The batch is durable when Append
	// returns if Options.Sync is 0.
	Append(msgs []Message) error
	// Query returns stored, unexpired messages matching q, oldest first.
	Query(ctx context.Context, q Query) ([]Message, error)

	// SetRetained replaces the retained message of m.Topic; an empty payload
	// deletes it [MQTT-3.3.1-10].
	SetRetained(m Message) error
	// Retained returns the unexpired retained messages whose topic matches
	// filter, ordered by topic.
	Retained(filter string) ([]Message, error)

	// KVGet returns a copy of key's value; ok is false if absent or expired.
	KVGet(key string) (value []byte, ok bool, err error)
	// KVSet stores value under key; ttl <= 0 means no expiry.
	KVSet(key string, value []byte, ttl time.Duration) error
	// KVDelete removes key and reports whether it existed (Eventhub's del result).
	KVDelete(key string) (existed bool, err error)

	// QueueAppend adds m to client's persistent session queue. When the
	// queue already holds max entries the oldest are dropped to make room and
	// their number returned (the H6 drop-oldest policy). max must be > 0.
	QueueAppend(client string, m Message, max int) (dropped int, err error)
	// QueuePeek returns up to n (n <= 0: all) queued, unexpired messages,
	// oldest first, without removing them. Expired entries are removed.
	QueuePeek(client string, n int) ([]Message, error)
	// QueueAck removes the oldest queued entry with id; unknown ids are ignored.
	QueueAck(client string, id ID) error
	// QueueDrop removes client's whole queue (clean session, session expiry).
	QueueDrop(client string) error

	// Expire removes history messages, retained messages and KV entries
	// that expired at or before now and returns how many it removed. Reads
	// never serve expired entries whether or not Expire ran.
	Expire(now time.Time) (removed int, err error)
	Stats() Stats
	// Close releases the store; later calls return ErrClosed.
	Close() error
}

// Options configure a provider. The zero value is valid for OpenMemory.
type Options struct {
	// Dir is the disk provider's data directory (created 0700 if missing).
	Dir string
	// Sync is the disk provider's durability policy: 0 fsyncs every write
	// before it returns; > 0 fsyncs in the background every Sync, so a
	// crash loses at most the writes of the last interval.
	Sync time.Duration
	// MaxBytes bounds history (Message.size summed); oldest evicted first.
	// 0 = unbounded for disk, DefaultMemoryBytes for memory.
	MaxBytes int64
	// MaxPerTopic caps history messages per topic; oldest evicted first. 0 = no cap.
	MaxPerTopic int
	// MaxTTL caps how long a history message is kept; messages without an
	// expiry or with a later one get now+MaxTTL. 0 = no cap.
	MaxTTL time.Duration
	// MaxRetained caps distinct retained topics (H8); replacing an existing
	// one is always allowed. 0 = no cap.
	MaxRetained int
	// Now is the clock; tests inject one. Defaults to time.Now.
	Now func() time.Time
	// Logger receives damage reports and pebble's messages. Defaults to a
	// logger that discards.
	Logger *slog.Logger
	// FS replaces the real file system (tests: pebble's vfs.NewCrashableMem).
	FS vfs.FS
}

// DefaultMemoryBytes bounds the memory provider when Options.MaxBytes is 0.
const DefaultMemoryBytes = 256 << 20

func (o *Options) normalize() error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case o.Sync < 0:
		return fmt.Errorf("%w: negative Sync %v", ErrInvalid, o.Sync)
	case o.MaxBytes < 0:
		return fmt.Errorf("%w: negative MaxBytes %d", ErrInvalid, o.MaxBytes)
	case o.MaxPerTopic < 0:
		return fmt.Errorf("%w: negative MaxPerTopic %d", ErrInvalid, o.MaxPerTopic)
	case o.MaxTTL < 0:
		return fmt.Errorf("%w: negative MaxTTL %v", ErrInvalid, o.MaxTTL)
	case o.MaxRetained < 0:
		return fmt.Errorf("%w: negative MaxRetained %d", ErrInvalid, o.MaxRetained)
	}
	return nil
}

// prepare validates m for storing in history and applies MaxTTL. It reports
// keep=false for a message that is already expired.
// prepareAll runs prepare over a batch, returning the messages to keep: a
// batch is validated whole before either provider writes any of it.
func (o *Options) prepareAll(msgs []Message, nowMs int64) ([]Message, error) {
	kept := make([]Message, 0, len(msgs))
	for i := range msgs {
		m := msgs[i]
		keep, err := o.prepare(&m, nowMs)
		if err != nil {
			return nil, err
		}
		if keep {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

func (o *Options) prepare(m *Message, nowMs int64) (keep bool, err error) {
	if err := validateMessage(m); err != nil {
		return false, err
	}
	if o.MaxTTL > 0 {
		limit := time.UnixMilli(nowMs).Add(o.MaxTTL)
		if m.Expires.IsZero() || m.Expires.After(limit) {
			m.Expires = limit
		}
	}
	return !m.expired(nowMs), nil
}

// validateMessage checks m and truncates Expires to the millisecond, the
// precision the disk provider keeps, so both providers return equal values.
func validateMessage(m *Message) error {
	if !m.Expires.IsZero() {
		m.Expires = time.UnixMilli(m.Expires.UnixMilli())
	}
	if m.ID.IsZero() {
		return fmt.Errorf("%w: zero message id", ErrInvalid)
	}
	if err := validateTopic(m.Topic); err != nil {
		return err
	}
	switch {
	case m.QoS > 2:
		return fmt.Errorf("%w: QoS %d", ErrInvalid, m.QoS) // [MQTT-3.3.1-4]
	case len(m.Payload) > MaxPayloadLen:
		return fmt.Errorf("%w: payload of %d bytes", ErrInvalid, len(m.Payload))
	case len(m.Publisher) > MaxPublisherID:
		return fmt.Errorf("%w: publisher id of %d bytes", ErrInvalid, len(m.Publisher))
	}
	return nil
}

// validateTopic accepts a concrete MQTT topic: 1..65535 bytes of UTF-8
// without U+0000 [MQTT-4.7.3-1] [MQTT-1.5.3-2] and without wildcards
// [MQTT-3.3.2-2]. The store relies on the absence of NUL: it separates key
// components.
func validateTopic(t string) error {
	if t == "" || len(t) > MaxTopicLen {
		return fmt.Errorf("%w: length %d", ErrInvalidTopic, len(t))
	}
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case 0, '+', '#':
			return fmt.Errorf("%w: %q contains %q", ErrInvalidTopic, t, t[i])
		}
	}
	if !utf8.ValidString(t) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidTopic)
	}
	return nil
}

func validateClient(c string) error {
	if c == "" || len(c) > MaxClientLen || !utf8.ValidString(c) || containsNUL(c) {
		return fmt.Errorf("%w: client id %q", ErrInvalid, c)
	}
	return nil
}

func validateKey(k string) error {
	if k == "" || len(k) > MaxKeyLen {
		return fmt.Errorf("%w: key of %d bytes", ErrInvalid, len(k))
	}
	return nil
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// bounds turns a Query into an inclusive [lo, hi] ID range.
// ok is false when the range is empty.
func (q *Query) bounds() (lo, hi ID, ok bool) {
	if q.Limit < 0 {
		return ID{}, ID{}, false
	}
	lo = q.AfterID.next()
	if !q.From.IsZero() {
		lo = maxID(lo, ID{ms: max(q.From.UnixMilli(), 0)})
	}
	hi = ID{ms: 1<<63 - 1, node: 1<<16 - 1, seq: 1<<32 - 1}
	if !q.Until.IsZero() {
		u := q.Until.UnixMilli()
		if u < 0 {
			return ID{}, ID{}, false
		}
		hi = ID{ms: u, node: 1<<16 - 1, seq: 1<<32 - 1}
	}
	return lo, hi, !hi.Less(lo)
}

func maxID(a, b ID) ID {
	if a.Less(b) {
		return b
	}
	return a
}

func validateQuery(q *Query) error {
	if q.Limit < 0 {
		return fmt.Errorf("%w: negative limit %d", ErrInvalid, q.Limit)
	}
	return validateFilter(q.Filter)
}
