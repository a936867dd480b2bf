package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sampleRecord() Message {
	return Message{
		ID:        MakeID(1_700_000_000_123, 2, 77),
		Topic:     "sensors/t1",
		Payload:   []byte("21.5 °C"),
		QoS:       1,
		Retain:    true,
		Publisher: "device-1",
		Expires:   time.UnixMilli(1_700_000_060_000),
	}
}

func TestMessageRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"full", sampleRecord()},
		{"minimal", Message{ID: MakeID(1, 0, 0), Topic: "a"}},
		{"binary payload", Message{ID: MakeID(1, 0, 1), Topic: "a/b", Payload: []byte{0, 0xff, 0}, QoS: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := appendMessage([]byte("prefix"), &tc.m)
			require.Equal(t, "prefix", string(enc[:6]), "appends")
			got, err := decodeMessage(enc[6:])
			require.NoError(t, err)
			require.Equal(t, tc.m.ID, got.ID)
			require.Equal(t, tc.m.Topic, got.Topic)
			require.Equal(t, len(tc.m.Payload), len(got.Payload))
			require.True(t, bytes.Equal(tc.m.Payload, got.Payload))
			require.Equal(t, tc.m.QoS, got.QoS)
			require.Equal(t, tc.m.Retain, got.Retain)
			require.Equal(t, tc.m.Publisher, got.Publisher)
			require.True(t, tc.m.Expires.Equal(got.Expires))
			if len(got.Payload) > 0 {
				enc[len(enc)-1] ^= 0xff // decoded payload must not alias the input
				require.Equal(t, tc.m.Payload, got.Payload)
			}
		})
	}
}

// TestEverySingleBitFlipDetected is F4 at the record level: CRC-32C detects
// every single-bit error, so no flipped record decodes.
func TestEverySingleBitFlipDetected(t *testing.T) {
	m := sampleRecord()
	records := map[string][]byte{
		"message": appendMessage(nil, &m),
		"ref":     appendRef(nil, ref{size: 123, expires: 456, topic: "a/b"}),
		"kv":      appendKV(nil, []byte("value"), 789),
	}
	decoders := map[string]func([]byte) error{
		"message": func(b []byte) error { _, err := decodeMessage(b); return err },
		"ref":     func(b []byte) error { _, err := decodeRef(b); return err },
		"kv":      func(b []byte) error { _, _, err := decodeKV(b); return err },
	}
	for name, rec := range records {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, decoders[name](rec))
			for bit := range len(rec) * 8 {
				flipped := bytes.Clone(rec)
				flipped[bit/8] ^= 1 << (bit % 8)
				require.ErrorIs(t, decoders[name](flipped), errDamaged, "bit %d", bit)
			}
			for n := range len(rec) {
				require.ErrorIs(t, decoders[name](rec[:n]), errDamaged, "truncated to %d", n)
			}
		})
	}
	// A valid envelope of the wrong kind is damage too (a value under the
	// wrong key).
	_, err := decodeMessage(records["ref"])
	require.ErrorIs(t, err, errDamaged)
}

func FuzzDecodeMessage(f *testing.F) {
	m := sampleRecord()
	f.Add(appendMessage(nil, &m), false)
	f.Add(appendMessage(nil, &Message{ID: MakeID(1, 0, 0), Topic: "a"})[envelopeHeader:], true)
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0, 0, 0, 'M'}, false)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		b = fuzzInput(b, sealed, kindMessage)
		got, err := decodeMessage(b)
		if err != nil {
			return
		}
		// Anything that decodes re-encodes to the same bytes.
		if enc := appendMessage(nil, &got); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
	})
}

func FuzzDecodeRef(f *testing.F) {
	f.Add(appendRef(nil, ref{size: 100, expires: 0, topic: "a/b"}), false)
	f.Add(appendRef(nil, ref{size: 1 << 30, expires: 1 << 50, topic: "$SYS/x"})[envelopeHeader:], true)
	f.Add([]byte{1, 2, 3, 4, 'R', 0x80}, false)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		b = fuzzInput(b, sealed, kindRef)
		r, err := decodeRef(b)
		if err != nil {
			return
		}
		if enc := appendRef(nil, r); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
	})
}

func FuzzDecodeKV(f *testing.F) {
	f.Add(appendKV(nil, []byte("v"), 0), false)
	f.Add(appendKV(nil, nil, 1<<40)[envelopeHeader:], true)
	f.Add([]byte("short"), false)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		b = fuzzInput(b, sealed, kindKV)
		v, exp, err := decodeKV(b)
		if err != nil {
			return
		}
		if enc := appendKV(nil, v, exp); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
	})
}

// fuzzInput wraps body in a valid envelope when sealed, so the fuzzer
// reaches the body decoder instead of stopping at the checksum.
func fuzzInput(body []byte, sealed bool, kind byte) []byte {
	if !sealed {
		return body
	}
	return seal(append(openEnvelope(nil, kind), body...))
}
