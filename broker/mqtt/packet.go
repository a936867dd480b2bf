package mqtt

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Type is an MQTT control packet type, the high nibble of the first byte
// [MQTT-2.2.1].
type Type byte

// Control packet types [MQTT-2.2.1]. 0 and 15 are reserved.
const (
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
)

var typeNames = [...]string{
	TypeConnect:     "CONNECT",
	TypeConnack:     "CONNACK",
	TypePublish:     "PUBLISH",
	TypePuback:      "PUBACK",
	TypePubrec:      "PUBREC",
	TypePubrel:      "PUBREL",
	TypePubcomp:     "PUBCOMP",
	TypeSubscribe:   "SUBSCRIBE",
	TypeSuback:      "SUBACK",
	TypeUnsubscribe: "UNSUBSCRIBE",
	TypeUnsuback:    "UNSUBACK",
	TypePingreq:     "PINGREQ",
	TypePingresp:    "PINGRESP",
	TypeDisconnect:  "DISCONNECT",
}

// String returns the spec's name of the type, e.g. "PUBLISH".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// CONNACK return codes [MQTT-3.2.2.3].
const (
	Accepted                  byte = 0
	RefusedProtocolVersion    byte = 1
	RefusedIdentifierRejected byte = 2
	RefusedServerUnavailable  byte = 3
	RefusedBadCredentials     byte = 4
	RefusedNotAuthorized      byte = 5
)

// SubackFailure is the SUBACK return code for a refused subscription
// [MQTT-3.9.3].
const SubackFailure byte = 0x80

// MaxRemaining is the largest remaining length four varint bytes can carry
// [MQTT-2.2.3].
const MaxRemaining = 268435455

// maxStringLen is the largest UTF-8 string or binary field: its length
// prefix is two bytes [MQTT-1.5.3].
const maxStringLen = 65535

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (check with errors.Is); see the package documentation for which
// applies when.
var (
	// ErrMalformed: the bytes do not form a valid packet; the receiver closes
	// the connection [MQTT-4.8.0-1].
	ErrMalformed = errors.New("mqtt: malformed packet")
	// ErrProtocolViolation: a well-formed packet breaks a protocol rule, e.g.
	// reserved flags [MQTT-2.2.2-2], QoS 3, a wildcard in a PUBLISH topic.
	ErrProtocolViolation = errors.New("mqtt: protocol violation")
	// ErrPacketTooLarge: the remaining length is above the configured maximum.
	ErrPacketTooLarge = errors.New("mqtt: packet too large")
	// ErrUnsupportedProtocolLevel: a CONNECT with a known protocol name but a
	// level other than 4 ("MQTT") or 3 ("MQIsdp"); the server answers CONNACK 1
	// and closes [MQTT-3.1.2-2].
	ErrUnsupportedProtocolLevel = errors.New("mqtt: unsupported protocol level")
)

// Errors without a dynamic detail are built once so that hot-path error
// returns do not allocate either.
var (
	errVarintTooLong   = fmt.Errorf("%w: remaining length longer than 4 bytes [MQTT-2.2.3]", ErrMalformed)
	errReservedType    = fmt.Errorf("%w: reserved packet type [MQTT-2.2.1]", ErrProtocolViolation)
	errPublishQoS3     = fmt.Errorf("%w: PUBLISH with QoS 3 [MQTT-3.3.1-4]", ErrProtocolViolation)
	errPublishDupQoS0  = fmt.Errorf("%w: PUBLISH with DUP set at QoS 0 [MQTT-3.3.1-2]", ErrProtocolViolation)
	errShortString     = fmt.Errorf("%w: string or length prefix runs past the packet", ErrMalformed)
	errInvalidUTF8     = fmt.Errorf("%w: ill-formed UTF-8 or U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2]", ErrMalformed)
	errEmptyTopic      = fmt.Errorf("%w: zero-length topic [MQTT-4.7.3-1]", ErrProtocolViolation)
	errTopicWildcard   = fmt.Errorf("%w: wildcard in topic name [MQTT-3.3.2-2]", ErrProtocolViolation)
	errPacketIDZero    = fmt.Errorf("%w: packet identifier 0 [MQTT-2.3.1-1]", ErrProtocolViolation)
	errMissingPacketID = fmt.Errorf("%w: packet identifier missing", ErrMalformed)
	errTrailingBytes   = fmt.Errorf("%w: bytes after the last field", ErrMalformed)
)

// FixedHeader is the first 2 to 5 bytes of every packet [MQTT-2.2].
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of byte 1
	Remaining int  // remaining length
	Size      int  // bytes taken by the fixed header itself (1 + varint length)
}

// ParseFixedHeader parses the fixed header at the start of buf.
//
// It returns io.ErrUnexpectedEOF when buf does not yet hold the whole fixed
// header. Everything it rejects is rejected from the header alone, before
// any body byte is needed, and the first byte is judged as soon as it is
// present (a bad type or flags nibble is refused without waiting for the
// length):
//   - type 0 or 15, reserved flag bits [MQTT-2.2.2-1] [MQTT-2.2.2-2], and a
//     PUBLISH with QoS 3 [MQTT-3.3.1-4] or DUP at QoS 0 [MQTT-3.3.1-2]:
//     ErrProtocolViolation;
//   - a remaining length longer than 4 bytes: ErrMalformed;
//   - Remaining > maxPacket: ErrPacketTooLarge (maxPacket <= 0 or above
//     MaxRemaining means MaxRemaining);
//   - a fixed-length packet with another length (2 for CONNACK, PUBACK,
//     PUBREC, PUBREL, PUBCOMP, UNSUBACK; 0 for PINGREQ, PINGRESP, DISCONNECT):
//     ErrMalformed.
//
// A remaining length encoded in more bytes than needed is accepted: 3.1.1,
// unlike MQTT 5, does not forbid it.
func ParseFixedHeader(buf []byte, maxPacket int) (FixedHeader, error) {
	if len(buf) == 0 {
		return FixedHeader{}, io.ErrUnexpectedEOF
	}
	h := FixedHeader{Type: Type(buf[0] >> 4), Flags: buf[0] & 0x0f}
	if err := checkFlags(h.Type, h.Flags); err != nil {
		return h, err
	}

	var remaining, shift int
	for i := 1; ; i++ {
		if i > 4 {
			return h, errVarintTooLong
		}
		if i >= len(buf) {
			return h, io.ErrUnexpectedEOF
		}
		b := buf[i]
		remaining |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			h.Size = i + 1
			break
		}
		shift += 7
	}
	h.Remaining = remaining

	if maxPacket <= 0 || maxPacket > MaxRemaining {
		maxPacket = MaxRemaining
	}
	if remaining > maxPacket {
		return h, fmt.Errorf("%w: remaining length %d above the limit %d", ErrPacketTooLarge, remaining, maxPacket)
	}
	if want, fixed := fixedRemaining(h.Type); fixed && remaining != want {
		return h, fmt.Errorf("%w: %s remaining length %d, must be %d", ErrMalformed, h.Type, remaining, want)
	}
	return h, nil
}

// checkFlags validates the low nibble of byte 1 for its type [MQTT-2.2.2-1]
// [MQTT-2.2.2-2].
func checkFlags(t Type, flags byte) error {
	switch t {
	case 0, 15:
		return errReservedType
	case TypePublish:
		qos := flags >> 1 & 3
		if qos == 3 {
			return errPublishQoS3
		}
		if qos == 0 && flags&0x08 != 0 {
			return errPublishDupQoS0
		}
		return nil
	case TypePubrel, TypeSubscribe, TypeUnsubscribe:
		if flags != 0x02 {
			return fmt.Errorf("%w: %s flags %#02x, must be 0x02 [MQTT-2.2.2-2]", ErrProtocolViolation, t, flags)
		}
		return nil
	default:
		if flags != 0 {
			return fmt.Errorf("%w: %s flags %#02x, must be 0 [MQTT-2.2.2-2]", ErrProtocolViolation, t, flags)
		}
		return nil
	}
}

// fixedRemaining reports the only valid remaining length of types whose
// size the spec fixes.
func fixedRemaining(t Type) (length int, fixed bool) {
	switch t {
	case TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeUnsuback:
		return 2, true // [MQTT-3.2.1], [MQTT-3.4.1], [MQTT-3.5.1], [MQTT-3.6.1], [MQTT-3.7.1], [MQTT-3.11.1]
	case TypePingreq, TypePingresp, TypeDisconnect:
		return 0, true // [MQTT-3.12.1], [MQTT-3.13.1], [MQTT-3.14.1]
	}
	return 0, false
}

// varintLen returns how many bytes the remaining length n takes [MQTT-2.2.3].
func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	default:
		return 4
	}
}

// appendHeader appends a fixed header: the first byte and the remaining
// length in its minimal encoding.
func appendHeader(dst []byte, first byte, remaining int) []byte {
	dst = append(dst, first)
	for {
		b := byte(remaining & 0x7f)
		remaining >>= 7
		if remaining == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// appendString appends a length-prefixed string or binary field [MQTT-1.5.3].
func appendString[T ~string | ~[]byte](dst []byte, s T) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

// readUint16 reads a big-endian two-byte integer at off [MQTT-1.5.2].
func readUint16(b []byte, off int) (uint16, bool) {
	if off < 0 || len(b)-off < 2 {
		return 0, false
	}
	return uint16(b[off])<<8 | uint16(b[off+1]), true
}

// readField reads a length-prefixed field at off and returns it (aliasing b)
// and the offset after it.
func readField(b []byte, off int) (field []byte, next int, err error) {
	n, ok := readUint16(b, off)
	if !ok {
		return nil, off, errShortString
	}
	start := off + 2
	end := start + int(n)
	if end > len(b) {
		return nil, off, errShortString
	}
	return b[start:end:end], end, nil
}
