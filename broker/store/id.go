package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// IDLen is the length of ID.Bytes: 8 bytes of milliseconds, 2 of node, 4 of
// per-node sequence, all big-endian so that byte order equals ID order.
const IDLen = 14

// maxSeqField is the largest "<seq>" value of the string form: the node id
// fills bits 32..47 and the per-node sequence bits 0..31, so the number always
// fits in a JavaScript number (2^53) — Eventhub clients parse and resend it.
const maxSeqField = 1<<48 - 1

// ErrInvalidID is returned by ParseID and IDFromBytes for malformed input.
var ErrInvalidID = errors.New("store: invalid message id")

// ID identifies a stored message across a cluster. IDs order by time first
// (milliseconds since the Unix epoch), then by node, then by the node's own
// sequence, so the order is total and, for one node, follows issue order.
// The zero ID sorts before every generated ID and means "none".
type ID struct {
	ms   int64 // milliseconds since the Unix epoch, >= 0
	node uint16
	seq  uint32
}

// MakeID builds an ID from its parts. A negative ms is clamped to 0.
func MakeID(ms int64, node uint16, seq uint32) ID {
	return ID{ms: max(ms, 0), node: node, seq: seq}
}

// Millis is the ID's time in milliseconds since the Unix epoch.
func (id ID) Millis() int64 { return id.ms }

// Node is the cluster node component that makes IDs from different nodes differ.
func (id ID) Node() uint16 { return id.node }

// Seq is the per-node, per-millisecond sequence number.
func (id ID) Seq() uint32 { return id.seq }

// Time is the ID's time with millisecond precision.
func (id ID) Time() time.Time { return time.UnixMilli(id.ms) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Less reports whether id sorts before o.
func (id ID) Less(o ID) bool { return id.Compare(o) < 0 }

// Compare returns -1, 0 or +1 as id sorts before, equal to or after o.
func (id ID) Compare(o ID) int {
	switch {
	case id.ms != o.ms:
		return cmpInt(id.ms, o.ms)
	case id.node != o.node:
		return cmpInt(id.node, o.node)
	default:
		return cmpInt(id.seq, o.seq)
	}
}

func cmpInt[T int64 | uint16 | uint32 | int](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String is the Eventhub JSON form "<epoch-ms>-<seq>", where seq is
// node<<32 | per-node sequence. On a single node with node id 0 this is exactly
// Eventhub's "sequence from 0 within the millisecond"; with several nodes the
// node id keeps ids minted in the same millisecond distinct.
func (id ID) String() string {
	var buf [40]byte
	return string(id.AppendText(buf[:0]))
}

// AppendText appends the String form to b without allocating a string.
func (id ID) AppendText(b []byte) []byte {
	b = strconv.AppendInt(b, id.ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, uint64(id.node)<<32|uint64(id.seq), 10)
}

// MarshalText implements encoding.TextMarshaler (JSON strings).
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the String form. It is strict so that every accepted string
// is canonical and round-trips: decimal digits only, no sign, no leading zeros.
func ParseID(s string) (ID, error) {
	dash := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return ID{}, fmt.Errorf("%w: %q has no '-'", ErrInvalidID, s)
	}
	ms, ok := parseCanonicalUint(s[:dash], math.MaxInt64)
	if !ok {
		return ID{}, fmt.Errorf("%w: bad time in %q", ErrInvalidID, s)
	}
	seq, ok := parseCanonicalUint(s[dash+1:], maxSeqField)
	if !ok {
		return ID{}, fmt.Errorf("%w: bad sequence in %q", ErrInvalidID, s)
	}
	return ID{ms: int64(ms), node: uint16(seq >> 32), seq: uint32(seq)}, nil
}

// parseCanonicalUint accepts only [1-9][0-9]* or "0", at most limit.
func parseCanonicalUint(s string, limit uint64) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// Bytes is the 14-byte big-endian binary form whose byte order equals ID order,
// so IDs can be used inside sorted keys.
func (id ID) Bytes() [IDLen]byte {
	var b [IDLen]byte
	id.put(b[:])
	return b
}

// put writes the binary form into b[:IDLen].
func (id ID) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:8], uint64(id.ms))
	binary.BigEndian.PutUint16(b[8:10], id.node)
	binary.BigEndian.PutUint32(b[10:14], id.seq)
}

// IDFromBytes decodes the binary form made by Bytes.
func IDFromBytes(b []byte) (ID, error) {
	if len(b) != IDLen {
		return ID{}, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidID, len(b), IDLen)
	}
	ms := binary.BigEndian.Uint64(b[0:8])
	if ms > math.MaxInt64 {
		return ID{}, fmt.Errorf("%w: time out of range", ErrInvalidID)
	}
	return ID{ms: int64(ms), node: binary.BigEndian.Uint16(b[8:10]), seq: binary.BigEndian.Uint32(b[10:14])}, nil
}

// next is the smallest ID greater than id (used to turn an exclusive AfterID
// into an inclusive lower bound).
func (id ID) next() ID {
	switch {
	case id.seq < math.MaxUint32:
		id.seq++
	case id.node < math.MaxUint16:
		id.node, id.seq = id.node+1, 0
	case id.ms < math.MaxInt64:
		id.ms, id.node, id.seq = id.ms+1, 0, 0
	}
	return id
}

// IDGenerator mints IDs for one node. It is safe for concurrent use.
type IDGenerator struct {
	node uint16
	now  func() time.Time

	mu     sync.Mutex
	lastMs int64  // guarded by mu
	seq    uint32 // guarded by mu
}

// NewIDGenerator returns a generator for node. now defaults to time.Now.
func NewIDGenerator(node uint16, now func() time.Time) *IDGenerator {
	if now == nil {
		now = time.Now
	}
	return &IDGenerator{node: node, now: now, lastMs: -1}
}

// Next returns an ID greater than every ID this generator returned before.
// When the clock steps back the generator stays on its last millisecond and
// keeps counting, so IDs never repeat or go backwards; when 2^32 IDs are
// taken in one millisecond it borrows the next millisecond.
func (g *IDGenerator) Next() ID {
	ms := max(g.now().UnixMilli(), 0)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case ms > g.lastMs:
		g.lastMs, g.seq = ms, 0
	case g.seq == math.MaxUint32:
		g.lastMs, g.seq = g.lastMs+1, 0
	default:
		g.seq++
	}
	return ID{ms: g.lastMs, node: g.node, seq: g.seq}
}

// Advance makes every later Next greater than id, if id was minted by this
// node. A restarted node calls it with the newest ID it finds in its store so
// that a clock that stepped back across the restart cannot reissue an ID.
func (g *IDGenerator) Advance(id ID) {
	if id.node != g.node {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if id.ms > g.lastMs || (id.ms == g.lastMs && id.seq > g.seq) {
		g.lastMs, g.seq = id.ms, id.seq
	}
}
