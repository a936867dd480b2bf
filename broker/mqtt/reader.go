package mqtt

import (
	"errors"
	"io"
	"math/bits"
	"sync"
)

// Buffer sizing. Brokers hold many idle connections, so the resting buffer
// is small (DESIGN §3); it grows with a large packet or with reads that keep
// filling it, and goes back to the resting buffer once drained.
const (
	initialBufferSize = 512      // bytes held by an idle Reader
	maxTrafficBuffer  = 32 << 10 // growth for back-to-back small packets stops here
	minPooledShift    = 10       // smallest grown buffer, a pooled size class: 1 KiB
	maxPooledShift    = 20       // larger buffers than 1 MiB are sized to the packet and not pooled
	minPooledBuffer   = 1 << minPooledShift
	maxPooledBuffer   = 1 << maxPooledShift
	maxEmptyReads     = 100 // consecutive (0, nil) reads before io.ErrNoProgress, as bufio
)

var errNegativeRead = errors.New("mqtt: reader returned an invalid count")

// bufferPools holds grown read buffers by power-of-two size class, from
// minPooledBuffer to maxPooledBuffer, so connections that see a large packet
// now and then share a few buffers instead of allocating each time. They
// hold *[]byte so that Put does not allocate.
var bufferPools [maxPooledShift - minPooledShift + 1]sync.Pool

func poolIndex(size int) (int, bool) {
	if size < minPooledBuffer || size > maxPooledBuffer || size&(size-1) != 0 {
		return 0, false
	}
	return bits.Len(uint(size)) - 1 - minPooledShift, true
}

func getBuffer(size int) *[]byte {
	if i, ok := poolIndex(size); ok {
		if p, _ := bufferPools[i].Get().(*[]byte); p != nil {
			return p
		}
	}
	b := make([]byte, size)
	return &b
}

func putBuffer(p *[]byte) {
	if i, ok := poolIndex(len(*p)); ok {
		bufferPools[i].Put(p)
	}
}

// Reader reads whole packets from a stream. Its buffer starts small (512 B),
// grows to fit a large packet and shrinks back once it is consumed, so an
// idle connection costs little (DESIGN §3). Several packets arriving in one
// read are returned one by one without another read; a packet split over
// many reads (even 1 byte per read) is reassembled [MQTT-4.2].
//
// The buffer grows only as far as bytes have actually arrived (at most
// doubling when it is full), never to a size a peer merely declares, so a
// peer that announces a large packet and withholds it costs nothing extra.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	// CheckHeader, if set, is called as soon as a fixed header is parsed and
	// BEFORE its body is read; a non-nil error aborts Next with that error
	// (the broker uses it to refuse a first packet that is not CONNECT at
	// the type byte, [MQTT-3.1.0-1]).
	CheckHeader func(FixedHeader) error

	rd        io.Reader
	maxPacket int

	small []byte  // the resting buffer, kept to shrink back to
	grown *[]byte // the pooled buffer buf lives in while grown, else nil
	buf   []byte  // data is buf[start:end]
	start int
	end   int
	last  int   // size of the packet last returned; dropped by the next Next
	full  bool  // the last Read filled all the space it was offered
	err   error // a read error that came with data; returned once the data is used

	// unpooled makes grown buffers plain allocations. The fuzz target sets
	// it: whether the pool has a buffer depends on earlier runs and on GC
	// timing, so the hit and miss branches make coverage non-deterministic,
	// and the fuzzer then spends its time minimising inputs that only looked
	// new.
	unpooled bool
}

// NewReader returns a Reader over r that refuses packets whose remaining
// length exceeds maxPacket (<= 0 means the protocol maximum).
func NewReader(r io.Reader, maxPacket int) *Reader {
	if maxPacket <= 0 || maxPacket > MaxRemaining {
		maxPacket = MaxRemaining
	}
	small := make([]byte, initialBufferSize)
	return &Reader{rd: r, maxPacket: maxPacket, small: small, buf: small}
}

// Next returns the next packet's header and body. body aliases the Reader's
// buffer and is valid only until the next call to Next.
//
// Header errors (see ParseFixedHeader) and CheckHeader's error are returned
// before any body byte is read. At a clean end of stream Next returns
// io.EOF; a stream that ends inside a packet gives io.ErrUnexpectedEOF.
// Other read errors are returned as they are.
func (r *Reader) Next() (FixedHeader, []byte, error) {
	r.start += r.last
	r.last = 0
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	r.shrink()

	var h FixedHeader
	for {
		var err error
		h, err = ParseFixedHeader(r.buf[r.start:r.end], r.maxPacket)
		if err == nil {
			break
		}
		if err != io.ErrUnexpectedEOF {
			return h, nil, err
		}
		if err := r.fill(r.end - r.start + 1); err != nil {
			return h, nil, err
		}
	}
	if r.CheckHeader != nil {
		if err := r.CheckHeader(h); err != nil {
			return h, nil, err
		}
	}
	total := h.Size + h.Remaining
	for r.end-r.start < total {
		if err := r.fill(total); err != nil {
			return h, nil, err
		}
	}
	bodyStart, bodyEnd := r.start+h.Size, r.start+total
	r.last = total
	return h, r.buf[bodyStart:bodyEnd:bodyEnd], nil
}

// Buffered reports how many bytes are already buffered beyond the packet
// last returned (the broker flushes its replies when this reaches 0).
func (r *Reader) Buffered() int {
	return r.end - r.start - r.last
}

// HasPacket reports whether the bytes already buffered hold the whole next
// packet, so Next will return without reading. The broker flushes the
// writes it deferred before any Next that could block.
func (r *Reader) HasPacket() bool {
	data := r.buf[r.start+r.last : r.end]
	h, err := ParseFixedHeader(data, r.maxPacket)
	if err == io.ErrUnexpectedEOF {
		return false
	}
	// A bad header is returned by Next without reading, too.
	return err != nil || len(data) >= h.Size+h.Remaining
}

// fill reads once (retrying empty reads) after making room for a packet of
// need bytes starting at r.start.
func (r *Reader) fill(need int) error {
	if r.err != nil {
		return r.takeErr()
	}
	r.makeRoom(need)
	space := r.buf[r.end:]
	for range maxEmptyReads {
		n, err := r.rd.Read(space)
		if n < 0 || n > len(space) {
			return errNegativeRead
		}
		r.end += n
		r.full = n == len(space)
		if err != nil {
			r.err = err
			if n > 0 {
				return nil // use the data first, report err on the next fill
			}
			return r.takeErr()
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

func (r *Reader) takeErr() error {
	err := r.err
	r.err = nil
	if err == io.EOF && r.end > r.start {
		return io.ErrUnexpectedEOF
	}
	return err
}

// makeRoom ensures there is free space after r.end. The buffer grows only
// when it is full of unconsumed bytes of a packet that does not fit, or when
// reads keep filling it; otherwise the unconsumed bytes move to the front.
func (r *Reader) makeRoom(need int) {
	if r.end < len(r.buf) {
		return
	}
	buffered := r.end - r.start
	size := len(r.buf)
	switch {
	case need > size && buffered == size:
		size *= 2
		if size > maxPooledBuffer {
			// Past the pooled classes, stop at what this packet needs.
			size = min(size, need)
		}
	case r.full && size < maxTrafficBuffer:
		size *= 2
	}
	if size == len(r.buf) {
		copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, buffered
		return
	}
	var grown *[]byte
	if r.unpooled {
		b := make([]byte, size)
		grown = &b
	} else {
		grown = getBuffer(size)
	}
	copy(*grown, r.buf[r.start:r.end])
	r.release()
	r.grown, r.buf = grown, *grown
	r.start, r.end = 0, buffered
}

// shrink returns to the resting buffer once what is left fits in it, unless
// the last read filled the buffer (more is probably waiting). An empty
// buffer always shrinks, so a connection that falls idle holds only 512 B.
func (r *Reader) shrink() {
	buffered := r.end - r.start
	if r.grown == nil || buffered > len(r.small) || (r.full && buffered > 0) {
		return
	}
	copy(r.small, r.buf[r.start:r.end])
	r.release()
	r.buf = r.small
	r.start, r.end = 0, buffered
}

// release hands a grown buffer back to its pool.
func (r *Reader) release() {
	if r.grown != nil && !r.unpooled {
		putBuffer(r.grown)
	}
	r.grown = nil
}
