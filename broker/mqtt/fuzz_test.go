package mqtt

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// fuzzMaxPacket keeps the Reader's limit small enough that the fuzzer
// explores ErrPacketTooLarge as well.
const fuzzMaxPacket = 1 << 16

// maxSeed leaves the tables' very large packets out of the fuzz corpus:
// the fuzzer spends its time mutating and minimising big inputs instead of
// exploring, and the unit tests already cover those packets.
const maxSeed = 1024

// seedPackets returns every raw packet of both tables up to maxSeed bytes.
func seedPackets() [][]byte {
	var seeds [][]byte
	for _, tc := range validCases {
		seeds = append(seeds, mustHex(tc.raw))
	}
	for _, tc := range malformedCases {
		seeds = append(seeds, mustHex(tc.raw))
	}
	return slices.DeleteFunc(seeds, func(s []byte) bool { return len(s) > maxSeed })
}

// seedBodies returns the bodies of the table packets of type t whose fixed
// header parses.
func seedBodies(t Type) [][]byte {
	var bodies [][]byte
	for _, raw := range seedPackets() {
		h, err := ParseFixedHeader(raw, 0)
		if err != nil || h.Type != t || len(raw) < h.Size+h.Remaining {
			continue
		}
		bodies = append(bodies, raw[h.Size:h.Size+h.Remaining])
	}
	return bodies
}

// FuzzReader pushes arbitrary bytes through a Reader, delivered in chunks
// of the fuzzed size, and every framed packet through its decoder. Nothing
// may panic, and a packet that decodes must re-encode to the same bytes
// (with the minimal remaining-length form).
func FuzzReader(f *testing.F) {
	for _, raw := range seedPackets() {
		f.Add(raw, uint8(0))
		f.Add(raw, uint8(1))
	}
	f.Add(bytes.Join(seedPackets()[:len(validCases)-1], nil), uint8(3)) // a session's worth of valid packets
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		r := NewReader(&chunkReader{data: bytes.Clone(data), chunk: int(chunk)}, fuzzMaxPacket)
		r.unpooled = true // see Reader.unpooled
		framed := 0
		for {
			h, body, err := r.Next()
			if err != nil {
				if err == io.EOF && framed != len(data) {
					t.Fatalf("io.EOF after %d of %d bytes", framed, len(data))
				}
				return
			}
			if h.Remaining > fuzzMaxPacket || len(body) != h.Remaining {
				t.Fatalf("header %+v with a %d-byte body", h, len(body))
			}
			raw := data[framed : framed+h.Size+h.Remaining]
			if !bytes.Equal(raw[h.Size:], body) {
				t.Fatalf("body % x is not the stream's % x", body, raw[h.Size:])
			}
			framed += len(raw)
			v, err := decodeBody(h, body)
			if err != nil {
				requireSomeSentinel(t, err)
				continue
			}
			if got, want := encodePacket(v), canonical(raw); !bytes.Equal(got, want) {
				t.Fatalf("%s re-encodes as\n% x\nwant\n% x", h.Type, got, want)
			}
			if p, ok := v.(*Publish); ok {
				if err := p.Validate(); err != nil {
					t.Fatalf("decoded PUBLISH fails Validate: %v", err)
				}
				if p.Size() != len(canonical(raw)) {
					t.Fatalf("Size() = %d, want %d", p.Size(), len(canonical(raw)))
				}
			}
		}
	})
}

func requireSomeSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

// FuzzDecodeConnect decodes arbitrary CONNECT bodies: no panic, every error
// wraps a sentinel, and a body that decodes re-encodes to itself.
func FuzzDecodeConnect(f *testing.F) {
	for _, body := range seedBodies(TypeConnect) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c Connect
		err := DecodeConnect(body, &c)
		if errors.Is(err, ErrUnsupportedProtocolLevel) && c.ProtocolName == "" {
			t.Fatal("unsupported level without the protocol name")
		}
		if err != nil {
			requireSomeSentinel(t, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded CONNECT fails Validate: %v", err)
		}
		enc := c.AppendTo(nil)
		h, err := ParseFixedHeader(enc, 0)
		if err != nil || !bytes.Equal(enc[h.Size:], body) || c.Size() != len(enc) {
			t.Fatalf("re-encoded as % x (%v), want body % x", enc, err, body)
		}
	})
}

// FuzzDecodeSubscribe decodes arbitrary SUBSCRIBE bodies: no panic, every
// error wraps a sentinel, and a body that decodes re-encodes to itself.
func FuzzDecodeSubscribe(f *testing.F) {
	for _, body := range seedBodies(TypeSubscribe) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, subs, err := DecodeSubscribe(body, nil)
		if err != nil {
			requireSomeSentinel(t, err)
			return
		}
		if id == 0 || len(subs) == 0 {
			t.Fatalf("accepted id %d with %d filters", id, len(subs))
		}
		enc := AppendSubscribe(nil, id, subs)
		h, err := ParseFixedHeader(enc, 0)
		if err != nil || !bytes.Equal(enc[h.Size:], body) {
			t.Fatalf("re-encoded as % x (%v), want body % x", enc, err, body)
		}
	})
}
