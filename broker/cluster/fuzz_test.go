package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fuzz targets for every decoder that reads bytes from another machine:
// gossip messages, push/pull state, node metadata, link frames and the
// link handshake. Each must reject garbage with an error, never panic, and
// agree with its encoder on what it accepts. Run one with e.g.
//
//	go test -run '^$' -fuzz FuzzDecodeGossip -fuzztime 60s ./broker/cluster

func FuzzDecodeGossip(f *testing.F) {
	f.Add(appendInterestMsg(nil, "n1", 1, []string{"a/+/c", "#"}))
	f.Add(appendInterestMsg(nil, "n1", 1<<63, nil))
	f.Add(appendDigestMsg(nil, "node", 99))
	for _, tc := range badGossip {
		if len(tc.msg) < 4096 {
			f.Add(tc.msg)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, rec, err := decodeGossip(b)
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
			return
		}
		var again []byte
		switch typ {
		case gossipInterest:
			again = appendInterestMsg(nil, rec.node, rec.version, rec.filters)
		case gossipDigest:
			again = appendDigestMsg(nil, rec.node, rec.version)
		default:
			t.Fatalf("accepted type %#x", typ)
		}
		typ2, rec2, err := decodeGossip(again)
		require.NoError(t, err)
		require.Equal(t, typ, typ2)
		require.Equal(t, rec, rec2)
	})
}

func FuzzDecodeState(f *testing.F) {
	in := newInterest("self", 0, time.Unix(0, 7))
	in.memberUp("peer")
	in.apply(interestRecord{node: "peer", version: 3, filters: []string{"x/#", "y"}}, time.Now())
	_, _ = in.add("mine/+")
	f.Add(in.appendState(nil, maxStateBytes))
	f.Add([]byte{gossipState, 0})
	for _, tc := range badState {
		if len(tc.state) < 4096 {
			f.Add(tc.state)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeState(b)
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
			return
		}
		again := binary.AppendUvarint([]byte{gossipState}, uint64(len(recs)))
		for _, r := range recs {
			again = appendRecord(again, r.node, r.version, r.filters)
		}
		recs2, err := decodeState(again)
		require.NoError(t, err)
		require.Equal(t, recs, recs2)
		// Applying whatever decodes must not panic either.
		in := newInterest("self", 0, time.Now())
		for _, r := range recs {
			in.memberUp(r.node)
			in.apply(r, time.Now())
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(nodeMeta{peerAddr: ":7947", version: "1.0"}.appendTo(nil))
	f.Add(nodeMeta{peerAddr: "[::1]:1", version: ""}.appendTo(nil))
	f.Add([]byte{metaFormat1, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
			return
		}
		m2, err := decodeMeta(m.appendTo(nil))
		require.NoError(t, err)
		require.Equal(t, m, m2)
	})
}

// FuzzFrames reads a byte stream as a peer link does: frame after frame
// until the first error, decoding every known frame type.
func FuzzFrames(f *testing.F) {
	for _, tc := range messageCases {
		f.Add(tc.wire)
	}
	var batch []byte
	batch = appendMessageFrame(batch, &Message{Topic: []byte("a"), Payload: []byte("p"), QoS: 2, Origin: "o", ID: []byte("id")})
	batch = appendQueryFrame(batch, 1, 100, "presence", []byte("{}"))
	batch = appendReplyFrame(batch, 1, replyOK, []byte("[]"))
	batch = append(batch, 0x7e, 1, 0)
	f.Add(batch)
	f.Add([]byte{frameMessage, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b), 1<<16)
		origin := func(o []byte) string { return string(o) }
		for {
			typ, body, err := fr.next()
			if err != nil {
				return
			}
			switch typ {
			case frameMessage:
				var m Message
				if decodeMessage(body, &m, origin) != nil {
					return
				}
				require.NoError(t, m.validate())
				var m2 Message
				require.NoError(t, decodeMessage(appendMessageFrame(nil, &m)[1+uvarintLen(uint64(messageBodyLen(&m))):], &m2, origin))
				require.Equal(t, string(m.Topic), string(m2.Topic))
				require.Equal(t, string(m.Payload), string(m2.Payload))
				require.Equal(t, string(m.ID), string(m2.ID))
				require.Equal(t, m.Origin, m2.Origin)
				require.Equal(t, m.QoS, m2.QoS)
				require.Equal(t, m.Retain, m2.Retain)
			case frameQuery:
				if _, err := decodeQuery(body); err != nil {
					return
				}
			case frameReply:
				if _, err := decodeReply(body); err != nil {
					return
				}
			}
		}
	})
}

// fuzzConn is a net.Conn that reads a fixed input and discards writes.
type fuzzConn struct{ r io.Reader }

func (c fuzzConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c fuzzConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c fuzzConn) Close() error                     { return nil }
func (c fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzHandshake feeds arbitrary bytes to both sides of the handshake. No
// input can authenticate without the key (the nonces are fresh), so both
// must fail, cleanly.
func FuzzHandshake(f *testing.F) {
	hello := newLinkAuth(testKey, "L", "a").hello(make([]byte, nonceLen))
	f.Add(hello)
	f.Add(append(hello, make([]byte, macLen)...))
	f.Add(append(newLinkAuth(testKey, "L", "b").hello(make([]byte, nonceLen)), make([]byte, macLen+1)...))
	f.Add([]byte(handshakeMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := fuzzConn{r: bytes.NewReader(b)}
		_, err := newLinkAuth(testKey, "L", "b").accept(c, bufio.NewReader(c))
		require.Error(t, err)
		c = fuzzConn{r: bytes.NewReader(b)}
		require.Error(t, newLinkAuth(testKey, "L", "a").dial(c, bufio.NewReader(c), "b"))
	})
}
