package broker_test

// Black-box robustness tests over raw TCP: every input of group A of the
// project's reliability cases (A1..A20) is written byte for byte, and the test
// asserts the exact bytes the node answers (if any) and that it then closes
// the connection. The helpers here work on bytes, not on the project's
// codec, so a codec bug cannot hide behind a matching encoder.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
)

// wireBound is how long a test waits for the node to answer or close. The
// target is 100 ms (reliability-cases.md); 2 s keeps the tests reliable
// under -race on a loaded 2-core machine, and the measured worst case is
// logged.
const wireBound = 2 * time.Second

// Fixed replies, written out so a codec bug cannot produce both sides.
var (
	wireConnackAccepted   = []byte{0x20, 0x02, 0x00, 0x00}
	wireConnackBadVersion = []byte{0x20, 0x02, 0x00, 0x01} // [MQTT-3.1.2-2]
	wireConnackIDRejected = []byte{0x20, 0x02, 0x00, 0x02} // [MQTT-3.1.3-8]
	wireConnackUnavail    = []byte{0x20, 0x02, 0x00, 0x03} // limits.max_connections (H5)
	wirePingreq           = []byte{0xC0, 0x00}
	wirePingresp          = []byte{0xD0, 0x00}
	wireDisconnect        = []byte{0xE0, 0x00}
)

// wireConn is a client that writes and reads raw bytes.
type wireConn struct {
	t  *testing.T
	nc net.Conn
	// lastSend is taken just before the last write, so a latency measured
	// from it is never shorter than the real one.
	lastSend time.Time
}

func dialWire(t *testing.T, srv *broker.Server) *wireConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.Addr().String(), wireBound)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &wireConn{t: t, nc: nc}
}

// send writes b. A write refused because the node already closed the
// connection is not an error here: the close is asserted afterwards.
func (c *wireConn) send(b []byte) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetWriteDeadline(time.Now().Add(wireBound)))
	c.lastSend = time.Now()
	if _, err := c.nc.Write(b); err != nil && !wireClosedErr(err) {
		c.t.Fatalf("write: %v", err)
	}
}

// sendSplit writes b one byte per write [MQTT-6.0.0-2 analogue, A20].
func (c *wireConn) sendSplit(b []byte) {
	c.t.Helper()
	for i := range b {
		c.send(b[i : i+1])
	}
}

// expect reads exactly len(want) bytes and requires them to equal want.
func (c *wireConn) expect(want []byte) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wireBound)))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.nc, got)
	if err != nil {
		c.t.Fatalf("want %s, got %s then %v", wireShort(want), wireShort(got[:n]), err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("want %s\n got %s", wireShort(want), wireShort(got))
	}
}

// expectClosed requires the node to close the connection within bound
// without sending another byte, and returns the time since the last write.
func (c *wireConn) expectClosed(bound time.Duration) time.Duration {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(bound)))
	var buf [256]byte
	n, err := c.nc.Read(buf[:])
	latency := time.Since(c.lastSend)
	if n > 0 {
		c.t.Fatalf("want the connection closed, got %s", wireShort(buf[:n]))
	}
	if !wireClosedErr(err) {
		c.t.Fatalf("want the connection closed within %v, got %v", bound, err)
	}
	return latency
}

// expectOpen proves the connection is still served: PINGREQ gets PINGRESP
// [MQTT-3.12.4-1].
func (c *wireConn) expectOpen() {
	c.t.Helper()
	c.send(wirePingreq)
	c.expect(wirePingresp)
}

// connect sends a valid CONNECT and requires CONNACK 0.
func (c *wireConn) connect(clientID string) {
	c.t.Helper()
	c.send(wireConnect(clientID))
	c.expect(wireConnackAccepted)
}

// wireClosedErr reports whether err means the peer closed the connection:
// FIN (EOF) or RST (the node closed with unread bytes in its buffer).
func wireClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// wireShort formats bytes in hex, cut short for the 64 KiB cases.
func wireShort(b []byte) string {
	const shown = 48
	if len(b) > shown {
		return fmt.Sprintf("% x … (%d bytes)", b[:shown], len(b))
	}
	return fmt.Sprintf("% x", b)
}

// ---------------------------------------------------------------- builders

// wireHex decodes a hex literal with optional spaces.
func wireHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err, "hex literal %q", s)
	return b
}

// wirePacket builds a packet: first byte, remaining length and the
// concatenated parts.
func wirePacket(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(append([]byte{first}, wireVarint(len(body))...), body...)
}

// wireVarint encodes a remaining length in its minimal form [MQTT-2.2.3].
func wireVarint(n int) []byte {
	var out []byte
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// wireString is a length-prefixed string [MQTT-1.5.3]; s may be invalid
// UTF-8 on purpose.
func wireString(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

func wireUint16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// wireConnectBody builds a CONNECT variable header and payload; fields are
// written in order, each length-prefixed, whatever the flags say.
func wireConnectBody(name string, level, flags byte, keepalive uint16, fields ...string) []byte {
	b := wireString(name)
	b = append(b, level, flags, byte(keepalive>>8), byte(keepalive))
	for _, f := range fields {
		b = append(b, wireString(f)...)
	}
	return b
}

// wireConnect is a valid clean-session CONNECT with keepalive 60 s; an
// empty id asks the node to assign one [MQTT-3.1.3-6].
func wireConnect(clientID string) []byte {
	return wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, 60, clientID))
}

// wireSubscribe is a SUBSCRIBE of one or more filters, all at qos.
func wireSubscribe(id uint16, qos byte, filters ...string) []byte {
	parts := [][]byte{wireUint16(id)}
	for _, f := range filters {
		parts = append(parts, wireString(f), []byte{qos})
	}
	return wirePacket(0x82, parts...)
}

// wireSuback is the SUBACK the node must answer, one code per filter.
func wireSuback(id uint16, codes ...byte) []byte {
	return wirePacket(0x90, wireUint16(id), codes)
}

// wirePublish is a PUBLISH at QoS 0, or at qos with packet id id.
func wirePublish(topic string, qos byte, id uint16, payload []byte) []byte {
	if qos == 0 {
		return wirePacket(0x30, wireString(topic), payload)
	}
	return wirePacket(0x30|qos<<1, wireString(topic), wireUint16(id), payload)
}

// ---------------------------------------------------------------- group A

// wireCase is one row of group A.
type wireCase struct {
	name string
	// afterConnect: a valid CONNECT is sent and accepted first, so the
	// input is judged where its packet type is otherwise legal.
	afterConnect bool
	send         []byte
	// reply is the exact byte string the node must answer before closing
	// (or, when open, before the PINGREQ check).
	reply []byte
	// open: the input is valid or refused politely; the connection must
	// stay served.
	open bool
}

// groupACases lists the inputs of reliability-cases.md group A, A1..A19,
// for a node with the default limits.
func groupACases(t *testing.T) []wireCase {
	h := func(s string) []byte { return wireHex(t, s) }
	validBody := wireConnectBody("MQTT", 4, 0x02, 60, "")
	var cases []wireCase
	add := func(c wireCase) { cases = append(cases, c) }

	// A1: every type but CONNECT as the first packet [MQTT-3.1.0-1],
	// including the reserved types 0 and 15 [MQTT-2.2.1]. 0x50 ('P') also
	// begins an HTTP method on the shared port.
	for typ := 0; typ <= 15; typ++ {
		if typ == 1 {
			continue
		}
		first := byte(typ << 4)
		add(wireCase{name: fmt.Sprintf("A1/first-packet-%02X", first), send: []byte{first, 0x00}})
	}

	// A2: a pre-auth packet announcing 243 MB, one socket per type, with a
	// piece of the body: closed at the header, no buffer of that size.
	// Types 6, 8 and 10 get their mandatory flags so the size is what trips.
	for typ := 1; typ <= 14; typ++ {
		first := byte(typ << 4)
		switch typ {
		case 6, 8, 10:
			first |= 0x02
		}
		send := append([]byte{first, 0x80, 0x80, 0x80, 0x74}, bytes.Repeat([]byte{'x'}, 4096)...)
		add(wireCase{name: fmt.Sprintf("A2/huge-first-packet-%02X", first), send: send})
	}

	// A3: CONNECT declaring max_packet_size+1, body withheld: closed on the
	// header, long before the connect timeout.
	limits := broker.DefaultConfig().Limits
	add(wireCase{name: "A3/connect-over-max-packet-size", send: append([]byte{0x10}, wireVarint(int(limits.MaxPacketSize)+1)...)})

	// A4: a remaining length of five bytes [MQTT-2.2.3].
	add(wireCase{name: "A4/remaining-length-5-bytes-connect", send: h("10 FF FF FF FF 7F")})
	add(wireCase{name: "A4/remaining-length-5-bytes-publish", afterConnect: true, send: h("30 FF FF FF FF 7F")})

	// A5: PUBLISH whose topic length runs past its remaining length.
	add(wireCase{name: "A5/publish-topic-past-remaining-length", afterConnect: true,
		send: append(h("30 02 00 40"), bytes.Repeat([]byte{'a'}, 64)...)})

	// A6: reserved fixed-header flags [MQTT-2.2.2-2]. CONNECT is judged as
	// the first packet, the others after a valid CONNECT.
	for _, first := range []byte{0x11, 0x12, 0x14, 0x18} {
		add(wireCase{name: fmt.Sprintf("A6/connect-flags-%02X", first), send: wirePacket(first, validBody)})
	}
	for _, first := range []byte{0x63, 0x64, 0x66, 0x6A} {
		add(wireCase{name: fmt.Sprintf("A6/pubrel-flags-%02X", first), afterConnect: true, send: []byte{first, 0x02, 0x00, 0x01}})
	}
	for _, first := range []byte{0x80, 0x83, 0x84} {
		add(wireCase{name: fmt.Sprintf("A6/subscribe-flags-%02X", first), afterConnect: true,
			send: wirePacket(first, wireUint16(1), wireString("a"), []byte{0})})
	}
	add(wireCase{name: "A6/unsubscribe-flags-A0", afterConnect: true, send: wirePacket(0xA0, wireUint16(1), wireString("a"))})
	// PINGREQ with flags must not get its PINGRESP.
	add(wireCase{name: "A6/pingreq-flags-C1", afterConnect: true, send: h("C1 00")})
	add(wireCase{name: "A6/disconnect-flags-E1", afterConnect: true, send: h("E1 00")})
	add(wireCase{name: "A6/puback-flags-41", afterConnect: true, send: h("41 02 00 01")})

	// A7: fixed-length packets with another length.
	for _, s := range []string{"C0 01 00", "E0 01 00", "40 03 00 01 00", "62 00", "62 01 01"} {
		add(wireCase{name: "A7/wrong-length-" + strings.ReplaceAll(s, " ", ""), afterConnect: true, send: h(s)})
	}

	// A8: unknown protocol names [MQTT-3.1.2-1]: close without CONNACK.
	for _, name := range []string{"MQTU", "MQT", "", "MQTTT"} {
		add(wireCase{name: fmt.Sprintf("A8/protocol-name-%q", name), send: wirePacket(0x10, wireConnectBody(name, 4, 0x02, 60, ""))})
	}

	// A9: known name, unsupported level: CONNACK 1 then close [MQTT-3.1.2-2].
	for _, v := range []struct {
		name  string
		level byte
	}{{"MQTT", 2}, {"MQTT", 6}, {"MQIsdp", 4}} {
		add(wireCase{name: fmt.Sprintf("A9/%s-level-%d", v.name, v.level),
			send: wirePacket(0x10, wireConnectBody(v.name, v.level, 0x02, 60, "")), reply: wireConnackBadVersion})
	}
	// MQTT 3.1 is accepted (docs/mqtt.md).
	add(wireCase{name: "A9/MQIsdp-level-3-accepted", send: wirePacket(0x10, wireConnectBody("MQIsdp", 3, 0x02, 60, "mqisdp")),
		reply: wireConnackAccepted, open: true})

	// A10: CONNECT flag combinations the spec forbids.
	for _, v := range []struct {
		name   string
		flags  byte
		fields []string
	}{
		{"reserved-bit", 0x03, []string{""}},                       // [MQTT-3.1.2-3]
		{"will-qos1-without-will-0A", 0x0A, []string{""}},          // [MQTT-3.1.2-13]
		{"will-qos2-without-will-12", 0x12, []string{""}},          // [MQTT-3.1.2-13]
		{"will-retain-without-will-22", 0x22, []string{""}},        // [MQTT-3.1.2-15]
		{"will-qos3-1E", 0x1E, []string{"", "w/t", "bye"}},         // [MQTT-3.1.2-14]
		{"will-flag-without-topic", 0x06, []string{""}},            // [MQTT-3.1.2-9]
		{"password-without-username-42", 0x42, []string{"", "pw"}}, // [MQTT-3.1.2-22]
		{"username-flag-without-field-82", 0x82, []string{""}},     // [MQTT-3.1.2-19]
	} {
		add(wireCase{name: "A10/" + v.name, send: wirePacket(0x10, wireConnectBody("MQTT", 4, v.flags, 60, v.fields...))})
	}

	// A11: empty client id with clean session 0: CONNACK 2 [MQTT-3.1.3-8];
	// no client id field at all: malformed [MQTT-3.1.3-3].
	add(wireCase{name: "A11/empty-id-clean-0", send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x00, 60, "")), reply: wireConnackIDRejected})
	add(wireCase{name: "A11/missing-id-field", send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, 60))})

	// A12: ill-formed UTF-8 or U+0000 in every string a client sends
	// [MQTT-1.5.3-1] [MQTT-1.5.3-2].
	badUTF8 := []struct{ name, s string }{
		{"nul", "a\x00b"},
		{"surrogate-EDA080", "a\xED\xA0\x80"},
		{"overlong-C080", "a\xC0\x80"},
		{"cut-multibyte", "a\xE2\x82"},
	}
	for _, bad := range badUTF8 {
		add(wireCase{name: "A12/client-id-" + bad.name, send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, 60, bad.s))})
		add(wireCase{name: "A12/will-topic-" + bad.name, send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x06, 60, "", bad.s, "bye"))})
		add(wireCase{name: "A12/username-" + bad.name, send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x82, 60, "", bad.s))})
		add(wireCase{name: "A12/topic-" + bad.name, afterConnect: true, send: wirePublish(bad.s, 0, 0, []byte("x"))})
	}
	// U+2A6D4, a supplementary-plane character, is valid everywhere.
	const cjk = "\xF0\xAA\x9B\x94"
	add(wireCase{name: "A12/client-id-U+2A6D4-accepted", send: wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, 60, cjk)),
		reply: wireConnackAccepted, open: true})
	add(wireCase{name: "A12/will-topic-and-username-U+2A6D4-accepted",
		send:  wirePacket(0x10, wireConnectBody("MQTT", 4, 0x86, 60, "", "w/"+cjk, "bye", "user"+cjk)),
		reply: wireConnackAccepted, open: true})
	add(wireCase{name: "A12/topic-U+2A6D4-routed", afterConnect: true,
		send:  append(wireSubscribe(1, 0, "t/"+cjk), wirePublish("t/"+cjk, 0, 0, []byte("hi"))...),
		reply: append(wireSuback(1, 0), wirePublish("t/"+cjk, 0, 0, []byte("hi"))...), open: true})

	// A13: PUBLISH QoS 3 [MQTT-3.3.1-4], packet id 0 [MQTT-2.3.1-1], DUP at
	// QoS 0 [MQTT-3.3.1-2].
	add(wireCase{name: "A13/publish-qos3", afterConnect: true, send: wirePacket(0x36, wireString("a"), wireUint16(1), []byte("x"))})
	add(wireCase{name: "A13/publish-qos1-id0", afterConnect: true, send: wirePacket(0x32, wireString("a"), wireUint16(0), []byte("x"))})
	add(wireCase{name: "A13/publish-qos2-id0", afterConnect: true, send: wirePacket(0x34, wireString("a"), wireUint16(0), []byte("x"))})
	add(wireCase{name: "A13/publish-qos0-dup", afterConnect: true, send: wirePacket(0x38, wireString("a"), []byte("x"))})

	// A14: empty topic [MQTT-4.7.3-1], wildcards in a topic name
	// [MQTT-3.3.2-2]; a '$' topic is routed normally.
	add(wireCase{name: "A14/topic-empty", afterConnect: true, send: h("30 02 00 00")})
	add(wireCase{name: "A14/topic-plus", afterConnect: true, send: wirePublish("a/+", 0, 0, []byte("x"))})
	add(wireCase{name: "A14/topic-hash", afterConnect: true, send: wirePublish("a/#", 0, 0, []byte("x"))})
	add(wireCase{name: "A14/topic-hash-qos1", afterConnect: true, send: wirePublish("#", 1, 7, []byte("x"))})
	add(wireCase{name: "A14/dollar-topic-routed", afterConnect: true,
		send:  append(wireSubscribe(1, 0, "$foo/#"), wirePublish("$foo/x", 0, 0, []byte("hi"))...),
		reply: append(wireSuback(1, 0), wirePublish("$foo/x", 0, 0, []byte("hi"))...), open: true})
	// Not in the table, but the same path: a topic far deeper than the
	// filter depth cap is routed (to nobody) without harm.
	add(wireCase{name: "A14/deep-topic-qos1-acked", afterConnect: true,
		send: wirePublish(strings.Repeat("/", 65000), 1, 9, nil), reply: h("40 02 00 09"), open: true})

	// A15: SUBSCRIBE cut short at every length of a valid body, without a
	// filter [MQTT-3.8.3-3], with an empty filter, with a requested-QoS byte
	// above 2 or with reserved bits [MQTT-3.8.3-4].
	full := append(wireUint16(1), append(wireString("a"), 0)...)
	for n := 0; n < len(full); n++ {
		add(wireCase{name: fmt.Sprintf("A15/subscribe-cut-at-%d", n), afterConnect: true, send: wirePacket(0x82, full[:n])})
	}
	add(wireCase{name: "A15/subscribe-empty-filter", afterConnect: true, send: wirePacket(0x82, wireUint16(1), wireString(""), []byte{0})})
	for _, q := range []byte{0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80} {
		add(wireCase{name: fmt.Sprintf("A15/subscribe-qos-byte-%02X", q), afterConnect: true,
			send: wirePacket(0x82, wireUint16(1), wireString("a"), []byte{q})})
	}
	add(wireCase{name: "A15/subscribe-id0", afterConnect: true, send: wirePacket(0x82, wireUint16(0), wireString("a"), []byte{0})})

	// A16: invalid filters get SUBACK 0x80 and the connection stays (pinned
	// in docs/mqtt.md); other filters of the same packet proceed
	// [MQTT-3.8.4-5]. Depth is capped at 200 levels.
	for _, f := range []string{"a/#/b", "a#", "a/+b", "#/a", strings.Repeat("/", 65535), strings.Repeat("a/", 999) + "a", strings.Repeat("a/", 200) + "a"} {
		name := f
		if len(name) > 12 {
			name = fmt.Sprintf("%d-bytes-%d-levels", len(f), strings.Count(f, "/")+1)
		}
		add(wireCase{name: "A16/filter-" + name, afterConnect: true, send: wireSubscribe(1, 1, f), reply: wireSuback(1, 0x80), open: true})
	}
	add(wireCase{name: "A16/filter-200-levels-granted", afterConnect: true,
		send: wireSubscribe(1, 1, strings.Repeat("a/", 199)+"a"), reply: wireSuback(1, 1), open: true})
	add(wireCase{name: "A16/mixed-valid-and-invalid", afterConnect: true,
		send:  wirePacket(0x82, wireUint16(5), wireString("a/#/b"), []byte{0}, wireString("ok/+"), []byte{1}, wireString("#"), []byte{2}),
		reply: wireSuback(5, 0x80, 1, 2), open: true})

	// A17: UNSUBSCRIBE cut short, or without a filter [MQTT-3.10.3-2].
	unsub := append(wireUint16(1), wireString("a")...)
	for n := 0; n < len(unsub); n++ {
		add(wireCase{name: fmt.Sprintf("A17/unsubscribe-cut-at-%d", n), afterConnect: true, send: wirePacket(0xA2, unsub[:n])})
	}

	// A18: a second CONNECT [MQTT-3.1.0-2].
	add(wireCase{name: "A18/second-connect", afterConnect: true, send: wireConnect("second")})

	// A19: packets only a server sends.
	for _, v := range []struct{ name, hex string }{
		{"connack", "20 02 00 00"},
		{"connack-v5-shape", "20 03 00 00 00"},
		{"suback", "90 03 00 01 00"},
		{"unsuback", "B0 02 00 01"},
		{"pingresp", "D0 00"},
	} {
		add(wireCase{name: "A19/" + v.name, afterConnect: true, send: h(v.hex)})
	}
	return cases
}

// TestMalformedInputsCloseConnection sends every group A input on its own
// connection to one node and requires the exact reply, then the close (or,
// for the inputs the node must accept, a connection still served). The node
// must be healthy afterwards and hold no connection.
func TestMalformedInputsCloseConnection(t *testing.T) {
	srv := startServer(t, nil)
	cases := groupACases(t)
	require.GreaterOrEqual(t, len(cases), 45)

	var worst time.Duration
	var worstName string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWire(t, srv)
			if tc.afterConnect {
				c.connect("")
			}
			c.send(tc.send)
			if len(tc.reply) > 0 {
				c.expect(tc.reply)
			}
			if tc.open {
				c.expectOpen()
				c.send(wireDisconnect)
				c.expectClosed(wireBound)
				return
			}
			if latency := c.expectClosed(wireBound); latency > worst {
				worst, worstName = latency, tc.name
			}
		})
	}
	t.Logf("%d inputs; slowest close %v (%s); target 100 ms", len(cases), worst, worstName)

	t.Run("A20/one-byte-per-write", func(t *testing.T) { runA20Session(t, srv, true) })
	t.Run("A20/coalesced", func(t *testing.T) { runA20Session(t, srv, false) })

	// A DISCONNECT with reserved flags is a protocol violation, not a
	// DISCONNECT: both close, but only the real one discards the will
	// [MQTT-3.14.4-3] [MQTT-2.2.2-2].
	t.Run("A6/disconnect-flags-E1-publishes-will", func(t *testing.T) {
		watcher, in := connectWithInbox(t, srv, transportTCP, "will-watcher")
		subscribe(t, watcher, "will/#", 0)
		for _, v := range []struct {
			topic      string
			disconnect []byte
		}{
			{"will/clean", wireDisconnect},
			{"will/malformed", []byte{0xE1, 0x00}},
		} {
			c := dialWire(t, srv)
			c.send(wirePacket(0x10, wireConnectBody("MQTT", 4, 0x06, 60, "", v.topic, "gone")))
			c.expect(wireConnackAccepted)
			c.send(v.disconnect)
			c.expectClosed(wireBound)
		}
		// Wills are published before a session is dropped, so once only the
		// watcher's session is left, every will has been routed.
		waitFor(t, opTimeout, func() bool { return srv.Counters().Sessions == 1 })
		publish(t, watcher, "will/sentinel", 0, false, []byte("end"))
		require.Equal(t, []string{"will/malformed"}, topics(in.untilSentinel(t, "will/sentinel", "end")))
		watcher.Disconnect(100)
	})

	t.Run("node-still-healthy", func(t *testing.T) {
		sub, in := connectWithInbox(t, srv, transportTCP, "after-malformed-sub")
		subscribe(t, sub, "health/#", 1)
		pub, _ := connectPaho(t, pahoOptions(srv, transportTCP, "after-malformed-pub"))
		publish(t, pub, "health/check", 1, false, []byte("ok"))
		got := in.waitCount(t, 1)
		require.Equal(t, "health/check", got[0].Topic)
		require.Equal(t, []byte("ok"), got[0].Payload)
		sub.Disconnect(100)
		pub.Disconnect(100)
		waitFor(t, opTimeout, func() bool {
			c := srv.Counters()
			return c.Connections == 0 && c.Sessions == 0 && c.Subscriptions == 0
		})
	})
}

// runA20Session plays one valid session, in one write or one byte per
// write, and requires the node's byte stream to be exactly the expected one:
// framing must not change the outcome (A20). DISCONNECT is part of the
// session: the replies to everything before it must still arrive when it
// comes in the same write, and then the node closes [MQTT-3.14.4-2].
func runA20Session(t *testing.T, srv *broker.Server, split bool) {
	const publishes = 50
	var session, want []byte
	session = append(session, wireConnect("")...)
	want = append(want, wireConnackAccepted...)
	session = append(session, wireSubscribe(1, 0, "a20/#")...)
	want = append(want, wireSuback(1, 0)...)
	for i := range publishes {
		topic := fmt.Sprintf("a20/%d", i)
		payload := []byte(fmt.Sprintf("message %d", i))
		// The echo is delivered at the granted QoS 0 [MQTT-3.8.4-6]; a QoS 1
		// publish is acknowledged after it is routed.
		qos := byte(i % 3)
		id := uint16(i + 1)
		session = append(session, wirePublish(topic, qos, id, payload)...)
		want = append(want, wirePublish(topic, 0, 0, payload)...)
		switch qos {
		case 1:
			want = append(want, wirePacket(0x40, wireUint16(id))...) // PUBACK
		case 2:
			want = append(want, wirePacket(0x50, wireUint16(id))...) // PUBREC
			session = append(session, wirePacket(0x62, wireUint16(id))...)
			want = append(want, wirePacket(0x70, wireUint16(id))...) // PUBCOMP
		}
	}
	session = append(session, wirePingreq...)
	want = append(want, wirePingresp...)
	session = append(session, wireDisconnect...)

	c := dialWire(t, srv)
	if split {
		c.sendSplit(session)
	} else {
		c.send(session)
	}
	c.expect(want)
	c.expectClosed(wireBound)
}
