package mqtt

import "fmt"

var (
	errAckLength         = fmt.Errorf("%w: acknowledgement body must be 2 bytes", ErrMalformed)
	errConnackLength     = fmt.Errorf("%w: CONNACK body must be 2 bytes [MQTT-3.2.1]", ErrMalformed)
	errConnackFlags      = fmt.Errorf("%w: CONNACK reserved flag bits set [MQTT-3.2.2.1]", ErrProtocolViolation)
	errConnackSessionRef = fmt.Errorf("%w: CONNACK refusal with session present [MQTT-3.2.2-4]", ErrProtocolViolation)
)

// DecodeAck decodes the body of PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK:
// a two-byte packet id. ParseFixedHeader already refuses another length;
// packet id 0 is ErrProtocolViolation [MQTT-2.3.1-1].
func DecodeAck(body []byte) (packetID uint16, err error) {
	if len(body) != 2 {
		return 0, errAckLength
	}
	id, _ := readUint16(body, 0)
	if id == 0 {
		return 0, errPacketIDZero
	}
	return id, nil
}

// AppendAck appends a PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK of t for
// packetID. PUBREL gets its mandatory 0b0010 flags [MQTT-3.6.1-1].
func AppendAck(dst []byte, t Type, packetID uint16) []byte {
	first := byte(t) << 4
	if t == TypePubrel {
		first |= 0x02
	}
	return append(dst, first, 2, byte(packetID>>8), byte(packetID))
}

// DecodeConnack decodes a CONNACK body (client side). Reserved acknowledge
// flag bits [MQTT-3.2.2.1], return codes above 5 (reserved) [MQTT-3.2.2.3]
// and session present on a refusal [MQTT-3.2.2-4] are ErrProtocolViolation.
func DecodeConnack(body []byte) (sessionPresent bool, code byte, err error) {
	if len(body) != 2 {
		return false, 0, errConnackLength
	}
	if body[0]&^0x01 != 0 {
		return false, 0, errConnackFlags
	}
	sessionPresent, code = body[0] == 1, body[1]
	if code > RefusedNotAuthorized {
		return false, 0, fmt.Errorf("%w: reserved CONNACK return code %d [MQTT-3.2.2.3]", ErrProtocolViolation, code)
	}
	if sessionPresent && code != Accepted {
		return false, 0, errConnackSessionRef
	}
	return sessionPresent, code, nil
}

// AppendConnack appends a CONNACK. The server must pass sessionPresent false
// with a non-zero code [MQTT-3.2.2-4].
func AppendConnack(dst []byte, sessionPresent bool, code byte) []byte {
	var flags byte
	if sessionPresent {
		flags = 1
	}
	return append(dst, byte(TypeConnack)<<4, 2, flags, code)
}

// AppendPingreq appends a PINGREQ [MQTT-3.12].
func AppendPingreq(dst []byte) []byte { return append(dst, byte(TypePingreq)<<4, 0) }

// AppendPingresp appends a PINGRESP [MQTT-3.13].
func AppendPingresp(dst []byte) []byte { return append(dst, byte(TypePingresp)<<4, 0) }

// AppendDisconnect appends a DISCONNECT [MQTT-3.14].
func AppendDisconnect(dst []byte) []byte { return append(dst, byte(TypeDisconnect)<<4, 0) }
