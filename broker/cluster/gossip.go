package cluster

import (
	"encoding/binary"
	"fmt"

	"github.com/pubsub/pubsub/broker/topic"
)

// Gossip payloads. Every user message memberlist carries for us starts with
// a type byte, so a node can tell the kinds apart and a later release can add
// kinds that older nodes skip (serf's convention):
//
//	interest = 0x01 record                      (a node's whole filter set)
//	digest   = 0x02 node(lp) version(uvarint)   (the set did not fit a packet)
//	state    = 0x03 count(uvarint) record*      (push/pull anti-entropy)
//	record   = node(lp) version(uvarint) count(uvarint) filter(lp)*
//
// Every decoder is bounded (names, filter count and length, total size) and
// validates every filter, so a malformed or hostile payload is rejected
// whole before it touches the routing table (reliability case G10).
const (
	gossipInterest byte = 0x01
	gossipDigest   byte = 0x02
	gossipState    byte = 0x03
)

const (
	// maxGossipMessage caps a NotifyMsg payload. Broadcasts fit a UDP
	// packet (memberlist's 1400-byte buffer), but a stream-delivered user
	// message is unbounded in memberlist, so the delegate checks.
	maxGossipMessage = 64 << 10

	// maxStateBytes caps the push/pull state, ours and the peer's.
	// memberlist refuses push/pull streams above 20 MiB in total.
	maxStateBytes = 16 << 20

	// maxFiltersPerNode caps the distinct filters one node may advertise.
	maxFiltersPerNode = 1 << 20

	// inlineInterestLimit is the largest interest message gossiped whole.
	// Bigger sets travel as a digest, and whoever is behind fetches the set
	// over the peer link: a broadcast must fit the 1400-byte packets that
	// memberlist piggybacks on its probes, with room for other messages.
	inlineInterestLimit = 1024
)

// interestRecord is one node's advertised interest at one version.
type interestRecord struct {
	node    string
	version uint64
	// filters holds distinct, valid, non-shared filters (see
	// normalizeFilter). Nil in a digest.
	filters []string
}

// appendRecord encodes a record without its type byte.
func appendRecord(dst []byte, node string, version uint64, filters []string) []byte {
	dst = appendString(dst, node)
	dst = binary.AppendUvarint(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(filters)))
	for _, f := range filters {
		dst = appendString(dst, f)
	}
	return dst
}

// recordLen is the encoded size of a record.
func recordLen(node string, version uint64, filters []string) int {
	n := prefixedLen(len(node)) + uvarintLen(version) + uvarintLen(uint64(len(filters)))
	for _, f := range filters {
		n += prefixedLen(len(f))
	}
	return n
}

// record decodes and validates one record. Filters are copied, so the
// record outlives the input; "$share/GROUP/F" is normalised to F and
// duplicates removed.
func (d *decoder) record() interestRecord {
	rec := interestRecord{node: d.nodeName(), version: d.uvarint()}
	count := d.uvarint()
	if d.err != nil {
		return interestRecord{}
	}
	if rec.version == 0 {
		d.fail(fmt.Errorf("%w: interest version 0", errMalformed))
		return interestRecord{}
	}
	// Each filter takes at least two bytes, so a count larger than half of
	// what is left is a lie; checking it first bounds the allocation.
	if count > maxFiltersPerNode || count > uint64(len(d.buf)/2) {
		d.fail(fmt.Errorf("%w: %d filters", errMalformed, count))
		return interestRecord{}
	}
	rec.filters = make([]string, 0, count)
	seen := make(map[string]struct{}, count)
	for range count {
		raw := d.bytes(topic.MaxLength)
		if d.err != nil {
			return interestRecord{}
		}
		f := string(raw)
		if err := topic.ValidateFilter(f); err != nil {
			d.fail(fmt.Errorf("%w: %w", errMalformed, err))
			return interestRecord{}
		}
		f = normalizeFilter(f)
		if _, dup := seen[f]; dup {
			continue
		}
		seen[f] = struct{}{}
		rec.filters = append(rec.filters, f)
	}
	return rec
}

// nodeName reads a non-empty node name of at most maxNameLen bytes.
func (d *decoder) nodeName() string {
	name := d.bytes(maxNameLen)
	if d.err == nil && len(name) == 0 {
		d.fail(fmt.Errorf("%w: empty node name", errMalformed))
	}
	return string(name)
}

// decodeGossip decodes a NotifyMsg payload: an interest message (a record
// with filters) or a digest (a record without). Unknown types are errors
// the caller may choose to ignore quietly (see errUnknownType).
func decodeGossip(b []byte) (typ byte, rec interestRecord, err error) {
	if len(b) > maxGossipMessage {
		return 0, interestRecord{}, fmt.Errorf("%w: %d-byte gossip message", errMalformed, len(b))
	}
	d := decoder{buf: b}
	typ = d.byte()
	switch {
	case d.err != nil:
	case typ == gossipInterest:
		rec = d.record()
	case typ == gossipDigest:
		rec = interestRecord{node: d.nodeName(), version: d.uvarint()}
		if d.err == nil && rec.version == 0 {
			d.fail(fmt.Errorf("%w: interest version 0", errMalformed))
		}
	default:
		return typ, interestRecord{}, fmt.Errorf("%w: gossip type %#x", errUnknownType, typ)
	}
	if err := d.done(); err != nil {
		return typ, interestRecord{}, err
	}
	return typ, rec, nil
}

// errUnknownType marks a payload of a kind this release does not know;
// it wraps errMalformed so callers that do not care treat it alike.
var errUnknownType = fmt.Errorf("%w: unknown type", errMalformed)

func appendInterestMsg(dst []byte, node string, version uint64, filters []string) []byte {
	dst = append(dst, gossipInterest)
	return appendRecord(dst, node, version, filters)
}

func appendDigestMsg(dst []byte, node string, version uint64) []byte {
	dst = append(dst, gossipDigest)
	dst = appendString(dst, node)
	return binary.AppendUvarint(dst, version)
}

// decodeState decodes a push/pull payload. A record naming a node twice
// is not an error: the caller applies them in order and versions decide.
func decodeState(b []byte) ([]interestRecord, error) {
	if len(b) > maxStateBytes {
		return nil, fmt.Errorf("%w: %d-byte state", errMalformed, len(b))
	}
	d := decoder{buf: b}
	if typ := d.byte(); d.err == nil && typ != gossipState {
		return nil, fmt.Errorf("%w: state type %#x", errMalformed, typ)
	}
	count := d.uvarint()
	// A record takes at least four bytes (name, version, count).
	if d.err == nil && count > uint64(len(d.buf)/4) {
		return nil, fmt.Errorf("%w: %d records", errMalformed, count)
	}
	recs := make([]interestRecord, 0, count)
	for range count {
		rec := d.record()
		if d.err != nil {
			break
		}
		recs = append(recs, rec)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return recs, nil
}

// normalizeFilter turns a shared subscription "$share/GROUP/F" into F.
// Interest says which nodes need a message, not how a node shares it among
// its local sessions: a node with any member of a group needs the message,
// and its own trie picks the member. A group whose members sit on several
// nodes therefore gets one delivery per node.
func normalizeFilter(f string) string {
	_, inner, _ := topic.SplitShared(f)
	return inner
}
