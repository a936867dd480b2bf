package mqtt

import (
	"bytes"
	"fmt"
)

// Protocol names and levels this codec speaks [MQTT-3.1.2.1] [MQTT-3.1.2.2].
// "MQIsdp" level 3 is MQTT 3.1, whose CONNECT layout 3.1.1 kept.
const (
	ProtocolName         = "MQTT"
	ProtocolLevel   byte = 4
	ProtocolName31       = "MQIsdp"
	ProtocolLevel31 byte = 3
)

// CONNECT flag bits [MQTT-3.1.2.3].
const (
	connectReserved    = 0x01
	connectClean       = 0x02
	connectWill        = 0x04
	connectWillQoSMask = 0x18
	connectWillRetain  = 0x20
	connectPassword    = 0x40
	connectUsername    = 0x80
)

var (
	errConnectReserved     = fmt.Errorf("%w: CONNECT reserved flag set [MQTT-3.1.2-3]", ErrProtocolViolation)
	errConnectWillFlags    = fmt.Errorf("%w: will QoS or retain without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]", ErrProtocolViolation)
	errConnectWillQoS3     = fmt.Errorf("%w: will QoS 3 [MQTT-3.1.2-14]", ErrProtocolViolation)
	errConnectPasswordOnly = fmt.Errorf("%w: password flag without the user name flag [MQTT-3.1.2-22]", ErrProtocolViolation)
	errConnectHeader       = fmt.Errorf("%w: CONNECT variable header cut short [MQTT-3.1.2]", ErrMalformed)
)

// Connect is a CONNECT packet [MQTT-3.1]. Every field is a copy: a session
// keeps them long after the read buffer is reused.
type Connect struct {
	ProtocolName  string
	ProtocolLevel byte
	CleanSession  bool
	KeepAlive     uint16 // seconds
	ClientID      string
	WillFlag      bool
	WillQoS       byte
	WillRetain    bool
	WillTopic     string
	WillPayload   []byte // copied: it outlives the read buffer
	UsernameFlag  bool
	Username      string
	PasswordFlag  bool
	Password      []byte // copied
}

// DecodeConnect decodes a CONNECT body into c, which it resets first.
//
// A protocol name other than "MQTT" or "MQIsdp" is ErrProtocolViolation
// [MQTT-3.1.2-1]. A level other than 4 ("MQTT") or 3 ("MQIsdp") is
// ErrUnsupportedProtocolLevel, returned as soon as the level is read with
// ProtocolName and ProtocolLevel filled in, so that the server can answer
// CONNACK RefusedProtocolVersion [MQTT-3.1.2-2]; the rest of such a packet
// follows another specification and is not read.
//
// ErrProtocolViolation: reserved flag set [MQTT-3.1.2-3]; will QoS or retain
// without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]; will
// QoS 3 [MQTT-3.1.2-14]; password flag without user name flag
// [MQTT-3.1.2-22]; an empty or wildcard will topic [MQTT-4.7.3-1]
// [MQTT-3.3.2-2] (the will is published under it).
//
// ErrMalformed: a missing field [MQTT-3.1.2-9] [MQTT-3.1.2-19]
// [MQTT-3.1.2-21] [MQTT-3.1.3-3], bytes after the last field, and ill-formed
// UTF-8 or U+0000 in the client id, will topic or user name [MQTT-1.5.3-1]
// [MQTT-1.5.3-2] [MQTT-3.1.3-4] [MQTT-3.1.3-10] [MQTT-3.1.3-11].
//
// The client id rules (empty id with clean session 0, length, characters)
// are the server's to judge [MQTT-3.1.3-8].
func DecodeConnect(body []byte, c *Connect) error {
	*c = Connect{}
	name, off, err := readField(body, 0)
	if err != nil {
		return inField("protocol name", err)
	}
	// The switch on string(name) compiles to a comparison, not a conversion,
	// and the constants keep the decoded name from allocating.
	switch string(name) {
	case ProtocolName:
		c.ProtocolName = ProtocolName
	case ProtocolName31:
		c.ProtocolName = ProtocolName31
	default:
		return fmt.Errorf("%w: protocol name %q [MQTT-3.1.2-1]", ErrProtocolViolation, name)
	}
	if off == len(body) {
		return errConnectHeader
	}
	c.ProtocolLevel = body[off]
	off++
	if !supportedLevel(c.ProtocolName, c.ProtocolLevel) {
		return fmt.Errorf("%w: %s level %d [MQTT-3.1.2-2]", ErrUnsupportedProtocolLevel, c.ProtocolName, c.ProtocolLevel)
	}

	if len(body)-off < 3 {
		return errConnectHeader
	}
	flags := body[off]
	c.KeepAlive, _ = readUint16(body, off+1)
	off += 3
	if flags&connectReserved != 0 {
		return errConnectReserved
	}
	c.CleanSession = flags&connectClean != 0
	c.WillFlag = flags&connectWill != 0
	c.WillQoS = flags & connectWillQoSMask >> 3
	c.WillRetain = flags&connectWillRetain != 0
	c.PasswordFlag = flags&connectPassword != 0
	c.UsernameFlag = flags&connectUsername != 0
	if !c.WillFlag && (c.WillQoS != 0 || c.WillRetain) {
		return errConnectWillFlags
	}
	if c.WillQoS == 3 {
		return errConnectWillQoS3
	}
	if c.PasswordFlag && !c.UsernameFlag {
		return errConnectPasswordOnly
	}

	// Payload fields appear in this order, each present iff its flag is set
	// [MQTT-3.1.3-1].
	field, off, err := readField(body, off)
	if err != nil {
		return inField("client id", err) // [MQTT-3.1.3-3]
	}
	if !ValidUTF8(field) {
		return inField("client id", errInvalidUTF8) // [MQTT-3.1.3-4]
	}
	c.ClientID = string(field)

	if c.WillFlag {
		if field, off, err = readField(body, off); err != nil {
			return inField("will topic", err) // [MQTT-3.1.2-9]
		}
		if err := checkTopicName(field); err != nil {
			return inField("will topic", err) // [MQTT-3.1.3-10]
		}
		c.WillTopic = string(field)
		if field, off, err = readField(body, off); err != nil {
			return inField("will message", err) // [MQTT-3.1.2-9]
		}
		// Clone keeps a present but empty message non-nil, unlike an absent one.
		c.WillPayload = bytes.Clone(field)
	}
	if c.UsernameFlag {
		if field, off, err = readField(body, off); err != nil {
			return inField("user name", err) // [MQTT-3.1.2-19]
		}
		if !ValidUTF8(field) {
			return inField("user name", errInvalidUTF8) // [MQTT-3.1.3-11]
		}
		c.Username = string(field)
	}
	if c.PasswordFlag {
		if field, off, err = readField(body, off); err != nil {
			return inField("password", err) // [MQTT-3.1.2-21]
		}
		c.Password = bytes.Clone(field)
	}
	if off != len(body) {
		return errTrailingBytes
	}
	return nil
}

// inField names the CONNECT field an error is about.
func inField(name string, err error) error {
	return fmt.Errorf("%w (in %s)", err, name)
}

func supportedLevel(name string, level byte) bool {
	return name == ProtocolName && level == ProtocolLevel ||
		name == ProtocolName31 && level == ProtocolLevel31
}

// wire returns the protocol name, level and flags byte AppendTo writes. An
// empty name or zero level means MQTT 3.1.1; a non-empty will topic, user
// name or password counts as its flag being set, so a caller cannot lose a
// field by forgetting the flag.
func (c *Connect) wire() (name string, level, flags byte) {
	name, level = c.ProtocolName, c.ProtocolLevel
	if name == "" {
		name = ProtocolName
	}
	if level == 0 {
		level = ProtocolLevel
		if name == ProtocolName31 {
			level = ProtocolLevel31
		}
	}
	if c.CleanSession {
		flags |= connectClean
	}
	if c.WillFlag || c.WillTopic != "" {
		flags |= connectWill
	}
	flags |= (c.WillQoS & 3) << 3
	if c.WillRetain {
		flags |= connectWillRetain
	}
	if c.UsernameFlag || c.Username != "" {
		flags |= connectUsername
	}
	if c.PasswordFlag || len(c.Password) > 0 {
		flags |= connectPassword
	}
	return name, level, flags
}

func (c *Connect) remaining() int {
	name, _, flags := c.wire()
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if flags&connectWill != 0 {
		n += 2 + len(c.WillTopic) + 2 + len(c.WillPayload)
	}
	if flags&connectUsername != 0 {
		n += 2 + len(c.Username)
	}
	if flags&connectPassword != 0 {
		n += 2 + len(c.Password)
	}
	return n
}

// Size returns the total encoded size of c including the fixed header.
func (c *Connect) Size() int {
	rl := c.remaining()
	return 1 + varintLen(rl) + rl
}

// AppendTo appends the encoding of c to dst (client side). c should pass
// Validate; AppendTo does not check it.
func (c *Connect) AppendTo(dst []byte) []byte {
	name, level, flags := c.wire()
	dst = appendHeader(dst, byte(TypeConnect)<<4, c.remaining())
	dst = appendString(dst, name)
	dst = append(dst, level, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
	dst = appendString(dst, c.ClientID)
	if flags&connectWill != 0 {
		dst = appendString(dst, c.WillTopic)
		dst = appendString(dst, c.WillPayload)
	}
	if flags&connectUsername != 0 {
		dst = appendString(dst, c.Username)
	}
	if flags&connectPassword != 0 {
		dst = appendString(dst, c.Password)
	}
	return dst
}

// Validate reports whether c can be sent: every field fits its two-byte
// length prefix and the encoding passes DecodeConnect, so a client refuses
// locally what a server would refuse on the wire.
func (c *Connect) Validate() error {
	for _, f := range [...]struct {
		name string
		n    int
	}{
		{"protocol name", len(c.ProtocolName)},
		{"client id", len(c.ClientID)},
		{"will topic", len(c.WillTopic)},
		{"will message", len(c.WillPayload)},
		{"user name", len(c.Username)},
		{"password", len(c.Password)},
	} {
		if f.n > maxStringLen {
			return fmt.Errorf("%w: %s of %d bytes, at most %d fit [MQTT-1.5.3]", ErrMalformed, f.name, f.n, maxStringLen)
		}
	}
	buf := c.AppendTo(nil)
	h, err := ParseFixedHeader(buf, 0)
	if err != nil {
		return err
	}
	var decoded Connect
	return DecodeConnect(buf[h.Size:], &decoded)
}
