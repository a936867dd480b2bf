package mqtt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// sentinels lists every error class so a test can check that an error
// wraps exactly the expected one.
var sentinels = []error{ErrMalformed, ErrProtocolViolation, ErrPacketTooLarge, ErrUnsupportedProtocolLevel}

func requireSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v wraps %v as well as %v", err, s, want)
		}
	}
}

func TestDecodeValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustHex(tc.raw)
			got, size, err := decodePacket(raw, 0)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if size != len(raw) {
				t.Fatalf("packet size %d, want %d", size, len(raw))
			}
			if g, w := normalize(got), normalize(tc.want); !reflect.DeepEqual(g, w) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", g, w)
			}
		})
	}
}

func TestEncodeValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustHex(tc.raw)
			if got := encodePacket(tc.want); !bytes.Equal(got, raw) {
				t.Fatalf("encoded\n% x\nwant\n% x", got, raw)
			}
			// Encoders append: existing bytes in dst stay.
			switch p := tc.want.(type) {
			case *Publish:
				if p.Size() != len(raw) {
					t.Fatalf("Size() = %d, want %d", p.Size(), len(raw))
				}
				if err := p.Validate(); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if got := p.AppendTo([]byte("xy")); !bytes.Equal(got[2:], raw) || string(got[:2]) != "xy" {
					t.Fatalf("AppendTo does not append: % x", got)
				}
			case *Connect:
				if p.Size() != len(raw) {
					t.Fatalf("Size() = %d, want %d", p.Size(), len(raw))
				}
				if err := p.Validate(); err != nil {
					t.Fatalf("Validate: %v", err)
				}
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	if len(malformedCases) < 45 {
		t.Fatalf("only %d malformed cases", len(malformedCases))
	}
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodePacket(mustHex(tc.raw), tc.maxPacket)
			requireSentinel(t, err, tc.want)
		})
	}
}

func TestDecodeConnectUnsupportedLevelKeepsVersion(t *testing.T) {
	// [MQTT-3.1.2-2]: the server needs name and level to answer CONNACK 1.
	for _, tc := range []struct {
		raw   string
		name  string
		level byte
	}{
		{"0004 4d515454 05 02 003c 00 0002 6331", "MQTT", 5},
		{"0006 4d5149736470 04 02 000a 0002 6331", "MQIsdp", 4},
		{"0004 4d515454 02", "MQTT", 2},
	} {
		var c Connect
		err := DecodeConnect(mustHex(tc.raw), &c)
		requireSentinel(t, err, ErrUnsupportedProtocolLevel)
		if c.ProtocolName != tc.name || c.ProtocolLevel != tc.level {
			t.Errorf("%s: decoded %q level %d, want %q level %d", tc.raw, c.ProtocolName, c.ProtocolLevel, tc.name, tc.level)
		}
	}
}

func TestDecodeConnectCopies(t *testing.T) {
	raw := mustHex(validCases[3].raw) // CONNECT will user password
	h, err := ParseFixedHeader(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	var c Connect
	if err := DecodeConnect(raw[h.Size:], &c); err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = 0xee // the read buffer is reused
	}
	if string(c.WillPayload) != "bye" || string(c.Password) != "p@" || c.ClientID != "id" || c.WillTopic != "w/t" || c.Username != "u" {
		t.Fatalf("decoded fields alias the buffer: %+v", c)
	}
}

func TestDecodeConnectResets(t *testing.T) {
	c := Connect{Username: "stale", Password: []byte("stale"), WillFlag: true}
	if err := DecodeConnect(mustHex("0004 4d515454 04 02 0000 0001 63"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Username != "" || c.Password != nil || c.WillFlag {
		t.Fatalf("fields of the previous value survive: %+v", c)
	}
}

// TestFirstByteRL0 pins what each first byte of A1 gives with RL 0 at codec
// level; refusing a non-CONNECT first packet is the broker's job.
func TestFirstByteRL0(t *testing.T) {
	for _, tc := range []struct {
		first      byte
		headerErr  error // from ParseFixedHeader
		decodeFail bool  // header fine, body refused
	}{
		{0x00, ErrProtocolViolation, false},
		{0x10, nil, true}, // CONNECT without a protocol name
		{0x20, ErrMalformed, false},
		{0x30, nil, true}, // PUBLISH without a topic
		{0x40, ErrMalformed, false},
		{0x50, ErrMalformed, false},
		{0x60, ErrProtocolViolation, false},
		{0x70, ErrMalformed, false},
		{0x80, ErrProtocolViolation, false},
		{0x90, nil, true}, // SUBACK without a packet id
		{0xa0, ErrProtocolViolation, false},
		{0xb0, ErrMalformed, false},
		{0xc0, nil, false},
		{0xd0, nil, false},
		{0xe0, nil, false},
		{0xf0, ErrProtocolViolation, false},
	} {
		raw := []byte{tc.first, 0}
		h, err := ParseFixedHeader(raw, 0)
		if tc.headerErr != nil {
			requireSentinel(t, err, tc.headerErr)
			continue
		}
		if err != nil {
			t.Fatalf("%02x 00: %v", tc.first, err)
		}
		if h.Remaining != 0 || h.Size != 2 || byte(h.Type)<<4 != tc.first {
			t.Fatalf("%02x 00: header %+v", tc.first, h)
		}
		_, err = decodeBody(h, raw[2:])
		if tc.decodeFail != (err != nil) {
			t.Fatalf("%02x 00: decode error %v, want failure %v", tc.first, err, tc.decodeFail)
		}
	}
}

func TestParseFixedHeaderIncomplete(t *testing.T) {
	for _, raw := range []string{"", "30", "30 80", "30 ff ff", "30 80 80 80", "10"} {
		_, err := ParseFixedHeader(mustHex(raw), 0)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: error %v, want io.ErrUnexpectedEOF", raw, err)
		}
	}
	// The first byte is judged on its own, before the length arrives.
	for _, raw := range []string{"00", "f0", "61", "80", "36", "38"} {
		_, err := ParseFixedHeader(mustHex(raw), 0)
		requireSentinel(t, err, ErrProtocolViolation)
	}
}

func TestParseFixedHeaderRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		raw       string
		remaining int
		padded    bool // not the minimal encoding appendHeader writes
	}{
		{"30 00", 0, false},
		{"30 7f", 127, false},
		{"30 8001", 128, false},
		{"30 ff7f", 16383, false},
		{"30 808001", 16384, false},
		{"30 ffff7f", 2097151, false},
		{"30 80808001", 2097152, false},
		{"30 ffffff7f", MaxRemaining, false},
		{"30 8000", 0, true},     // tolerated: 3.1.1 does not require the minimal form
		{"30 81808000", 1, true}, // padded to 4 bytes
	} {
		raw := mustHex(tc.raw)
		h, err := ParseFixedHeader(raw, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if h.Remaining != tc.remaining || h.Size != len(raw) || h.Type != TypePublish {
			t.Fatalf("%s: header %+v, want remaining %d size %d", tc.raw, h, tc.remaining, len(raw))
		}
		if got := appendHeader(nil, 0x30, tc.remaining); !tc.padded && !bytes.Equal(got, raw) {
			t.Fatalf("appendHeader(%d) = % x, want % x", tc.remaining, got, raw)
		}
		if got := varintLen(tc.remaining); !tc.padded && got != len(raw)-1 {
			t.Fatalf("varintLen(%d) = %d, want %d", tc.remaining, got, len(raw)-1)
		}
	}
	// The limit applies to the remaining length; maxPacket <= 0 or above the
	// protocol maximum means the protocol maximum.
	for _, max := range []int{0, -1, MaxRemaining, MaxRemaining + 1} {
		if _, err := ParseFixedHeader(mustHex("30 ffffff7f"), max); err != nil {
			t.Fatalf("max %d: %v", max, err)
		}
	}
	if _, err := ParseFixedHeader(mustHex("30 7f"), 127); err != nil {
		t.Fatalf("RL equal to max refused: %v", err)
	}
}

func TestPacketIDOffset(t *testing.T) {
	for _, payload := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("p"), 300), bytes.Repeat([]byte("p"), 20000)} {
		p := Publish{QoS: 1, Topic: []byte("a/b/c"), PacketID: 1, Payload: payload}
		enc := p.AppendTo(nil)
		off := p.PacketIDOffset()
		enc[off], enc[off+1] = 0xbe, 0xef
		var got Publish
		h, err := ParseFixedHeader(enc, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodePublish(h.Flags, enc[h.Size:], &got); err != nil {
			t.Fatal(err)
		}
		if got.PacketID != 0xbeef || !bytes.Equal(got.Payload, payload) || string(got.Topic) != "a/b/c" {
			t.Fatalf("patched packet decodes as %+v", got)
		}
	}
}

func TestPublishValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Publish
		want error
	}{
		{"valid QoS 0", Publish{Topic: []byte("a")}, nil},
		{"valid QoS 2", Publish{QoS: 2, PacketID: 9, Topic: []byte("$SYS/x")}, nil},
		{"QoS 3", Publish{QoS: 3, PacketID: 1, Topic: []byte("a")}, ErrProtocolViolation},
		{"DUP at QoS 0", Publish{Dup: true, Topic: []byte("a")}, ErrProtocolViolation},
		{"packet id 0", Publish{QoS: 1, Topic: []byte("a")}, ErrProtocolViolation},
		{"empty topic", Publish{}, ErrProtocolViolation},
		{"wildcard", Publish{Topic: []byte("a/+")}, ErrProtocolViolation},
		{"NUL", Publish{Topic: []byte("a\x00")}, ErrMalformed},
		{"topic too long", Publish{Topic: bytes.Repeat([]byte("a"), 65536)}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			requireSentinel(t, err, tc.want)
		})
	}
}

func TestConnectValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Connect
		want error
	}{
		{"defaults to MQTT 3.1.1", Connect{ClientID: "c"}, nil},
		{"MQIsdp defaults to level 3", Connect{ProtocolName: "MQIsdp", ClientID: "c"}, nil},
		{"fields imply flags", Connect{ClientID: "c", Username: "u", Password: []byte("p"), WillTopic: "w"}, nil},
		{"level 5", Connect{ProtocolLevel: 5}, ErrUnsupportedProtocolLevel},
		{"unknown protocol", Connect{ProtocolName: "HTTP"}, ErrProtocolViolation},
		{"password without user name", Connect{Password: []byte("p")}, ErrProtocolViolation},
		{"will QoS without will", Connect{WillQoS: 1}, ErrProtocolViolation},
		{"will topic wildcard", Connect{WillFlag: true, WillTopic: "a/#"}, ErrProtocolViolation},
		{"client id NUL", Connect{ClientID: "a\x00"}, ErrMalformed},
		{"client id too long", Connect{ClientID: strings.Repeat("c", 65536)}, ErrMalformed},
		{"password too long", Connect{Username: "u", Password: make([]byte, 65536)}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			requireSentinel(t, err, tc.want)
		})
	}
}

func TestValidUTF8(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want bool
	}{
		{"empty", "", true},
		{"ascii", hexString("sensors/t1"), true},
		{"U+2A6D4", u2A6D4, true},
		{"U+FFFD itself", "efbfbd", true},
		{"BOM is kept, not skipped [MQTT-1.5.3-3]", "efbbbf61", true},
		{"U+0001 control (SHOULD NOT, accepted)", "01", true},
		{"U+10FFFF", "f48fbfbf", true},
	} {
		if got := ValidUTF8(mustHex(tc.hex)); got != tc.want {
			t.Errorf("%s: ValidUTF8 = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, s := range invalidStrings {
		if ValidUTF8(mustHex(s.hex)) {
			t.Errorf("%s: ValidUTF8 = true, want false", s.name)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ValidUTF8(mustHexNoAlloc) }); n != 0 {
		t.Fatalf("ValidUTF8 allocates %v times", n)
	}
}

var mustHexNoAlloc = mustHex("612f" + u2A6D4 + "2f63")

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{
		TypeConnect: "CONNECT", TypePublish: "PUBLISH", TypePubrel: "PUBREL",
		TypeUnsuback: "UNSUBACK", TypeDisconnect: "DISCONNECT", 0: "Type(0)", 15: "Type(15)", 200: "Type(200)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", byte(typ), got, want)
		}
	}
}

// TestListDecodersReuseDst checks that the list decoders append to the
// caller's slice, which is how the broker avoids allocating per packet.
func TestListDecodersReuseDst(t *testing.T) {
	subBody := mustHex("000a 0003 612f23 01 0003 2b2f78 02")
	subs := make([]Subscription, 0, 4)
	if n := testing.AllocsPerRun(100, func() {
		_, got, err := DecodeSubscribe(subBody, subs[:0])
		if err != nil || len(got) != 2 {
			t.Fatalf("DecodeSubscribe = %v, %v", got, err)
		}
	}); n != 0 {
		t.Fatalf("DecodeSubscribe allocates %v times with a reused dst", n)
	}
	unsubBody := mustHex("000b 0003 612f23 0001 62")
	filters := make([][]byte, 0, 4)
	if n := testing.AllocsPerRun(100, func() {
		_, got, err := DecodeUnsubscribe(unsubBody, filters[:0])
		if err != nil || len(got) != 2 {
			t.Fatalf("DecodeUnsubscribe = %v, %v", got, err)
		}
	}); n != 0 {
		t.Fatalf("DecodeUnsubscribe allocates %v times with a reused dst", n)
	}
	_, codes, err := DecodeSuback(mustHex("0001 00 80"), []byte{7})
	if err != nil || !bytes.Equal(codes, []byte{7, 0, 0x80}) {
		t.Fatalf("DecodeSuback does not append: %v %v", codes, err)
	}
}

func TestPublishZeroAlloc(t *testing.T) {
	raw := mustHex("32 0e 0003 612f62 0007 7061796c6f6164")
	h, err := ParseFixedHeader(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	body := raw[h.Size : h.Size+h.Remaining]
	var p Publish
	dst := make([]byte, 0, 64)
	n := testing.AllocsPerRun(100, func() {
		if _, err := ParseFixedHeader(raw, 0); err != nil {
			t.Fatal(err)
		}
		if err := DecodePublish(h.Flags, body, &p); err != nil {
			t.Fatal(err)
		}
		dst = p.AppendTo(dst[:0])
	})
	if n != 0 {
		t.Fatalf("decode + encode of a PUBLISH allocates %v times", n)
	}
	if !bytes.Equal(dst, raw) {
		t.Fatalf("re-encoded % x, want % x", dst, raw)
	}
}

// TestDecodersWithoutHeader calls the decoders on bodies that did not come
// through ParseFixedHeader: they must still refuse what it would have.
func TestDecodersWithoutHeader(t *testing.T) {
	var p Publish
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"PUBLISH QoS 3 flags", DecodePublish(0x06, mustHex("0001 74 0001"), &p), ErrProtocolViolation},
		{"PUBLISH DUP QoS 0 flags", DecodePublish(0x08, mustHex("0001 74"), &p), ErrProtocolViolation},
		{"ack of 3 bytes", second(DecodeAck(mustHex("000100"))), ErrMalformed},
		{"ack of 0 bytes", second(DecodeAck(nil)), ErrMalformed},
		{"CONNACK of 1 byte", third(DecodeConnack(mustHex("00"))), ErrMalformed},
		{"CONNECT nil body", DecodeConnect(nil, new(Connect)), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) { requireSentinel(t, tc.err, tc.want) })
	}
}

func second[A any](_ A, err error) error { return err }

func third[A, B any](_ A, _ B, err error) error { return err }

func TestDecodeConnectEmptyFieldsPresent(t *testing.T) {
	// A present but empty password or will message is not an absent one.
	var c Connect
	if err := DecodeConnect(mustHex("0004 4d515454 04 c6 0000 0001 63 0001 74 0000 0001 75 0000"), &c); err != nil {
		t.Fatal(err)
	}
	if c.WillPayload == nil || c.Password == nil || len(c.WillPayload)+len(c.Password) != 0 {
		t.Fatalf("empty fields decoded as %#v, %#v", c.WillPayload, c.Password)
	}
}
