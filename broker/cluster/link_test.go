package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// messageCases pin the message frame to raw bytes, shared by the encode
// and decode tests.
var messageCases = []struct {
	name string
	msg  Message
	wire []byte
}{
	{
		name: "full",
		msg:  Message{Topic: []byte("a/b"), Payload: []byte("hi"), QoS: 1, Retain: true, Origin: "n1", ID: []byte{7}},
		wire: []byte{frameMessage, 12, 0x05, 3, 'a', '/', 'b', 2, 'n', '1', 1, 7, 'h', 'i'},
	},
	{
		name: "minimal",
		msg:  Message{Topic: []byte("t")},
		wire: []byte{frameMessage, 5, 0x00, 1, 't', 0, 0},
	},
	{
		name: "qos2 empty payload",
		msg:  Message{Topic: []byte("t"), QoS: 2, Origin: "o"},
		wire: []byte{frameMessage, 6, 0x02, 1, 't', 1, 'o', 0},
	},
}

func TestMessageFrame(t *testing.T) {
	for _, tc := range messageCases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.wire, appendMessageFrame(nil, &tc.msg))
			require.Equal(t, len(tc.wire), frameLen(messageBodyLen(&tc.msg)))
			fr := newFrameReader(bytes.NewReader(tc.wire), 1<<10)
			typ, body, err := fr.next()
			require.NoError(t, err)
			require.Equal(t, frameMessage, typ)
			var m Message
			require.NoError(t, decodeMessage(body, &m, func(b []byte) string { return string(b) }))
			require.Equal(t, string(tc.msg.Topic), string(m.Topic))
			require.Equal(t, string(tc.msg.Payload), string(m.Payload))
			require.Equal(t, string(tc.msg.ID), string(m.ID))
			require.Equal(t, tc.msg.QoS, m.QoS)
			require.Equal(t, tc.msg.Retain, m.Retain)
			require.Equal(t, tc.msg.Origin, m.Origin)
			_, _, err = fr.next()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

func TestBadFrames(t *testing.T) {
	cases := []struct {
		name string
		wire []byte
	}{
		{"reserved flag", []byte{frameMessage, 5, 0x08, 1, 't', 0, 0}},
		{"qos 3", []byte{frameMessage, 5, 0x03, 1, 't', 0, 0}},
		{"empty topic", []byte{frameMessage, 4, 0x00, 0, 0, 0}},
		{"topic past body", []byte{frameMessage, 5, 0x00, 9, 't', 0, 0}},
		{"no id", []byte{frameMessage, 4, 0x00, 1, 't', 0}},
		{"query without kind", []byte{frameQuery, 3, 1, 0, 0}},
		{"reply without status", []byte{frameReply, 1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr := newFrameReader(bytes.NewReader(tc.wire), 1<<10)
			typ, body, err := fr.next()
			require.NoError(t, err, "the frame itself is whole")
			switch typ {
			case frameMessage:
				err = decodeMessage(body, &Message{}, func(b []byte) string { return string(b) })
			case frameQuery:
				_, err = decodeQuery(body)
			case frameReply:
				_, err = decodeReply(body)
			}
			require.ErrorIs(t, err, errMalformed)
		})
	}

	streams := []struct {
		name string
		wire []byte
		want error
	}{
		{"over the limit", []byte{frameMessage, 0x81, 0x08}, errMalformed}, // 1025 > 1024
		{"truncated body", []byte{frameMessage, 5, 0, 1}, io.ErrUnexpectedEOF},
		{"truncated length", []byte{frameMessage, 0x80}, io.ErrUnexpectedEOF},
		{"length overflow", []byte{frameMessage, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil},
	}
	for _, tc := range streams {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := newFrameReader(bytes.NewReader(tc.wire), 1<<10).next()
			require.Error(t, err)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestFrameReaderLargeAndBatched(t *testing.T) {
	big := Message{Topic: []byte("big"), Payload: bytes.Repeat([]byte{0xab}, 3*linkReadBuffer)}
	var wire []byte
	wire = appendMessageFrame(wire, &Message{Topic: []byte("small")})
	wire = appendMessageFrame(wire, &big)
	wire = appendQueryFrame(wire, 9, 250, "presence", []byte("q"))
	wire = appendReplyFrame(wire, 9, replyBusy, nil)
	wire = append(wire, 0x7e, 2, 'x', 'y') // a later release's frame type
	fr := newFrameReader(bytes.NewReader(wire), 4*linkReadBuffer)
	var m Message
	origin := func(b []byte) string { return string(b) }

	typ, body, err := fr.next()
	require.NoError(t, err)
	require.Equal(t, frameMessage, typ)
	require.NoError(t, decodeMessage(body, &m, origin))
	require.Equal(t, "small", string(m.Topic))

	typ, body, err = fr.next()
	require.NoError(t, err)
	require.Equal(t, frameMessage, typ)
	require.NoError(t, decodeMessage(body, &m, origin))
	require.Equal(t, big.Payload, m.Payload)

	typ, body, err = fr.next()
	require.NoError(t, err)
	require.Equal(t, frameQuery, typ)
	q, err := decodeQuery(body)
	require.NoError(t, err)
	require.Equal(t, uint64(9), q.id)
	require.Equal(t, uint64(250), q.timeoutMillis)
	require.Equal(t, "presence", string(q.kind))
	require.Equal(t, "q", string(q.body))

	typ, body, err = fr.next()
	require.NoError(t, err)
	require.Equal(t, frameReply, typ)
	r, err := decodeReply(body)
	require.NoError(t, err)
	require.Equal(t, replyFrame{id: 9, status: replyBusy, body: []byte{}}, r)

	typ, body, err = fr.next()
	require.NoError(t, err)
	require.Equal(t, byte(0x7e), typ)
	require.Equal(t, "xy", string(body))
}

// handshake runs both sides over a loopback TCP connection.
func handshake(t *testing.T, dialer, acceptor *linkAuth, expect string) (dialErr, acceptErr error, accepted string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			acceptErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		accepted, acceptErr = acceptor.accept(c, bufio.NewReader(c))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	dialErr = dialer.dial(c, bufio.NewReader(c), expect)
	c.Close()
	<-done
	return dialErr, acceptErr, accepted
}

func TestHandshake(t *testing.T) {
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	cases := []struct {
		name                 string
		dialer, acceptor     *linkAuth
		expect               string
		dialAuth, acceptAuth bool // errAuth expected on that side
	}{
		{name: "ok", dialer: newLinkAuth(testKey, "L", "a"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b"},
		{name: "ok without key", dialer: newLinkAuth(nil, "", "a"), acceptor: newLinkAuth(nil, "", "b"), expect: "b"},
		{name: "wrong key", dialer: newLinkAuth(otherKey, "L", "a"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b", dialAuth: true},
		{name: "no key", dialer: newLinkAuth(nil, "L", "a"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b", dialAuth: true},
		{name: "wrong label", dialer: newLinkAuth(testKey, "L2", "a"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b", dialAuth: true},
		{name: "wrong node at address", dialer: newLinkAuth(testKey, "L", "a"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "c", dialAuth: true},
		{name: "higher name dials", dialer: newLinkAuth(testKey, "L", "z"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b", acceptAuth: true},
		{name: "own name", dialer: newLinkAuth(testKey, "L", "b"), acceptor: newLinkAuth(testKey, "L", "b"), expect: "b", acceptAuth: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dialErr, acceptErr, accepted := handshake(t, tc.dialer, tc.acceptor, tc.expect)
			if !tc.dialAuth && !tc.acceptAuth {
				require.NoError(t, dialErr)
				require.NoError(t, acceptErr)
				require.Equal(t, tc.dialer.self, accepted)
				return
			}
			require.Error(t, dialErr, "the dialer never gets a link")
			require.Error(t, acceptErr, "the acceptor never gets a link")
			if tc.dialAuth {
				require.ErrorIs(t, dialErr, errAuth)
			}
			if tc.acceptAuth {
				require.ErrorIs(t, acceptErr, errAuth)
			}
		})
	}
}

// TestHandshakeForgedDialer: a dialer that skips verification and sends a
// made-up proof is refused by the acceptor.
func TestHandshakeForgedDialer(t *testing.T) {
	acceptor := newLinkAuth(testKey, "L", "b")
	cases := []struct {
		name string
		send func(c net.Conn, br *bufio.Reader)
	}{
		{"zero mac", func(c net.Conn, br *bufio.Reader) {
			_, _ = c.Write(newLinkAuth(nil, "L", "a").hello(make([]byte, nonceLen)))
			_, _, _ = readHello(br)
			_, _ = io.ReadFull(br, make([]byte, macLen))
			_, _ = c.Write(make([]byte, macLen))
		}},
		{"bad magic", func(c net.Conn, _ *bufio.Reader) {
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("x", 64)))
		}},
		{"long name", func(c net.Conn, _ *bufio.Reader) {
			b := append([]byte(handshakeMagic), make([]byte, nonceLen)...)
			_, _ = c.Write(appendString(b, strings.Repeat("n", 300)))
		}},
		{"empty name", func(c net.Conn, _ *bufio.Reader) {
			b := append([]byte(handshakeMagic), make([]byte, nonceLen)...)
			_, _ = c.Write(append(b, 0))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			errc := make(chan error, 1)
			go func() {
				_, err := acceptor.accept(server, bufio.NewReader(server))
				server.Close()
				errc <- err
			}()
			tc.send(client, bufio.NewReader(client))
			_, _ = io.Copy(io.Discard, client) // until the acceptor hangs up
			require.ErrorIs(t, <-errc, errAuth)
		})
	}
}

// TestLinkRefusesWrongKey: a node with the wrong key dials a real node's
// peer link and is refused; the node counts it.
func TestLinkRefusesWrongKey(t *testing.T) {
	n := startNode(t, testConfig("n1"))
	c, err := net.Dial("tcp", n.LocalMember().PeerAddr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	err = newLinkAuth([]byte("fedcba9876543210"), testLabel, "a-intruder").dial(c, bufio.NewReader(c), "n1")
	require.ErrorIs(t, err, errAuth)
	require.ErrorIs(t, n.Send("a-intruder", Message{Topic: []byte("t")}), ErrUnknownPeer)
}

// TestSlowPeer is G11: a peer that stops reading gets a bounded queue;
// what does not fit is dropped and counted, the peer is flagged, and once
// a write misses the deadline the link is closed as slow.
func TestSlowPeer(t *testing.T) {
	const queue = 256 << 10
	cfg := testConfig("n1")
	cfg.LinkQueueBytes = queue
	cfg.MaxFrameBytes = 64 << 10
	cfg.LinkWriteTimeout = 300 * time.Millisecond
	n := startNode(t, cfg)

	// A peer that authenticates and never reads again.
	c, err := net.Dial("tcp", n.LocalMember().PeerAddr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	require.NoError(t, newLinkAuth(testKey, testLabel, "a-slow").dial(c, bufio.NewReader(c), "n1"))

	// Offer far more than the socket buffers hold (a few MiB on loopback):
	// fill the queue on every poll until the writer blocks long enough to
	// miss its deadline. The queue must stay within its bound throughout.
	msg := Message{Topic: []byte("firehose"), Payload: bytes.Repeat([]byte{1}, 32<<10), Origin: "n1"}
	var sent, full int
	eventually(t, 15*time.Second, func() bool {
		for {
			err := n.Send("a-slow", msg)
			if errors.Is(err, ErrUnknownPeer) {
				break // closed as slow and removed
			}
			if errors.Is(err, ErrQueueFull) {
				full++
				break
			}
			require.NoError(t, err)
			sent++
		}
		st := peerStats(n, "a-slow")
		require.LessOrEqual(t, st.QueuedBytes, queue, "queue over its bound")
		if st.Name != "" && full > 0 {
			require.True(t, st.Slow, "a peer whose queue overflowed is flagged slow")
			require.GreaterOrEqual(t, st.Dropped, uint64(full), "every refused message is counted")
		}
		return n.Stats().SlowLinkCloses == 1
	}, "the slow link was not closed (stats %+v)", n.Stats())
	require.Positive(t, full, "some messages must be refused")
	t.Logf("sent %d, refused %d", sent, full)

	// The link is closed from n1's side: reading drains what was in flight
	// and then ends.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	copied, err := io.Copy(io.Discard, c)
	t.Logf("drained %d bytes: %v", copied, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "link still open: %v", err)
	eventually(t, 5*time.Second, func() bool { return peerStats(n, "a-slow").Name == "" },
		"a peer known only by its link goes with the link")
}

func peerStats(n *Node, name string) PeerStats {
	for _, p := range n.Stats().Peers {
		if p.Name == name {
			return p
		}
	}
	return PeerStats{}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"minimal", func(*Config) {}, true},
		{"key 16", func(c *Config) { c.SecretKey = testKey[:16] }, true},
		{"key 24", func(c *Config) { c.SecretKey = testKey[:24] }, true},
		{"key 32", func(c *Config) { c.SecretKey = testKey }, true},
		{"key 15", func(c *Config) { c.SecretKey = testKey[:15] }, false},
		{"key 33", func(c *Config) { c.SecretKey = append(testKey, 'x') }, false},
		{"no name", func(c *Config) { c.Name = "" }, false},
		{"long name", func(c *Config) { c.Name = strings.Repeat("n", 256) }, false},
		{"bad utf-8 name", func(c *Config) { c.Name = "n\xff" }, false},
		{"long label", func(c *Config) { c.Label = strings.Repeat("l", 256) }, false},
		{"long version", func(c *Config) { c.Version = strings.Repeat("v", 65) }, false},
		{"host name bind", func(c *Config) { c.BindAddr = "localhost:7946" }, false},
		{"no port bind", func(c *Config) { c.BindAddr = "127.0.0.1" }, false},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "x" }, false},
		{"bad peer addr", func(c *Config) { c.PeerAddr = "nope" }, false},
		{"peer advertise port 0", func(c *Config) { c.PeerAdvertiseAddr = "h:0" }, false},
		{"empty seed", func(c *Config) { c.Seeds = []string{""} }, false},
		{"negative timeout", func(c *Config) { c.QueryTimeout = -1 }, false},
		{"negative queue", func(c *Config) { c.LinkQueueBytes = -1 }, false},
		{"tiny frame", func(c *Config) { c.MaxFrameBytes = 100 }, false},
		{"frame over queue", func(c *Config) { c.LinkQueueBytes, c.MaxFrameBytes = 64<<10, 128<<10 }, false},
		{"small queue shrinks frame", func(c *Config) { c.LinkQueueBytes = 64 << 10 }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Name: "n1"}
			tc.edit(&cfg)
			got, err := cfg.withDefaults()
			if tc.ok {
				require.NoError(t, err)
				require.LessOrEqual(t, got.MaxFrameBytes, got.LinkQueueBytes)
				require.NotNil(t, got.Logger)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.NotContains(t, err.Error(), string(testKey), "never echo the key")
		})
	}
	got, err := Config{Name: "n1"}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:7946", got.BindAddr)
	require.Equal(t, "0.0.0.0:7947", got.PeerAddr)
	require.Equal(t, DefaultRejoinInterval, got.RejoinInterval)
}

func TestStartErrors(t *testing.T) {
	n := startNode(t, testConfig("n1"))
	require.Error(t, n.Start(), "a node starts once")

	// The peer port is taken: Start fails and leaves nothing running.
	cfg := testConfig("n2")
	cfg.PeerAddr = n.LocalMember().PeerAddr
	n2, err := New(cfg)
	require.NoError(t, err)
	require.Error(t, n2.Start())
	require.NoError(t, n2.Shutdown())

	n3, err := New(testConfig("n3"))
	require.NoError(t, err)
	require.NoError(t, n3.Shutdown())
	require.Error(t, n3.Start(), "no start after shutdown")
	_, err = n3.Query(t.Context(), "k", nil)
	require.ErrorIs(t, err, ErrNotRunning)
	_, err = n3.Join(t.Context(), []string{"127.0.0.1:1"})
	require.ErrorIs(t, err, ErrNotRunning)
}
