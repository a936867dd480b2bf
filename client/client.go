// Package client is the Go MQTT 3.1.1 client behind `pubsub pub`, `sub`,
// `top` and `bench`, usable as a small SDK. It speaks to any MQTT 3.1.1
// broker over tcp://, tls://, ws:// and wss://, with QoS 0, 1 and 2 in both
// directions.
//
// One goroutine reads; writes go through a buffered writer under a mutex, so
// Publish from many goroutines is safe. QoS 0 messages can be batched with
// Enqueue + Flush (the load generator does), everything else flushes at once.
package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/wsconn"
)

// DefaultServer is used when Options.Server is empty.
const DefaultServer = "localhost:8080"

// Options configure a connection.
type Options struct {
	// Server is host:port or a URL with scheme tcp, tls (also mqtts, ssl),
	// ws or wss. A ws URL without a path connects to "/".
	Server   string
	ClientID string // empty: the server assigns one (needs a clean session)
	Username string
	// Key is the channel key, sent as the CONNECT password (DESIGN §5).
	Key string
	// Persistent asks for a persistent session (clean session = 0).
	Persistent     bool
	KeepAlive      time.Duration // default 30s; 0 after defaults means none
	ConnectTimeout time.Duration // default 10s
	TLSConfig      *tls.Config
	Will           *Message
	// Buffer is the capacity of the Messages channel (default 1024). When it
	// is full the reader waits, which back-pressures the broker.
	Buffer int
}

// Message is a received or to-be-published application message.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Dup     bool
}

// Subscription asks for a filter at a maximum QoS.
type Subscription struct {
	Filter string
	QoS    byte
}

// ConnackError is a CONNECT refused by the server.
type ConnackError struct{ Code byte }

func (e *ConnackError) Error() string {
	reasons := map[byte]string{
		1: "unacceptable protocol version",
		2: "client identifier rejected",
		3: "server unavailable",
		4: "bad user name or password",
		5: "not authorized (check --key)",
	}
	if r, ok := reasons[e.Code]; ok {
		return fmt.Sprintf("connection refused: %s (code %d)", r, e.Code)
	}
	return fmt.Sprintf("connection refused (code %d)", e.Code)
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: connection closed")

// Client is a connected MQTT client.
type Client struct {
	nc             net.Conn
	SessionPresent bool

	wmu sync.Mutex
	bw  *bufio.Writer

	mu      sync.Mutex
	nextID  uint16
	waiting map[uint16]chan []byte // packet id -> reply body (SUBACK codes) or nil
	qos2in  map[uint16]bool

	msgs chan Message
	api  apiWaiters // answers to pending Requests (request.go)
	done chan struct{}
	err  error
	once sync.Once
}

// Dial connects and completes the CONNECT/CONNACK exchange.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 1024
	}
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	nc, err := dialTransport(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		nc:      nc,
		bw:      bufio.NewWriterSize(nc, 32<<10),
		waiting: make(map[uint16]chan []byte),
		qos2in:  make(map[uint16]bool),
		msgs:    make(chan Message, opts.Buffer),
		done:    make(chan struct{}),
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	connect := mqtt.Connect{
		ProtocolName:  "MQTT",
		ProtocolLevel: 4,
		CleanSession:  !opts.Persistent,
		KeepAlive:     uint16(opts.KeepAlive / time.Second),
		ClientID:      opts.ClientID,
	}
	if opts.Username != "" || opts.Key != "" {
		connect.UsernameFlag = true
		connect.Username = opts.Username
	}
	if opts.Key != "" {
		connect.PasswordFlag = true
		connect.Password = []byte(opts.Key)
	}
	if w := opts.Will; w != nil {
		connect.WillFlag = true
		connect.WillTopic = w.Topic
		connect.WillPayload = w.Payload
		connect.WillQoS = w.QoS
		connect.WillRetain = w.Retain
	}
	if _, err := nc.Write(connect.AppendTo(nil)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	r := mqtt.NewReader(nc, 0)
	h, body, err := r.Next()
	stop()
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no CONNACK from %s within %s", opts.Server, opts.ConnectTimeout)
		}
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if h.Type != mqtt.TypeConnack {
		nc.Close()
		return nil, fmt.Errorf("server sent %s instead of CONNACK", h.Type)
	}
	present, code, err := mqtt.DecodeConnack(body)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if code != mqtt.Accepted {
		nc.Close()
		return nil, &ConnackError{Code: code}
	}
	_ = nc.SetDeadline(time.Time{})
	c.SessionPresent = present
	go c.readLoop(r)
	if opts.KeepAlive > 0 {
		go c.keepAlive(opts.KeepAlive)
	}
	return c, nil
}

func dialTransport(ctx context.Context, opts Options) (net.Conn, error) {
	server := opts.Server
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "tcp://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: %w", opts.Server, err)
	}
	var d net.Dialer
	switch u.Scheme {
	case "tcp", "mqtt":
		return d.DialContext(ctx, "tcp", u.Host)
	case "tls", "mqtts", "ssl":
		td := tls.Dialer{NetDialer: &d, Config: opts.TLSConfig}
		return td.DialContext(ctx, "tcp", u.Host)
	case "ws", "wss":
		wd := websocket.Dialer{
			Subprotocols:    []string{"mqtt"},
			TLSClientConfig: opts.TLSConfig,
			NetDialContext:  d.DialContext,
		}
		if u.Path == "" {
			u.Path = "/"
		}
		ws, resp, err := wd.DialContext(ctx, u.String(), nil)
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket upgrade to %s: %s", u, resp.Status)
			}
			return nil, err
		}
		return wsconn.New(ws), nil
	default:
		return nil, fmt.Errorf("server %q: unknown scheme %q (use tcp://, tls://, ws:// or wss://)", opts.Server, u.Scheme)
	}
}

// Messages delivers received PUBLISH messages. It is closed when the
// connection ends.
func (c *Client) Messages() <-chan Message { return c.msgs }

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil after Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *Client) fail(err error) {
	c.once.Do(func() {
		c.err = err
		c.nc.Close()
		close(c.done)
	})
}

// Close sends DISCONNECT (so no will is published) and closes.
func (c *Client) Close() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.wmu.Lock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.bw.Write(mqtt.AppendDisconnect(nil))
	_ = c.bw.Flush()
	c.wmu.Unlock()
	c.fail(nil)
	return nil
}

func (c *Client) write(b []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.bw.Write(b); err != nil {
		c.fail(err)
		return err
	}
	if flush {
		if err := c.bw.Flush(); err != nil {
			c.fail(err)
			return err
		}
	}
	return nil
}

// Flush writes what Enqueue buffered.
func (c *Client) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.bw.Flush(); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// Enqueue buffers a QoS 0 publish without flushing; call Flush to send.
func (c *Client) Enqueue(topic string, payload []byte, retain bool) error {
	p := mqtt.Publish{Topic: []byte(topic), Payload: payload, Retain: retain}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := c.bw.AvailableBuffer()
	if _, err := c.bw.Write(p.AppendTo(buf)); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// Publish sends a message. At QoS 1 it returns after PUBACK, at QoS 2 after
// PUBCOMP, or when ctx ends.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if qos > 2 {
		return fmt.Errorf("qos %d: must be 0, 1 or 2", qos)
	}
	p := mqtt.Publish{Topic: []byte(topic), Payload: payload, QoS: qos, Retain: retain}
	if qos == 0 {
		return c.write(p.AppendTo(nil), true)
	}
	id, ch, err := c.register()
	if err != nil {
		return err
	}
	p.PacketID = id
	if err := c.write(p.AppendTo(nil), true); err != nil {
		c.unregister(id)
		return err
	}
	_, err = c.await(ctx, id, ch)
	return err
}

// Subscribe subscribes and returns the SUBACK return codes (the granted QoS,
// or 0x80 for a refused filter), one per subscription.
func (c *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]byte, error) {
	if len(subs) == 0 {
		return nil, errors.New("subscribe: no filters")
	}
	id, ch, err := c.register()
	if err != nil {
		return nil, err
	}
	ms := make([]mqtt.Subscription, len(subs))
	for i, s := range subs {
		ms[i] = mqtt.Subscription{Filter: []byte(s.Filter), QoS: s.QoS}
	}
	if err := c.write(mqtt.AppendSubscribe(nil, id, ms), true); err != nil {
		c.unregister(id)
		return nil, err
	}
	return c.await(ctx, id, ch)
}

// Unsubscribe removes filters and waits for UNSUBACK.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	id, ch, err := c.register()
	if err != nil {
		return err
	}
	fs := make([][]byte, len(filters))
	for i, f := range filters {
		fs[i] = []byte(f)
	}
	if err := c.write(mqtt.AppendUnsubscribe(nil, id, fs), true); err != nil {
		c.unregister(id)
		return err
	}
	_, err = c.await(ctx, id, ch)
	return err
}

func (c *Client) register() (uint16, chan []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return 0, nil, ErrClosed
	default:
	}
	if len(c.waiting) >= 65535 {
		return 0, nil, errors.New("client: too many requests in flight")
	}
	for {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, used := c.waiting[c.nextID]; !used {
			break
		}
	}
	ch := make(chan []byte, 1)
	c.waiting[c.nextID] = ch
	return c.nextID, ch, nil
}

func (c *Client) unregister(id uint16) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

func (c *Client) await(ctx context.Context, id uint16, ch chan []byte) ([]byte, error) {
	select {
	case b := <-ch:
		return b, nil
	case <-ctx.Done():
		c.unregister(id)
		return nil, ctx.Err()
	case <-c.done:
		if c.err != nil {
			return nil, c.err
		}
		return nil, ErrClosed
	}
}

func (c *Client) complete(id uint16, body []byte) {
	c.mu.Lock()
	ch := c.waiting[id]
	delete(c.waiting, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- body
	}
}

func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if c.write(mqtt.AppendPingreq(nil), true) != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *Client) readLoop(r *mqtt.Reader) {
	defer close(c.msgs)
	for {
		h, body, err := r.Next()
		if err != nil {
			c.fail(err)
			return
		}
		if err := c.handle(h, body); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Client) handle(h mqtt.FixedHeader, body []byte) error {
	switch h.Type {
	case mqtt.TypePublish:
		var p mqtt.Publish
		if err := mqtt.DecodePublish(h.Flags, body, &p); err != nil {
			return err
		}
		m := Message{Topic: string(p.Topic), Payload: append([]byte(nil), p.Payload...), QoS: p.QoS, Retain: p.Retain, Dup: p.Dup}
		if p.QoS == 2 {
			c.mu.Lock()
			seen := c.qos2in[p.PacketID]
			c.qos2in[p.PacketID] = true
			c.mu.Unlock()
			if !seen {
				if !c.dispatch(m) {
					return nil
				}
			}
			return c.write(mqtt.AppendAck(nil, mqtt.TypePubrec, p.PacketID), true)
		}
		if !c.dispatch(m) {
			return nil
		}
		if p.QoS == 1 {
			return c.write(mqtt.AppendAck(nil, mqtt.TypePuback, p.PacketID), true)
		}
	case mqtt.TypePubrel:
		id, err := mqtt.DecodeAck(body)
		if err != nil {
			return err
		}
		c.mu.Lock()
		delete(c.qos2in, id)
		c.mu.Unlock()
		return c.write(mqtt.AppendAck(nil, mqtt.TypePubcomp, id), true)
	case mqtt.TypePuback, mqtt.TypePubcomp, mqtt.TypeUnsuback:
		id, err := mqtt.DecodeAck(body)
		if err != nil {
			return err
		}
		c.complete(id, nil)
	case mqtt.TypePubrec:
		id, err := mqtt.DecodeAck(body)
		if err != nil {
			return err
		}
		return c.write(mqtt.AppendAck(nil, mqtt.TypePubrel, id), true)
	case mqtt.TypeSuback:
		id, codes, err := mqtt.DecodeSuback(body, nil)
		if err != nil {
			return err
		}
		c.complete(id, append([]byte(nil), codes...))
	case mqtt.TypePingresp:
	default:
		return fmt.Errorf("unexpected %s from server", h.Type)
	}
	return nil
}

// deliver hands m to the Messages channel, waiting while it is full; it
// reports false when the client closed meanwhile.
func (c *Client) deliver(m Message) bool {
	select {
	case c.msgs <- m:
		return true
	case <-c.done:
		return false
	}
}
