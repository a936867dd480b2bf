package mqtt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// countingReader counts Read calls on the reader it wraps.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// headerOnlyReader serves a fixed header and fails the test if anything
// more (the body) is asked for: the Reader must decide from the header.
type headerOnlyReader struct {
	t      *testing.T
	header []byte
	served bool
}

func (h *headerOnlyReader) Read(p []byte) (int, error) {
	if h.served {
		h.t.Errorf("body requested after header % x", h.header)
		return 0, errors.New("body requested")
	}
	h.served = true
	return copy(p, h.header), nil
}

// cycleReader returns a pattern over and over, filling every read.
type cycleReader struct {
	pattern []byte
	off     int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.pattern[c.off:])
		n += k
		c.off = (c.off + k) % len(c.pattern)
	}
	return n, nil
}

// validStream is every valid table packet back to back.
func validStream() []byte {
	var stream []byte
	for _, tc := range validCases {
		stream = append(stream, mustHex(tc.raw)...)
	}
	return stream
}

// readAll reads packets until an error and checks each one against the
// valid table, in order.
func requireValidSequence(t *testing.T, r *Reader) {
	t.Helper()
	for i, tc := range validCases {
		h, body, err := r.Next()
		if err != nil {
			t.Fatalf("packet %d (%s): %v", i, tc.name, err)
		}
		got, err := decodeBody(h, body)
		if err != nil {
			t.Fatalf("packet %d (%s): decode: %v", i, tc.name, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(tc.want)) {
			t.Fatalf("packet %d (%s): %+v, want %+v", i, tc.name, got, tc.want)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last packet: %v, want io.EOF", err)
	}
}

func TestReaderOneBytePerRead(t *testing.T) {
	// A20: a session sent one byte per write frames exactly as one write.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(validStream())), 0)
	requireValidSequence(t, r)
}

func TestReaderChunkSizes(t *testing.T) {
	stream := validStream()
	for _, chunk := range []int{2, 3, 7, 64, 511, 512, 513, len(stream)} {
		r := NewReader(&chunkReader{data: stream, chunk: chunk}, 0)
		requireValidSequence(t, r)
	}
}

// chunkReader serves data at most chunk bytes per read.
type chunkReader struct {
	data  []byte
	chunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data))
	if c.chunk > 0 {
		n = min(n, c.chunk)
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestReaderCoalesced(t *testing.T) {
	// A20: 50 packets in one write come out one by one from a single read.
	const packets = 50
	var stream []byte
	for i := range packets {
		p := Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("t"), Payload: []byte{byte(i)}}
		stream = p.AppendTo(stream)
	}
	if len(stream) > initialBufferSize {
		t.Fatalf("stream of %d bytes does not fit one read", len(stream))
	}
	src := &countingReader{r: bytes.NewReader(stream)}
	r := NewReader(src, 0)
	for i := range packets {
		h, body, err := r.Next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		var p Publish
		if err := DecodePublish(h.Flags, body, &p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.PacketID != uint16(i+1) || p.Payload[0] != byte(i) {
			t.Fatalf("packet %d decoded as %+v", i, p)
		}
		if want := len(stream) * (packets - 1 - i) / packets; r.Buffered() != want {
			t.Fatalf("packet %d: Buffered() = %d, want %d", i, r.Buffered(), want)
		}
	}
	if src.reads != 1 {
		t.Fatalf("%d reads for one coalesced write", src.reads)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
}

func TestReaderLargePacketShrinksBack(t *testing.T) {
	for _, payloadSize := range []int{5000, maxPooledBuffer + maxPooledBuffer/2} {
		big := Publish{Topic: []byte("big"), Payload: bytes.Repeat([]byte("x"), payloadSize)}
		small := Publish{Topic: []byte("small"), Payload: []byte("y")}
		stream := small.AppendTo(big.AppendTo(nil))
		r := NewReader(bytes.NewReader(stream), 0)
		if len(r.buf) != initialBufferSize {
			t.Fatalf("initial buffer %d bytes, want %d", len(r.buf), initialBufferSize)
		}

		h, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		var p Publish
		if err := DecodePublish(h.Flags, body, &p); err != nil || !bytes.Equal(p.Payload, big.Payload) {
			t.Fatalf("large packet: %v", err)
		}
		if len(r.buf) < big.Size() || len(r.buf) > 2*big.Size() {
			t.Fatalf("a %d-byte packet in a %d-byte buffer", big.Size(), len(r.buf))
		}

		h, body, err = r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodePublish(h.Flags, body, &p); err != nil || string(p.Topic) != "small" {
			t.Fatalf("small packet: %+v %v", p, err)
		}
		if len(r.buf) != initialBufferSize || r.grown != nil {
			t.Fatalf("buffer did not shrink back: %d bytes", len(r.buf))
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	}
}

func TestReaderGrowsOnlyWithArrivingBytes(t *testing.T) {
	// A3/A2: a peer announcing ~2 MB and sending 10 bytes must not make the
	// Reader allocate the announced size.
	stream := append(mustHex("30 ffff7f"), make([]byte, 10)...)
	r := NewReader(bytes.NewReader(stream), 0)
	_, _, err := r.Next()
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("error %v, want io.ErrUnexpectedEOF", err)
	}
	if len(r.buf) != initialBufferSize {
		t.Fatalf("buffer grew to %d bytes for 13 received", len(r.buf))
	}
}

func TestReaderTrafficGrowthIsBounded(t *testing.T) {
	p := Publish{Topic: []byte("sensors/t1"), Payload: make([]byte, 64)}
	r := NewReader(&cycleReader{pattern: p.AppendTo(nil)}, 0)
	for i := range 10000 {
		if _, _, err := r.Next(); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if len(r.buf) > maxTrafficBuffer {
			t.Fatalf("buffer grew to %d bytes for 76-byte packets", len(r.buf))
		}
	}
	// Reads that keep filling the buffer mean the peer sends faster than
	// 512 bytes at a time: fewer, larger reads serve it better.
	if len(r.buf) != maxTrafficBuffer {
		t.Fatalf("buffer stayed at %d bytes under sustained traffic", len(r.buf))
	}
}

func TestReaderRefusesBeforeBody(t *testing.T) {
	errNotConnect := errors.New("first packet is not CONNECT")
	for _, tc := range []struct {
		name   string
		header string
		max    int
		check  func(FixedHeader) error
		want   error
	}{
		{"A2 CheckHeader refuses a huge PUBLISH", "30 80808074", 0, func(h FixedHeader) error {
			if h.Type != TypeConnect {
				return errNotConnect
			}
			return nil
		}, errNotConnect},
		{"A3 RL above max", "10 e907", 1000, nil, ErrPacketTooLarge},
		{"A4 RL longer than 4 bytes", "10 ffffffff7f", 0, nil, ErrMalformed},
		{"A6 reserved flags", "12 7f", 0, nil, ErrProtocolViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &headerOnlyReader{t: t, header: mustHex(tc.header)}
			r := NewReader(src, tc.max)
			r.CheckHeader = tc.check
			if _, _, err := r.Next(); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if len(r.buf) != initialBufferSize {
				t.Fatalf("buffer grew to %d bytes", len(r.buf))
			}
		})
	}
}

func TestReaderCheckHeaderSeesEveryPacket(t *testing.T) {
	var seen []Type
	r := NewReader(bytes.NewReader(validStream()), 0)
	r.CheckHeader = func(h FixedHeader) error {
		seen = append(seen, h.Type)
		return nil
	}
	requireValidSequence(t, r)
	if len(seen) != len(validCases) {
		t.Fatalf("CheckHeader called %d times for %d packets", len(seen), len(validCases))
	}
}

func TestReaderEndOfStream(t *testing.T) {
	readErr := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		src  io.Reader
		want []error // per Next call
	}{
		{"empty stream", bytes.NewReader(nil), []error{io.EOF}},
		{"clean end", bytes.NewReader(mustHex("c000")), []error{nil, io.EOF}},
		{"inside header", bytes.NewReader(mustHex("c000 30")), []error{nil, io.ErrUnexpectedEOF}},
		{"inside varint", bytes.NewReader(mustHex("30 80")), []error{io.ErrUnexpectedEOF}},
		{"inside body", bytes.NewReader(mustHex("30 05 0001")), []error{io.ErrUnexpectedEOF}},
		{"error after data is reported after the data", iotest.DataErrReader(bytes.NewReader(mustHex("c000 d000"))),
			[]error{nil, nil, io.EOF}},
		{"read error with data", io.MultiReader(bytes.NewReader(mustHex("c000")), iotest.ErrReader(readErr)),
			[]error{nil, readErr}},
		{"timeout mid-packet is returned as is", io.MultiReader(bytes.NewReader(mustHex("30 05")), iotest.ErrReader(iotest.ErrTimeout)),
			[]error{iotest.ErrTimeout}},
		{"reader that makes no progress", emptyReader{}, []error{io.ErrNoProgress}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.src, 0)
			for i, want := range tc.want {
				_, _, err := r.Next()
				if err != want {
					t.Fatalf("Next #%d: %v, want %v", i, err, want)
				}
			}
		})
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

type badCountReader struct{}

func (badCountReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestReaderBadCount(t *testing.T) {
	if _, _, err := NewReader(badCountReader{}, 0).Next(); err == nil {
		t.Fatal("a reader reporting more bytes than it was given is accepted")
	}
}

func TestReaderZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	p := Publish{QoS: 1, PacketID: 1, Topic: []byte("sensors/t1"), Payload: make([]byte, 64)}
	r := NewReader(&cycleReader{pattern: p.AppendTo(nil)}, 0)
	for range 1000 { // let the buffer reach its traffic size
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(1000, func() {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("Reader.Next allocates %v times per packet", n)
	}
}

func TestReaderHasPacket(t *testing.T) {
	// Two PINGREQs and the first byte of a third, read at once.
	r := NewReader(bytes.NewReader([]byte{0xC0, 0x00, 0xC0, 0x00, 0xC0}), 0)
	if r.HasPacket() {
		t.Fatal("empty reader claims a packet")
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !r.HasPacket() {
		t.Fatal("second PINGREQ is buffered")
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.HasPacket() {
		t.Fatal("a lone first byte is not a packet")
	}
}
