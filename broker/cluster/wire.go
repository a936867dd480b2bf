package cluster

import (
	"encoding/binary"
	"errors"
)

// errMalformed is wrapped by every decoding error of the package: gossip
// payloads, push/pull state, node metadata, link frames and handshakes.
var errMalformed = errors.New("cluster: malformed payload")

// maxNameLen caps node names on every wire format, so a forged length
// cannot make a decoder allocate; memberlist itself puts no limit on names.
const maxNameLen = 255

// decoder reads the fields shared by every codec of the package: bytes,
// unsigned varints and varint-length-prefixed byte strings. The first
// error sticks and every later read returns zero values, so a decoding
// function checks once, at the end.
type decoder struct {
	buf []byte
	err error
}

// fail records err unless an earlier error is already recorded.
func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail(errMalformed)
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail(errMalformed) // truncated, or longer than 64 bits
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes. The
// result aliases the input.
func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.buf)) {
		d.fail(errMalformed)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// string reads a length-prefixed string of at most limit bytes (a copy).
func (d *decoder) string(limit int) string {
	return string(d.bytes(limit))
}

// rest returns what is left of the input.
func (d *decoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	b := d.buf
	d.buf = nil
	return b
}

// done reports the sticky error, or errMalformed when bytes are left over:
// a payload with trailing garbage is as suspect as a truncated one.
func (d *decoder) done() error {
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return errMalformed
	}
	return nil
}

// uvarintLen is the encoded size of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendBytes appends a varint length prefix and b.
func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// appendString appends a varint length prefix and s.
func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// prefixedLen is the encoded size of a length-prefixed string of n bytes.
func prefixedLen(n int) int {
	return uvarintLen(uint64(n)) + n
}
