package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Peer-link frames. After the handshake (handshake.go) both ends of a link
// write frames and read frames; a writer batches whatever is queued into one
// write, so many frames share a TCP segment:
//
//	frame   = type(1) bodyLen(uvarint) body
//	message = flags(1) topic(lp) origin(lp) id(lp) payload(rest of body)
//	query   = id(uvarint) timeoutMillis(uvarint) kind(lp) body(rest)
//	reply   = id(uvarint) status(1) body(rest)
//
// flags: bits 0-1 QoS, bit 2 retain, bits 3-7 reserved (must be 0).
// A frame the reader cannot decode closes the link: the peer is
// authenticated, so a bad frame means a bug or corruption, and resyncing
// inside a byte stream is guesswork.
const (
	frameMessage byte = 0x01
	frameQuery   byte = 0x02
	frameReply   byte = 0x03
)

const (
	flagQoSMask byte = 0x03
	flagRetain  byte = 0x04

	maxIDLen   = 255 // message ids are small (time + sequence)
	maxKindLen = 255
)

// Reply statuses.
const (
	replyOK        byte = 0
	replyNoHandler byte = 1 // the node has no handler for the kind
	replyBusy      byte = 2 // too many queries running on the node
	replyTooLarge  byte = 3 // the answer did not fit a frame
)

// ErrInvalidMessage is returned by Send for a message that cannot be
// framed: empty topic, QoS above 2, or an origin or id over 255 bytes.
var ErrInvalidMessage = errors.New("cluster: invalid message")

// Message is a publish travelling between two nodes. On receipt (the
// OnMessage callback) Topic, Payload and ID alias the link's read buffer
// and are valid only until the callback returns: copy what outlives it.
type Message struct {
	Topic   []byte
	Payload []byte
	QoS     byte
	Retain  bool
	// Origin is the node where the message was published. Messages go one
	// hop, so it is the sending node unless the caller relays on purpose.
	Origin string
	// ID is the message id, cluster-unique and sortable (opaque here).
	ID []byte
}

// validate reports whether m can be framed.
func (m *Message) validate() error {
	switch {
	case len(m.Topic) == 0:
		return fmt.Errorf("%w: empty topic", ErrInvalidMessage)
	case m.QoS > 2:
		return fmt.Errorf("%w: QoS %d", ErrInvalidMessage, m.QoS)
	case len(m.Origin) > maxNameLen:
		return fmt.Errorf("%w: origin longer than %d bytes", ErrInvalidMessage, maxNameLen)
	case len(m.ID) > maxIDLen:
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalidMessage, maxIDLen)
	}
	return nil
}

// messageBodyLen is the body size of m's frame.
func messageBodyLen(m *Message) int {
	return 1 + prefixedLen(len(m.Topic)) + prefixedLen(len(m.Origin)) +
		prefixedLen(len(m.ID)) + len(m.Payload)
}

// frameLen is the size of a frame with a body of n bytes.
func frameLen(n int) int {
	return 1 + uvarintLen(uint64(n)) + n
}

// appendMessageFrame appends m's frame; m must be valid.
func appendMessageFrame(dst []byte, m *Message) []byte {
	dst = append(dst, frameMessage)
	dst = binary.AppendUvarint(dst, uint64(messageBodyLen(m)))
	flags := m.QoS & flagQoSMask
	if m.Retain {
		flags |= flagRetain
	}
	dst = append(dst, flags)
	dst = appendBytes(dst, m.Topic)
	dst = appendString(dst, m.Origin)
	dst = appendBytes(dst, m.ID)
	return append(dst, m.Payload...)
}

// decodeMessage decodes a message body into m without copying: Topic,
// Payload and ID alias body. Origin is set from originOf, which lets the
// reader reuse the peer's name instead of allocating a string per message.
func decodeMessage(body []byte, m *Message, originOf func([]byte) string) error {
	d := decoder{buf: body}
	flags := d.byte()
	topic := d.bytes(len(body))
	origin := d.bytes(maxNameLen)
	id := d.bytes(maxIDLen)
	payload := d.rest()
	if d.err != nil {
		return d.err
	}
	if flags&^(flagQoSMask|flagRetain) != 0 || flags&flagQoSMask == 3 {
		return fmt.Errorf("%w: message flags %#x", errMalformed, flags)
	}
	if len(topic) == 0 {
		return fmt.Errorf("%w: empty topic", errMalformed)
	}
	*m = Message{
		Topic:   topic,
		Payload: payload,
		QoS:     flags & flagQoSMask,
		Retain:  flags&flagRetain != 0,
		Origin:  originOf(origin),
		ID:      id,
	}
	return nil
}

// appendQueryFrame appends a query frame.
func appendQueryFrame(dst []byte, id uint64, timeoutMillis uint64, kind string, body []byte) []byte {
	n := uvarintLen(id) + uvarintLen(timeoutMillis) + prefixedLen(len(kind)) + len(body)
	dst = append(dst, frameQuery)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendUvarint(dst, id)
	dst = binary.AppendUvarint(dst, timeoutMillis)
	dst = appendString(dst, kind)
	return append(dst, body...)
}

// queryLen is the frame size of a query.
func queryLen(id, timeoutMillis uint64, kind string, body []byte) int {
	return frameLen(uvarintLen(id) + uvarintLen(timeoutMillis) + prefixedLen(len(kind)) + len(body))
}

type queryFrame struct {
	id            uint64
	timeoutMillis uint64
	kind          []byte // aliases the body
	body          []byte // aliases the body
}

func decodeQuery(body []byte) (queryFrame, error) {
	d := decoder{buf: body}
	q := queryFrame{id: d.uvarint(), timeoutMillis: d.uvarint(), kind: d.bytes(maxKindLen)}
	q.body = d.rest()
	if d.err != nil {
		return queryFrame{}, d.err
	}
	if len(q.kind) == 0 {
		return queryFrame{}, fmt.Errorf("%w: empty query kind", errMalformed)
	}
	return q, nil
}

// appendReplyFrame appends a reply frame.
func appendReplyFrame(dst []byte, id uint64, status byte, body []byte) []byte {
	dst = append(dst, frameReply)
	dst = binary.AppendUvarint(dst, uint64(uvarintLen(id)+1+len(body)))
	dst = binary.AppendUvarint(dst, id)
	dst = append(dst, status)
	return append(dst, body...)
}

// replyLen is the frame size of a reply.
func replyLen(id uint64, body []byte) int {
	return frameLen(uvarintLen(id) + 1 + len(body))
}

type replyFrame struct {
	id     uint64
	status byte
	body   []byte // aliases the body
}

func decodeReply(body []byte) (replyFrame, error) {
	d := decoder{buf: body}
	r := replyFrame{id: d.uvarint(), status: d.byte()}
	r.body = d.rest()
	if d.err != nil {
		return replyFrame{}, d.err
	}
	return r, nil
}

// frameReader reads frames from a link. Bodies that fit the bufio buffer
// are returned in place (no copy); larger ones go to a scratch buffer that
// is dropped again once it grows past scratchKeep, so one huge message
// does not pin its size for the life of the link.
type frameReader struct {
	r        *bufio.Reader
	maxBody  int
	scratch  []byte
	consumed int // bytes of the last in-place body, discarded on next read
}

const (
	linkReadBuffer = 64 << 10
	scratchKeep    = 1 << 20
)

func newFrameReader(r io.Reader, maxBody int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, linkReadBuffer), maxBody: maxBody}
}

// next returns the next frame. body is valid until the following call.
func (fr *frameReader) next() (typ byte, body []byte, err error) {
	if fr.consumed > 0 {
		if _, err := fr.r.Discard(fr.consumed); err != nil {
			return 0, nil, err
		}
		fr.consumed = 0
	}
	if cap(fr.scratch) > scratchKeep {
		fr.scratch = nil
	}
	typ, err = fr.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	if n > uint64(fr.maxBody) {
		return 0, nil, fmt.Errorf("%w: %d-byte frame exceeds the %d-byte limit", errMalformed, n, fr.maxBody)
	}
	size := int(n)
	if size <= fr.r.Size() {
		body, err = fr.r.Peek(size)
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		fr.consumed = size
		return typ, body, nil
	}
	if cap(fr.scratch) < size {
		fr.scratch = make([]byte, size)
	}
	body = fr.scratch[:size]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return typ, body, nil
}

// unexpectedEOF turns a clean EOF inside a frame into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
