package mqtt

import "fmt"

// Publish is a PUBLISH packet [MQTT-3.3].
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    []byte // aliases the decoded body
	PacketID uint16 // only when QoS > 0
	Payload  []byte // aliases the decoded body
}

// DecodePublish decodes a PUBLISH body into p without allocating; Topic and
// Payload alias body. flags is FixedHeader.Flags.
//
// Errors: QoS 3 [MQTT-3.3.1-4] and DUP at QoS 0 [MQTT-3.3.1-2] (both also
// refused by ParseFixedHeader), packet id 0 at QoS > 0 [MQTT-2.3.1-1], a
// zero-length topic [MQTT-4.7.3-1] or a wildcard in it [MQTT-3.3.2-2]
// (ErrProtocolViolation); a topic or packet id running past the body, or a
// topic that is not valid MQTT UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.3-2]
// (ErrMalformed). Topics starting with '$' are valid here.
func DecodePublish(flags byte, body []byte, p *Publish) error {
	if err := checkFlags(TypePublish, flags&0x0f); err != nil {
		return err
	}
	p.Dup = flags&0x08 != 0
	p.QoS = flags >> 1 & 3
	p.Retain = flags&0x01 != 0

	topic, off, err := readField(body, 0)
	if err != nil {
		return err
	}
	if err := checkTopicName(topic); err != nil {
		return err
	}
	p.Topic = topic

	p.PacketID = 0
	if p.QoS > 0 {
		id, ok := readUint16(body, off)
		if !ok {
			return errMissingPacketID
		}
		if id == 0 {
			return errPacketIDZero
		}
		p.PacketID = id
		off += 2
	}
	// The payload is whatever remains, possibly nothing [MQTT-3.3.3].
	p.Payload = body[off:len(body):len(body)]
	return nil
}

// remaining is the PUBLISH remaining length: topic, optional packet id,
// payload [MQTT-3.3.1-5].
func (p *Publish) remaining() int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	return n
}

// Size returns the total encoded size of p including the fixed header.
func (p *Publish) Size() int {
	rl := p.remaining()
	return 1 + varintLen(rl) + rl
}

// AppendTo appends the encoding of p to dst. It does not allocate when dst
// has capacity for Size() more bytes. p must be valid (see Validate).
func (p *Publish) AppendTo(dst []byte) []byte {
	first := byte(TypePublish)<<4 | (p.QoS&3)<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	dst = appendHeader(dst, first, p.remaining())
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	return append(dst, p.Payload...)
}

// PacketIDOffset returns the offset of the 2-byte packet id inside an
// encoding of p (valid for QoS > 0), so that one encoding can be copied per
// subscriber and only the id patched.
func (p *Publish) PacketIDOffset() int {
	return 1 + varintLen(p.remaining()) + 2 + len(p.Topic)
}

// Validate reports whether p can be sent: the same rules DecodePublish
// enforces, plus the size limits of the encoding (a topic of at most 65535
// bytes, a packet of at most MaxRemaining).
func (p *Publish) Validate() error {
	if p.QoS > 2 {
		return errPublishQoS3
	}
	if p.Dup && p.QoS == 0 {
		return errPublishDupQoS0
	}
	if len(p.Topic) > maxStringLen {
		return fmt.Errorf("%w: topic of %d bytes, at most %d fit [MQTT-1.5.3]", ErrMalformed, len(p.Topic), maxStringLen)
	}
	if err := checkTopicName(p.Topic); err != nil {
		return err
	}
	if p.QoS > 0 && p.PacketID == 0 {
		return errPacketIDZero
	}
	if rl := p.remaining(); rl > MaxRemaining {
		return fmt.Errorf("%w: remaining length %d above %d", ErrPacketTooLarge, rl, MaxRemaining)
	}
	return nil
}
