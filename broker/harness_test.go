package broker_test

// Shared helpers for the black-box tests of package broker: a node on
// 127.0.0.1:0, a condition poller, a Paho client with an inbox, and a raw
// MQTT client (built on the project's codec) for the flows Paho will not
// perform on purpose, such as dropping a connection before acknowledging.
// Every helper is bounded: nothing here waits without a deadline.

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/wsconn"
)

// TestMain is the only TestMain of package broker (internal and external
// test files share one binary): every test must leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Bounds for every wait in these tests. They are ceilings for a loaded
// 2-core machine running -race, not expectations: the happy path returns as
// soon as the condition holds.
const (
	opTimeout   = 5 * time.Second // one network round trip or token
	pollEvery   = 2 * time.Millisecond
	quietWindow = 300 * time.Millisecond // "nothing else arrives" checks
)

// startServer runs a node on 127.0.0.1:0 with the default configuration,
// changed by configure when not nil. The node is closed when the test ends;
// its log is printed only if the test failed.
func startServer(t testing.TB, configure func(*broker.Config)) *broker.Server {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	// These tests are about the protocol; channel keys have their own.
	cfg.NoAuth = true
	cfg.DataDir = t.TempDir()
	if configure != nil {
		configure(&cfg)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := broker.New(cfg, logger)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv.Serve(ln)
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv
}

// syncBuffer collects the node's log; connection goroutines write to it
// concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds, failing the test after deadline.
func waitFor(t testing.TB, deadline time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", deadline)
		}
		time.Sleep(pollEvery)
	}
}

// transport is how a client reaches the node's one port.
type transport string

const (
	transportTCP transport = "tcp"
	transportWS  transport = "ws"
)

var transports = []transport{transportTCP, transportWS}

// other is the transport that is not tr, for cases that mix the two.
func (tr transport) other() transport {
	if tr == transportWS {
		return transportTCP
	}
	return transportWS
}

// forEachTransport runs fn as a sub-test per transport.
func forEachTransport(t *testing.T, fn func(t *testing.T, tr transport)) {
	t.Helper()
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) { fn(t, tr) })
	}
}

// url is the broker URL a client of transport tr dials; WebSocket clients
// use the conventional /mqtt path (any path works, see TestWebSocketAnyPath).
func (tr transport) url(srv *broker.Server) string {
	if tr == transportWS {
		return "ws://" + srv.Addr().String() + "/mqtt"
	}
	return "tcp://" + srv.Addr().String()
}

// ---------------------------------------------------------------- Paho

// pahoOptions are the options every Paho client here starts from: MQTT
// 3.1.1, no automatic reconnect (a reconnecting client would hide the very
// disconnects the tests look for), bounded timeouts, ordered delivery.
func pahoOptions(srv *broker.Server, tr transport, clientID string) *paho.ClientOptions {
	return paho.NewClientOptions().
		AddBroker(tr.url(srv)).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(opTimeout).
		SetWriteTimeout(opTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
}

// connectPaho connects a client built from opts, failing the test unless
// CONNACK accepted it. The client is disconnected when the test ends.
func connectPaho(t testing.TB, opts *paho.ClientOptions) (paho.Client, *paho.ConnectToken) {
	t.Helper()
	c := paho.NewClient(opts)
	tok := c.Connect()
	awaitToken(t, tok)
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(100)
		}
	})
	ct, ok := tok.(*paho.ConnectToken)
	require.True(t, ok, "Connect returns a *ConnectToken")
	return c, ct
}

// connectWithInbox connects a clean-session client whose every message
// lands in the returned inbox (subscriptions made with a nil callback go to
// the default handler, so the inbox sees exactly what the node sent).
func connectWithInbox(t testing.TB, srv *broker.Server, tr transport, clientID string) (paho.Client, *inbox) {
	t.Helper()
	in := &inbox{}
	c, _ := connectPaho(t, pahoOptions(srv, tr, clientID).SetDefaultPublishHandler(in.handle))
	return c, in
}

// awaitToken waits for a Paho token with a deadline and fails on its error.
func awaitToken(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(opTimeout) {
		t.Fatalf("paho token not completed within %v", opTimeout)
	}
	require.NoError(t, tok.Error())
}

func subscribe(t testing.TB, c paho.Client, filter string, qos byte) {
	t.Helper()
	awaitToken(t, c.Subscribe(filter, qos, nil))
}

func publish(t testing.TB, c paho.Client, topic string, qos byte, retain bool, payload []byte) {
	t.Helper()
	awaitToken(t, c.Publish(topic, qos, retain, payload))
}

// message is a copy of a received Paho message.
type message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	Dup      bool
}

// inbox records the messages a Paho client receives, in order.
type inbox struct {
	mu   sync.Mutex
	msgs []message
}

func (in *inbox) handle(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, message{
		Topic:    m.Topic(),
		Payload:  bytes.Clone(m.Payload()),
		QoS:      m.Qos(),
		Retained: m.Retained(),
		Dup:      m.Duplicate(),
	})
}

func (in *inbox) snapshot() []message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]message(nil), in.msgs...)
}

// waitCount waits until at least n messages arrived and returns them all.
func (in *inbox) waitCount(t testing.TB, n int) []message {
	t.Helper()
	var got []message
	waitFor(t, opTimeout, func() bool {
		got = in.snapshot()
		return len(got) >= n
	})
	return got
}

// waitMessage waits for a message with this topic and payload and returns
// it.
func (in *inbox) waitMessage(t testing.TB, topic, payload string) message {
	t.Helper()
	var found message
	waitFor(t, opTimeout, func() bool {
		for _, m := range in.snapshot() {
			if m.Topic == topic && string(m.Payload) == payload {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// untilSentinel waits for the first message on topic with the sentinel
// payload and returns the messages that arrived before it. Because the node
// keeps one connection's deliveries in order, anything routed to this client
// before the sentinel was is in the returned slice: the sentinel proves
// absence without sleeping.
func (in *inbox) untilSentinel(t testing.TB, topic, sentinel string) []message {
	t.Helper()
	var before []message
	waitFor(t, opTimeout, func() bool {
		for i, m := range in.snapshot() {
			if m.Topic == topic && string(m.Payload) == sentinel {
				before = in.snapshot()[:i]
				return true
			}
		}
		return false
	})
	return before
}

// topics lists the topics of msgs, for readable assertions.
func topics(msgs []message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Topic
	}
	return out
}

// ---------------------------------------------------------------- raw MQTT

// rawClient speaks MQTT with the project's codec over TCP or WebSocket, for
// what a well-behaved library will not do: leave a QoS 1 message
// unacknowledged, vanish without DISCONNECT, send bytes in a chosen order.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *mqtt.Reader
}

func dialRaw(t *testing.T, srv *broker.Server, tr transport) *rawClient {
	t.Helper()
	var nc net.Conn
	switch tr {
	case transportWS:
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: opTimeout}
		ws, resp, err := d.Dial(tr.url(srv), nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		nc = wsconn.New(ws)
	default:
		var err error
		nc, err = net.DialTimeout("tcp", srv.Addr().String(), opTimeout)
		require.NoError(t, err)
	}
	return newRawClient(t, nc)
}

// newRawClient wraps an established connection; it is closed when the test
// ends.
func newRawClient(t *testing.T, nc net.Conn) *rawClient {
	t.Cleanup(func() { _ = nc.Close() })
	return &rawClient{t: t, nc: nc, r: mqtt.NewReader(nc, 0)}
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetWriteDeadline(time.Now().Add(opTimeout)))
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

// next reads one packet; body is a copy.
func (c *rawClient) next() (mqtt.FixedHeader, []byte) {
	c.t.Helper()
	h, body, err := c.nextErr(opTimeout)
	require.NoError(c.t, err, "reading a packet")
	return h, body
}

func (c *rawClient) nextErr(timeout time.Duration) (mqtt.FixedHeader, []byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	h, body, err := c.r.Next()
	return h, bytes.Clone(body), err
}

// connect sends CONNECT and returns the CONNACK fields.
func (c *rawClient) connect(p mqtt.Connect) (sessionPresent bool, code byte) {
	c.t.Helper()
	c.write(p.AppendTo(nil))
	h, body := c.next()
	require.Equal(c.t, mqtt.TypeConnack, h.Type)
	present, code, err := mqtt.DecodeConnack(body)
	require.NoError(c.t, err)
	return present, code
}

// mustConnect connects and requires CONNACK 0 [MQTT-3.2.2-3].
func (c *rawClient) mustConnect(p mqtt.Connect) (sessionPresent bool) {
	c.t.Helper()
	present, code := c.connect(p)
	require.Equal(c.t, mqtt.Accepted, code, "CONNACK return code")
	return present
}

// subscribe subscribes one filter and requires SUBACK granting qos.
func (c *rawClient) subscribe(id uint16, filter string, qos byte) {
	c.t.Helper()
	c.write(mqtt.AppendSubscribe(nil, id, []mqtt.Subscription{{Filter: []byte(filter), QoS: qos}}))
	h, body := c.next()
	require.Equal(c.t, mqtt.TypeSuback, h.Type)
	gotID, codes, err := mqtt.DecodeSuback(body, nil)
	require.NoError(c.t, err)
	require.Equal(c.t, id, gotID)
	require.Equal(c.t, []byte{qos}, codes)
}

// readPublish reads the next packet and requires a PUBLISH; the returned
// Topic and Payload are private copies.
func (c *rawClient) readPublish() mqtt.Publish {
	c.t.Helper()
	h, body := c.next()
	require.Equal(c.t, mqtt.TypePublish, h.Type, "want PUBLISH, got %v", h.Type)
	var p mqtt.Publish
	require.NoError(c.t, mqtt.DecodePublish(h.Flags, body, &p))
	return p
}

func (c *rawClient) puback(ids ...uint16) {
	c.t.Helper()
	var b []byte
	for _, id := range ids {
		b = mqtt.AppendAck(b, mqtt.TypePuback, id)
	}
	c.write(b)
}

// expectClosed requires the node to close the connection without sending
// anything first.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	h, _, err := c.nextErr(opTimeout)
	require.Error(c.t, err, "want the connection closed, got %v", h.Type)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", opTimeout)
	}
}
