package mqtt

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// This file holds the raw-byte tables shared by the encode, decode, reader
// and fuzz tests (mochi-mqtt style): one list of valid packets with their
// decoded value, one list of malformed packets with the sentinel error they
// must produce. Case names cite reliability-cases.md IDs (A3...) or spec
// clauses.

// Decoded forms of the packets whose decoders return plain values.
type (
	ackPacket struct {
		Type Type
		ID   uint16
	}
	connackPacket struct {
		SessionPresent bool
		Code           byte
	}
	subscribePacket struct {
		ID   uint16
		Subs []Subscription
	}
	subackPacket struct {
		ID    uint16
		Codes []byte
	}
	unsubscribePacket struct {
		ID      uint16
		Filters [][]byte
	}
	emptyPacket struct{ Type Type } // PINGREQ, PINGRESP, DISCONNECT
)

type validCase struct {
	name string
	raw  string // hex; spaces are ignored
	want any
}

type malformedCase struct {
	name      string
	raw       string // hex; spaces are ignored
	maxPacket int    // 0: the protocol maximum
	want      error
}

// mustHex decodes a hex string with optional spaces. The tables are
// constants, so a typo is a bug in the test and may panic.
func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(fmt.Sprintf("bad hex %q: %v", s, err))
	}
	return b
}

// hexString encodes a string's bytes, for building table rows.
func hexString(s string) string { return hex.EncodeToString([]byte(s)) }

// field is a length-prefixed field in hex, built from hex content.
func field(contentHex string) string {
	content := mustHex(contentHex)
	return fmt.Sprintf("%04x %x", len(content), content)
}

// packet builds a whole packet in hex from its first byte and body.
func packet(first byte, bodyHex ...string) string {
	body := mustHex(strings.Join(bodyHex, ""))
	return hex.EncodeToString(appendHeader(nil, first, len(body))) + " " + hex.EncodeToString(body)
}

// connectRaw builds an MQTT 3.1.1 CONNECT with the given flags, keepalive 60
// and a hex payload.
func connectRaw(flags byte, payloadHex ...string) string {
	return packet(0x10, field(hexString("MQTT")), fmt.Sprintf("04 %02x 003c", flags), strings.Join(payloadHex, ""))
}

const u2A6D4 = "f0aa9b94" // U+2A6D4, a valid 4-byte character [MQTT-1.5.3] example

var validCases = []validCase{
	{"CONNECT minimal", "10 0e 0004 4d515454 04 02 003c 0002 6331",
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c1"}},
	{"CONNECT empty client id clean 0 (server decides, A11)", "10 0c 0004 4d515454 04 00 0000 0000",
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4}},
	{"CONNECT MQIsdp level 3", "10 10 0006 4d5149736470 03 02 000a 0002 6331",
		&Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanSession: true, KeepAlive: 10, ClientID: "c1"}},
	{"CONNECT will user password", "10 1f 0004 4d515454 04 ee 012c 0002 6964 0003 772f74 0003 627965 0001 75 0002 7040",
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 300, ClientID: "id",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "w/t", WillPayload: []byte("bye"),
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p@")}},
	{"CONNECT will QoS 2 empty message", "10 14 0004 4d515454 04 16 0000 0001 63 0003 612f62 0000",
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "c",
			WillFlag: true, WillQoS: 2, WillTopic: "a/b"}},
	{"CONNECT U+2A6D4 in client id, will topic, user name (A12)",
		"10 1e 0004 4d515454 04 86 0000 0004 " + u2A6D4 + " 0004 " + u2A6D4 + " 0000 0004 " + u2A6D4,
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "\U0002A6D4",
			WillFlag: true, WillTopic: "\U0002A6D4", UsernameFlag: true, Username: "\U0002A6D4"}},
	{"CONNECT empty password", "10 12 0004 4d515454 04 c2 0000 0001 63 0001 75 0000",
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "c",
			UsernameFlag: true, Username: "u", PasswordFlag: true}},

	{"CONNACK accepted", "20 02 00 00", connackPacket{false, Accepted}},
	{"CONNACK session present", "20 02 01 00", connackPacket{true, Accepted}},
	{"CONNACK not authorized", "20 02 00 05", connackPacket{false, RefusedNotAuthorized}},

	{"PUBLISH QoS 0", "30 0a 0003 612f62 68656c6c6f",
		&Publish{Topic: []byte("a/b"), Payload: []byte("hello")}},
	{"PUBLISH QoS 1 dup retain", "3b 0a 0003 612f62 0007 68696a",
		&Publish{Dup: true, QoS: 1, Retain: true, Topic: []byte("a/b"), PacketID: 7, Payload: []byte("hij")}},
	{"PUBLISH QoS 2 id 65535", "34 07 0001 74 ffff 6f6b",
		&Publish{QoS: 2, Topic: []byte("t"), PacketID: 0xffff, Payload: []byte("ok")}},
	{"PUBLISH empty payload", "30 03 0001 74", &Publish{Topic: []byte("t")}},
	{"PUBLISH $foo/x is routed normally (A14)", "30 08 0006 24666f6f2f78", &Publish{Topic: []byte("$foo/x")}},
	{"PUBLISH U+2A6D4 topic (A12)", "30 06 0004 " + u2A6D4, &Publish{Topic: []byte("\U0002A6D4")}},
	{"PUBLISH two-byte remaining length", "30 cb01 0001 74 " + strings.Repeat("61", 200),
		&Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte("a"), 200)}},
	{"PUBLISH three-byte remaining length, larger than the Reader's resting buffer", "30 a39c01 0001 74 " + strings.Repeat("62", 20000),
		&Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte("b"), 20000)}},

	{"PUBACK", "40 02 0001", ackPacket{TypePuback, 1}},
	{"PUBREC", "50 02 1234", ackPacket{TypePubrec, 0x1234}},
	{"PUBREL", "62 02 0001", ackPacket{TypePubrel, 1}},
	{"PUBCOMP", "70 02 ffff", ackPacket{TypePubcomp, 0xffff}},

	{"SUBSCRIBE two filters", "82 0e 000a 0003 612f23 01 0003 2b2f78 02",
		subscribePacket{10, []Subscription{{[]byte("a/#"), 1}, {[]byte("+/x"), 2}}}},
	{"SUBSCRIBE misplaced wildcard is the server's call (A16)", "82 07 0001 0002 6123 00",
		subscribePacket{1, []Subscription{{[]byte("a#"), 0}}}},
	{"SUBSCRIBE U+2A6D4 filter", "82 09 0001 0004 " + u2A6D4 + " 00",
		subscribePacket{1, []Subscription{{[]byte("\U0002A6D4"), 0}}}},
	{"SUBACK", "90 05 000a 01 02 80", subackPacket{10, []byte{1, 2, SubackFailure}}},
	{"UNSUBSCRIBE", "a2 0a 000b 0003 612f23 0001 62", unsubscribePacket{11, [][]byte{[]byte("a/#"), []byte("b")}}},
	{"UNSUBACK", "b0 02 000b", ackPacket{TypeUnsuback, 11}},

	{"PINGREQ", "c0 00", emptyPacket{TypePingreq}},
	{"PINGRESP", "d0 00", emptyPacket{TypePingresp}},
	{"DISCONNECT", "e0 00", emptyPacket{TypeDisconnect}},
}

// invalidStrings are the ill-formed MQTT UTF-8 encodings of A12.
var invalidStrings = []struct{ name, hex string }{
	{"U+0000", "00"},
	{"U+0000 inside", "6100 62"},
	{"surrogate U+D800", "eda080"},
	{"overlong NUL", "c080"},
	{"overlong slash", "c0af"},
	{"cut 3-byte", "e282"},
	{"cut 4-byte", "f0aa9b"},
	{"lone continuation", "80"},
	{"above U+10FFFF", "f4908080"},
	{"U+0000 after a multibyte character", "c3a9 00"},
}

var malformedCases = append([]malformedCase{
	// Fixed header.
	{"type 0", "00 00", 0, ErrProtocolViolation},
	{"type 15", "f0 00", 0, ErrProtocolViolation},
	{"A3 CONNECT RL = max+1, body withheld", "10 e907", 1000, ErrPacketTooLarge},
	{"A3 PUBLISH RL 129 above max 128", "30 8101", 128, ErrPacketTooLarge},
	{"A4 RL with 5 bytes", "10 ffffffff7f", 0, ErrMalformed},
	{"A4 RL with 5 bytes, PUBLISH", "30 8080808001", 0, ErrMalformed},
	{"A5 PUBLISH RL shorter than topic", "30 02 0040" + strings.Repeat("61", 64), 0, ErrMalformed},
	{"PUBLISH one-byte body", "30 01 00", 0, ErrMalformed},

	// A6 reserved flags [MQTT-2.2.2-2].
	{"A6 CONNECT flags 1", "11 00", 0, ErrProtocolViolation},
	{"A6 CONNECT flags 2", "12 00", 0, ErrProtocolViolation},
	{"A6 CONNECT flags 4", "14 00", 0, ErrProtocolViolation},
	{"A6 CONNECT flags 8", "18 00", 0, ErrProtocolViolation},
	{"A6 PUBREL flags 3", "63 02 0001", 0, ErrProtocolViolation},
	{"A6 PUBREL flags 4", "64 02 0001", 0, ErrProtocolViolation},
	{"A6 PUBREL flags 6", "66 02 0001", 0, ErrProtocolViolation},
	{"A6 PUBREL flags A", "6a 02 0001", 0, ErrProtocolViolation},
	{"A6 SUBSCRIBE flags 0", "80 06 0001 0001 61 00", 0, ErrProtocolViolation},
	{"A6 SUBSCRIBE flags 3", "83 06 0001 0001 61 00", 0, ErrProtocolViolation},
	{"A6 SUBSCRIBE flags 4", "84 06 0001 0001 61 00", 0, ErrProtocolViolation},
	{"A6 UNSUBSCRIBE flags 0", "a0 05 0001 0001 61", 0, ErrProtocolViolation},
	{"A6 PINGREQ flags 1", "c1 00", 0, ErrProtocolViolation},
	{"A6 DISCONNECT flags 1", "e1 00", 0, ErrProtocolViolation},
	{"A6 PUBACK flags 1", "41 02 0001", 0, ErrProtocolViolation},
	{"A6 CONNACK flags 1", "21 02 0000", 0, ErrProtocolViolation},

	// A7 fixed-length packets with the wrong remaining length.
	{"A7 PINGREQ RL 1", "c0 01 00", 0, ErrMalformed},
	{"A7 DISCONNECT RL 1", "e0 01 00", 0, ErrMalformed},
	{"A7 PUBACK RL 3", "40 03 0001 00", 0, ErrMalformed},
	{"A7 PUBREL RL 0", "62 00", 0, ErrMalformed},
	{"A7 PUBREL RL 1", "62 01 01", 0, ErrMalformed},
	{"A7 PUBREC RL 0", "50 00", 0, ErrMalformed},
	{"A7 PUBCOMP RL 3", "70 03 000100", 0, ErrMalformed},

	// A19 server-only types as a client would send them.
	{"A19 CONNACK with properties (CVE-2021-28166)", "20 03 00 00 00", 0, ErrMalformed},
	{"A19 CONNACK reserved ack flags", "20 02 02 00", 0, ErrProtocolViolation},
	{"A19 CONNACK reserved return code", "20 02 00 06", 0, ErrProtocolViolation},
	{"CONNACK session present on refusal [MQTT-3.2.2-4]", "20 02 01 05", 0, ErrProtocolViolation},
	{"A19 SUBACK RL 0", "90 00", 0, ErrMalformed},
	{"SUBACK without return codes", "90 02 0001", 0, ErrMalformed},
	{"SUBACK reserved return code [MQTT-3.9.3-2]", "90 03 0001 03", 0, ErrProtocolViolation},
	{"SUBACK packet id 0", "90 03 0000 00", 0, ErrProtocolViolation},
	{"A19 UNSUBACK RL 0", "b0 00", 0, ErrMalformed},
	{"A19 PINGRESP RL 1", "d0 01 00", 0, ErrMalformed},

	// CONNECT variable header.
	{"CONNECT empty body", "10 00", 0, ErrMalformed},
	{"CONNECT cut inside protocol name", "10 03 0004 4d", 0, ErrMalformed},
	{"CONNECT without level", "10 06 0004 4d515454", 0, ErrMalformed},
	{"CONNECT without keepalive", "10 08 0004 4d515454 04 02", 0, ErrMalformed},
	{"A8 protocol name MQTU", "10 0e 0004 4d515455 04 02 003c 0002 6331", 0, ErrProtocolViolation},
	{"A8 protocol name MQT", "10 0d 0003 4d5154 04 02 003c 0002 6331", 0, ErrProtocolViolation},
	{"A8 protocol name empty", "10 0a 0000 04 02 003c 0002 6331", 0, ErrProtocolViolation},
	{"A8 protocol name MQTTT", "10 0f 0005 4d51545454 04 02 003c 0002 6331", 0, ErrProtocolViolation},
	{"A8 protocol name mqtt (case matters)", "10 0e 0004 6d717474 04 02 003c 0002 6331", 0, ErrProtocolViolation},
	{"A9 MQTT level 2", "10 0e 0004 4d515454 02 02 003c 0002 6331", 0, ErrUnsupportedProtocolLevel},
	{"A9 MQTT level 6", "10 0e 0004 4d515454 06 02 003c 0002 6331", 0, ErrUnsupportedProtocolLevel},
	{"A9 MQTT 5 with properties", "10 0f 0004 4d515454 05 02 003c 00 0002 6331", 0, ErrUnsupportedProtocolLevel},
	{"A9 MQTT level 3", "10 0e 0004 4d515454 03 02 003c 0002 6331", 0, ErrUnsupportedProtocolLevel},
	{"A9 MQIsdp level 4", "10 10 0006 4d5149736470 04 02 000a 0002 6331", 0, ErrUnsupportedProtocolLevel},
	{"A9 level only, nothing after", "10 07 0004 4d515454 05", 0, ErrUnsupportedProtocolLevel},

	// A10 CONNECT flags, A11 client id.
	{"A10 reserved flag", connectRaw(0x03, field("6331")), 0, ErrProtocolViolation},
	{"A10 will QoS 1 without will flag", connectRaw(0x0a, field("6331")), 0, ErrProtocolViolation},
	{"A10 will QoS 2 without will flag", connectRaw(0x12, field("6331")), 0, ErrProtocolViolation},
	{"A10 will retain without will flag", connectRaw(0x22, field("6331")), 0, ErrProtocolViolation},
	{"A10 will QoS 3", connectRaw(0x1e, field("6331"), field("74"), field("")), 0, ErrProtocolViolation},
	{"A10 will flag without topic", connectRaw(0x06, field("6331")), 0, ErrMalformed},
	{"A10 will flag without message", connectRaw(0x06, field("6331"), field("74")), 0, ErrMalformed},
	{"A10 will topic empty", connectRaw(0x06, field("6331"), field(""), field("")), 0, ErrProtocolViolation},
	{"A10 will topic with wildcard", connectRaw(0x06, field("6331"), field("612f23"), field("")), 0, ErrProtocolViolation},
	{"A10 password without user name", connectRaw(0x42, field("6331"), field("70")), 0, ErrProtocolViolation},
	{"A10 user name flag without field", connectRaw(0x82, field("6331")), 0, ErrMalformed},
	{"A10 password flag without field", connectRaw(0xc2, field("6331"), field("75")), 0, ErrMalformed},
	{"CONNECT trailing byte", connectRaw(0x02, field("6331"), "00"), 0, ErrMalformed},
	{"A11 client id field missing", connectRaw(0x02), 0, ErrMalformed},
	{"A11 client id cut short", connectRaw(0x02, "0005 63"), 0, ErrMalformed},

	// A13 PUBLISH flags and packet id.
	{"A13 PUBLISH QoS 3", "36 05 0001 74 0001", 0, ErrProtocolViolation},
	{"A13 PUBLISH QoS 3 dup retain", "3f 05 0001 74 0001", 0, ErrProtocolViolation},
	{"A13 PUBLISH QoS 1 packet id 0", "32 05 0001 74 0000", 0, ErrProtocolViolation},
	{"A13 PUBLISH QoS 2 packet id 0", "34 05 0001 74 0000", 0, ErrProtocolViolation},
	{"A13 PUBLISH QoS 0 with DUP", "38 03 0001 74", 0, ErrProtocolViolation},
	{"PUBLISH QoS 1 without packet id", "32 03 0001 74", 0, ErrMalformed},
	{"PUBLISH QoS 1 half a packet id", "32 04 0001 74 00", 0, ErrMalformed},

	// A14 PUBLISH topics.
	{"A14 PUBLISH topic length 0", "30 02 0000", 0, ErrProtocolViolation},
	{"A14 PUBLISH topic with +", "30 05 0003 612f2b", 0, ErrProtocolViolation},
	{"A14 PUBLISH topic with #", "30 05 0003 612f23", 0, ErrProtocolViolation},
	{"A14 PUBLISH topic #", "30 03 0001 23", 0, ErrProtocolViolation},
	{"A14 PUBLISH wildcard after multibyte", "30 07 0005 " + u2A6D4 + "2b", 0, ErrProtocolViolation},

	// A15 SUBSCRIBE.
	{"A15 SUBSCRIBE 0 bytes", "82 00", 0, ErrMalformed},
	{"A15 SUBSCRIBE 1 byte", "82 01 00", 0, ErrMalformed},
	{"A15 SUBSCRIBE no filters", "82 02 0001", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE 3 bytes", "82 03 0001 00", 0, ErrMalformed},
	{"A15 SUBSCRIBE 4 bytes", "82 04 0001 0001", 0, ErrMalformed},
	{"A15 SUBSCRIBE missing QoS byte", "82 05 0001 0001 61", 0, ErrMalformed},
	{"A15 SUBSCRIBE filter length 0", "82 05 0001 0000 00", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS 3", "82 06 0001 0001 61 03", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 04", "82 06 0001 0001 61 04", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 08", "82 06 0001 0001 61 08", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 10", "82 06 0001 0001 61 10", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 20", "82 06 0001 0001 61 20", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 40", "82 06 0001 0001 61 40", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE QoS bit 80", "82 06 0001 0001 61 80", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE packet id 0", "82 06 0000 0001 61 00", 0, ErrProtocolViolation},
	{"A15 SUBSCRIBE second filter cut", "82 08 0001 0001 61 00 0005", 0, ErrMalformed},

	// A17 UNSUBSCRIBE.
	{"A17 UNSUBSCRIBE 0 bytes", "a2 00", 0, ErrMalformed},
	{"A17 UNSUBSCRIBE 1 byte", "a2 01 00", 0, ErrMalformed},
	{"A17 UNSUBSCRIBE no filters", "a2 02 0001", 0, ErrProtocolViolation},
	{"A17 UNSUBSCRIBE 3 bytes", "a2 03 0001 00", 0, ErrMalformed},
	{"A17 UNSUBSCRIBE 4 bytes", "a2 04 0001 0001", 0, ErrMalformed},
	{"A17 UNSUBSCRIBE filter length 0", "a2 04 0001 0000", 0, ErrProtocolViolation},
	{"A17 UNSUBSCRIBE packet id 0", "a2 05 0000 0001 61", 0, ErrProtocolViolation},

	// Acknowledgements with packet id 0 [MQTT-2.3.1-1].
	{"PUBACK packet id 0", "40 02 0000", 0, ErrProtocolViolation},
	{"PUBREL packet id 0", "62 02 0000", 0, ErrProtocolViolation},
	{"UNSUBACK packet id 0", "b0 02 0000", 0, ErrProtocolViolation},
}, invalidStringCases()...)

// invalidStringCases puts every A12 encoding into every string field that
// must be MQTT UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.3-2].
func invalidStringCases() []malformedCase {
	var cases []malformedCase
	for _, s := range invalidStrings {
		for _, c := range []struct{ where, raw string }{
			{"client id", connectRaw(0x02, field(s.hex))},
			{"will topic", connectRaw(0x06, field("63"), field(s.hex), field(""))},
			{"user name", connectRaw(0x82, field("63"), field(s.hex))},
			{"PUBLISH topic", packet(0x30, field(s.hex), "7061796c6f6164")},
			{"SUBSCRIBE filter", packet(0x82, "0001", field(s.hex), "00")},
			{"UNSUBSCRIBE filter", packet(0xa2, "0001", field(s.hex))},
		} {
			cases = append(cases, malformedCase{"A12 " + s.name + " in " + c.where, c.raw, 0, ErrMalformed})
		}
	}
	return cases
}

// decodePacket decodes the first packet in buf with the package's decoders
// and returns its decoded form and size.
func decodePacket(buf []byte, maxPacket int) (v any, size int, err error) {
	h, err := ParseFixedHeader(buf, maxPacket)
	if err != nil {
		return nil, 0, err
	}
	size = h.Size + h.Remaining
	if len(buf) < size {
		return nil, 0, io.ErrUnexpectedEOF
	}
	v, err = decodeBody(h, buf[h.Size:size])
	return v, size, err
}

// decodeBody dispatches a body to the decoder for its type, the way the
// broker and the client do.
func decodeBody(h FixedHeader, body []byte) (any, error) {
	switch h.Type {
	case TypeConnect:
		c := new(Connect)
		err := DecodeConnect(body, c)
		return c, err
	case TypeConnack:
		sp, code, err := DecodeConnack(body)
		return connackPacket{sp, code}, err
	case TypePublish:
		p := new(Publish)
		err := DecodePublish(h.Flags, body, p)
		return p, err
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp, TypeUnsuback:
		id, err := DecodeAck(body)
		return ackPacket{h.Type, id}, err
	case TypeSubscribe:
		id, subs, err := DecodeSubscribe(body, nil)
		return subscribePacket{id, subs}, err
	case TypeSuback:
		id, codes, err := DecodeSuback(body, nil)
		return subackPacket{id, codes}, err
	case TypeUnsubscribe:
		id, filters, err := DecodeUnsubscribe(body, nil)
		return unsubscribePacket{id, filters}, err
	case TypePingreq, TypePingresp, TypeDisconnect:
		return emptyPacket{h.Type}, nil
	}
	return nil, fmt.Errorf("ParseFixedHeader let type %d through", h.Type)
}

// encodePacket encodes a decoded form with the package's encoders.
func encodePacket(v any) []byte {
	switch p := v.(type) {
	case *Connect:
		return p.AppendTo(nil)
	case connackPacket:
		return AppendConnack(nil, p.SessionPresent, p.Code)
	case *Publish:
		return p.AppendTo(nil)
	case ackPacket:
		return AppendAck(nil, p.Type, p.ID)
	case subscribePacket:
		return AppendSubscribe(nil, p.ID, p.Subs)
	case subackPacket:
		return AppendSuback(nil, p.ID, p.Codes)
	case unsubscribePacket:
		return AppendUnsubscribe(nil, p.ID, p.Filters)
	case emptyPacket:
		switch p.Type {
		case TypePingreq:
			return AppendPingreq(nil)
		case TypePingresp:
			return AppendPingresp(nil)
		case TypeDisconnect:
			return AppendDisconnect(nil)
		}
	}
	panic(fmt.Sprintf("encodePacket: unexpected %T", v))
}

// canonical re-frames a packet with the minimal remaining-length encoding,
// which is what the encoders produce; ParseFixedHeader also accepts padded
// lengths [MQTT-2.2.3].
func canonical(raw []byte) []byte {
	h, err := ParseFixedHeader(raw, 0)
	if err != nil {
		panic(err)
	}
	out := appendHeader(nil, raw[0], h.Remaining)
	return append(out, raw[h.Size:h.Size+h.Remaining]...)
}

// normalize maps empty byte slices to nil so that decoded values compare
// with table values regardless of how an empty field was spelled.
func normalize(v any) any {
	orNil := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	switch p := v.(type) {
	case *Connect:
		c := *p
		c.WillPayload, c.Password = orNil(c.WillPayload), orNil(c.Password)
		return &c
	case *Publish:
		c := *p
		c.Topic, c.Payload = orNil(c.Topic), orNil(c.Payload)
		return &c
	case subackPacket:
		p.Codes = orNil(p.Codes)
		return p
	}
	return v
}
