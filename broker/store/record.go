package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Every value the disk provider writes is an envelope:
//
//	crc32c (4 bytes, big-endian, over everything after it) | kind (1 byte) | body
//
// so a flipped bit anywhere in a value, including its kind, is detected when
// the value is read, independently of pebble's own block checksums.
//
// A message body (kindMessage) is:
//
//	flags (1: bits 0-1 QoS, bit 2 retain) | id (14) | expires ms (uvarint, 0 = never)
//	| topic (uvarint length + bytes) | publisher (uvarint length + bytes) | payload (rest)
//
// An index reference body (kindRef), stored under the global, per-topic and
// expiry index keys, is:
//
//	size (uvarint) | expires ms (uvarint) | topic (rest)
//
// A KV body (kindKV) is: expires ms (uvarint, 0 = never) | value (rest).

const (
	kindMessage byte = 'M'
	kindRef     byte = 'R'
	kindKV      byte = 'K'
)

const envelopeHeader = 5 // crc32c + kind

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged marks a value whose checksum or structure is wrong.
var errDamaged = errors.New("store: damaged record")

// seal fills in the checksum of an envelope built by openEnvelope.
func seal(b []byte) []byte {
	binary.BigEndian.PutUint32(b[0:4], crc32.Checksum(b[4:], castagnoli))
	return b
}

// openEnvelope appends an envelope header for kind to dst.
func openEnvelope(dst []byte, kind byte) []byte {
	return append(dst, 0, 0, 0, 0, kind)
}

// unseal verifies the checksum and kind and returns the body.
func unseal(b []byte, kind byte) ([]byte, error) {
	if len(b) < envelopeHeader {
		return nil, fmt.Errorf("%w: %d-byte value", errDamaged, len(b))
	}
	if crc32.Checksum(b[4:], castagnoli) != binary.BigEndian.Uint32(b[0:4]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errDamaged)
	}
	if b[4] != kind {
		return nil, fmt.Errorf("%w: kind %q, want %q", errDamaged, b[4], kind)
	}
	return b[envelopeHeader:], nil
}

func expiresMs(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixMilli(), 1)) // 1 keeps "expired long ago" distinct from "never"
}

func expiresTime(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// appendMessage appends m's sealed encoding to dst.
func appendMessage(dst []byte, m *Message) []byte {
	start := len(dst)
	dst = openEnvelope(dst, kindMessage)
	flags := m.QoS & 3
	if m.Retain {
		flags |= 4
	}
	dst = append(dst, flags)
	var id [IDLen]byte
	m.ID.put(id[:])
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, expiresMs(m.Expires))
	dst = binary.AppendUvarint(dst, uint64(len(m.Topic)))
	dst = append(dst, m.Topic...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Publisher)))
	dst = append(dst, m.Publisher...)
	dst = append(dst, m.Payload...)
	seal(dst[start:])
	return dst
}

// decodeMessage verifies and decodes a sealed message. The result does not
// alias b: b may be a pebble buffer that is reused after the call.
func decodeMessage(b []byte) (Message, error) {
	body, err := unseal(b, kindMessage)
	if err != nil {
		return Message{}, err
	}
	if len(body) < 1+IDLen {
		return Message{}, fmt.Errorf("%w: short message", errDamaged)
	}
	flags := body[0]
	if flags&^7 != 0 || flags&3 == 3 {
		return Message{}, fmt.Errorf("%w: flags %#x", errDamaged, flags)
	}
	id, err := IDFromBytes(body[1 : 1+IDLen])
	if err != nil || id.IsZero() {
		return Message{}, fmt.Errorf("%w: bad id", errDamaged)
	}
	rest := body[1+IDLen:]
	exp, rest, err := readUvarint(rest)
	if err != nil || exp > 1<<62 {
		return Message{}, fmt.Errorf("%w: bad expiry", errDamaged)
	}
	topic, rest, err := readBytes(rest)
	if err != nil {
		return Message{}, err
	}
	publisher, rest, err := readBytes(rest)
	if err != nil {
		return Message{}, err
	}
	m := Message{
		ID:        id,
		Topic:     string(topic),
		QoS:       flags & 3,
		Retain:    flags&4 != 0,
		Publisher: string(publisher),
		Expires:   expiresTime(exp),
		Payload:   append([]byte(nil), rest...),
	}
	if validateTopic(m.Topic) != nil {
		return Message{}, fmt.Errorf("%w: bad topic", errDamaged)
	}
	return m, nil
}

// ref is an index entry: enough to find and account for a message without
// reading it.
type ref struct {
	size    int64
	expires uint64 // ms, 0 = never
	topic   string
}

func appendRef(dst []byte, r ref) []byte {
	start := len(dst)
	dst = openEnvelope(dst, kindRef)
	dst = binary.AppendUvarint(dst, uint64(r.size))
	dst = binary.AppendUvarint(dst, r.expires)
	dst = append(dst, r.topic...)
	seal(dst[start:])
	return dst
}

func decodeRef(b []byte) (ref, error) {
	body, err := unseal(b, kindRef)
	if err != nil {
		return ref{}, err
	}
	size, body, err := readUvarint(body)
	if err != nil || size > 1<<40 {
		return ref{}, fmt.Errorf("%w: bad size", errDamaged)
	}
	exp, body, err := readUvarint(body)
	if err != nil || exp > 1<<62 {
		return ref{}, fmt.Errorf("%w: bad expiry", errDamaged)
	}
	r := ref{size: int64(size), expires: exp, topic: string(body)}
	if validateTopic(r.topic) != nil {
		return ref{}, fmt.Errorf("%w: bad topic", errDamaged)
	}
	return r, nil
}

func appendKV(dst, value []byte, exp uint64) []byte {
	start := len(dst)
	dst = openEnvelope(dst, kindKV)
	dst = binary.AppendUvarint(dst, exp)
	dst = append(dst, value...)
	seal(dst[start:])
	return dst
}

// decodeKV returns a copy of the value and its expiry.
func decodeKV(b []byte) (value []byte, exp uint64, err error) {
	body, err := unseal(b, kindKV)
	if err != nil {
		return nil, 0, err
	}
	exp, body, err = readUvarint(body)
	if err != nil || exp > 1<<62 {
		return nil, 0, fmt.Errorf("%w: bad expiry", errDamaged)
	}
	return append([]byte{}, body...), exp, nil
}

// readUvarint accepts only the minimal encoding, so every decodable value
// has exactly one encoding (the fuzz targets check re-encoding is identical).
func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(v) {
		return 0, nil, fmt.Errorf("%w: bad varint", errDamaged)
	}
	return v, b[n:], nil
}

func readBytes(b []byte) (field, rest []byte, err error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: field of %d bytes overruns value", errDamaged, n)
	}
	return b[:n], b[n:], nil
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
