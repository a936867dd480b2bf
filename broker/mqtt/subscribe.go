package mqtt

import "fmt"

var (
	errNoFilters        = fmt.Errorf("%w: SUBSCRIBE without a topic filter [MQTT-3.8.3-3]", ErrProtocolViolation)
	errNoUnsubFilters   = fmt.Errorf("%w: UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]", ErrProtocolViolation)
	errEmptyFilter      = fmt.Errorf("%w: zero-length topic filter [MQTT-4.7.3-1]", ErrProtocolViolation)
	errMissingQoS       = fmt.Errorf("%w: topic filter without its requested QoS byte [MQTT-3.8.3-1]", ErrMalformed)
	errRequestedQoS     = fmt.Errorf("%w: requested QoS above 2 or reserved bits set [MQTT-3.8.3-4]", ErrProtocolViolation)
	errNoReturnCodes    = fmt.Errorf("%w: SUBACK without a return code [MQTT-3.9.3]", ErrMalformed)
	errReservedSubackRC = fmt.Errorf("%w: reserved SUBACK return code [MQTT-3.9.3-2]", ErrProtocolViolation)
)

// Subscription is one topic filter of a SUBSCRIBE with its requested QoS
// [MQTT-3.8.3].
type Subscription struct {
	Filter []byte // aliases the decoded body
	QoS    byte
}

// DecodeSubscribe decodes a SUBSCRIBE body, appending the filters to dst
// (pass a reused dst[:0] to avoid allocating). Filters alias body.
//
// Errors: packet id 0 [MQTT-2.3.1-1], no filter [MQTT-3.8.3-3], a
// zero-length filter [MQTT-4.7.3-1], a requested-QoS byte above 2 or with
// reserved bits [MQTT-3.8.3-4] (ErrProtocolViolation); a body cut short, a
// missing QoS byte, ill-formed UTF-8 or U+0000 in a filter [MQTT-1.5.3-1]
// [MQTT-1.5.3-2] (ErrMalformed). Wildcard placement is not judged here: the
// server answers SubackFailure for that one filter [MQTT-4.7.1].
//
// On error subs holds the filters decoded before the bad one, so that its
// capacity can be reused.
func DecodeSubscribe(body []byte, dst []Subscription) (packetID uint16, subs []Subscription, err error) {
	subs = dst
	id, ok := readUint16(body, 0)
	if !ok {
		return 0, subs, errMissingPacketID
	}
	if id == 0 {
		return 0, subs, errPacketIDZero
	}
	off := 2
	if off == len(body) {
		return 0, subs, errNoFilters
	}
	for off < len(body) {
		filter, next, err := readFilter(body, off)
		if err != nil {
			return 0, subs, err
		}
		if next == len(body) {
			return 0, subs, errMissingQoS
		}
		qos := body[next]
		if qos > 2 {
			return 0, subs, errRequestedQoS
		}
		subs = append(subs, Subscription{Filter: filter, QoS: qos})
		off = next + 1
	}
	return id, subs, nil
}

// readFilter reads one topic filter at off: present, non-empty
// [MQTT-4.7.3-1], valid MQTT UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.3-2].
func readFilter(body []byte, off int) (filter []byte, next int, err error) {
	filter, next, err = readField(body, off)
	if err != nil {
		return nil, off, err
	}
	if len(filter) == 0 {
		return nil, off, errEmptyFilter
	}
	if !ValidUTF8(filter) {
		return nil, off, errInvalidUTF8
	}
	return filter, next, nil
}

// AppendSubscribe appends a SUBSCRIBE (client side) for subs; each filter
// must be at most 65535 bytes and subs must not be empty [MQTT-3.8.3-3].
func AppendSubscribe(dst []byte, packetID uint16, subs []Subscription) []byte {
	rl := 2
	for _, s := range subs {
		rl += 2 + len(s.Filter) + 1
	}
	dst = appendHeader(dst, byte(TypeSubscribe)<<4|0x02, rl) // [MQTT-3.8.1-1]
	dst = append(dst, byte(packetID>>8), byte(packetID))
	for _, s := range subs {
		dst = appendString(dst, s.Filter)
		dst = append(dst, s.QoS)
	}
	return dst
}

// DecodeSuback decodes a SUBACK body (client side), appending the return
// codes to dst. Codes other than 0, 1, 2 and SubackFailure are reserved
// [MQTT-3.9.3-2] (ErrProtocolViolation).
func DecodeSuback(body []byte, dst []byte) (packetID uint16, codes []byte, err error) {
	codes = dst
	id, ok := readUint16(body, 0)
	if !ok {
		return 0, codes, errMissingPacketID
	}
	if id == 0 {
		return 0, codes, errPacketIDZero
	}
	rest := body[2:]
	if len(rest) == 0 {
		return 0, codes, errNoReturnCodes
	}
	for _, c := range rest {
		if c > 2 && c != SubackFailure {
			return 0, codes, errReservedSubackRC
		}
	}
	return id, append(codes, rest...), nil
}

// AppendSuback appends a SUBACK with one return code per filter of the
// SUBSCRIBE, in order [MQTT-3.8.4-5] [MQTT-3.9.3-1].
func AppendSuback(dst []byte, packetID uint16, codes []byte) []byte {
	dst = appendHeader(dst, byte(TypeSuback)<<4, 2+len(codes))
	dst = append(dst, byte(packetID>>8), byte(packetID))
	return append(dst, codes...)
}

// DecodeUnsubscribe decodes an UNSUBSCRIBE body, appending the filters
// (aliasing body) to dst. Errors as DecodeSubscribe; no filter is
// ErrProtocolViolation [MQTT-3.10.3-2].
func DecodeUnsubscribe(body []byte, dst [][]byte) (packetID uint16, filters [][]byte, err error) {
	filters = dst
	id, ok := readUint16(body, 0)
	if !ok {
		return 0, filters, errMissingPacketID
	}
	if id == 0 {
		return 0, filters, errPacketIDZero
	}
	off := 2
	if off == len(body) {
		return 0, filters, errNoUnsubFilters
	}
	for off < len(body) {
		filter, next, err := readFilter(body, off)
		if err != nil {
			return 0, filters, err
		}
		filters = append(filters, filter)
		off = next
	}
	return id, filters, nil
}

// AppendUnsubscribe appends an UNSUBSCRIBE (client side); filters must not
// be empty [MQTT-3.10.3-2].
func AppendUnsubscribe(dst []byte, packetID uint16, filters [][]byte) []byte {
	rl := 2
	for _, f := range filters {
		rl += 2 + len(f)
	}
	dst = appendHeader(dst, byte(TypeUnsubscribe)<<4|0x02, rl) // [MQTT-3.10.1-1]
	dst = append(dst, byte(packetID>>8), byte(packetID))
	for _, f := range filters {
		dst = appendString(dst, f)
	}
	return dst
}
