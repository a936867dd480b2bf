package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// conn is one MQTT network connection (TCP, TLS or WebSocket). One goroutine
// reads and handles packets; a writer goroutine exists only while outbound
// bytes are pending (DESIGN §3), so an idle connection is one parked
// goroutine and a small read buffer.
type conn struct {
	srv       *Server
	nc        net.Conn
	transport string

	// Set by the reading goroutine during CONNECT, read-only afterwards.
	id        string // connection id (Emitter `me`, private channels)
	username  string // CONNECT username: an identity shown by presence, never authority
	origin    string // the CONNECT key's subject: JSON-RPC pushes' origin
	sess      *session
	connected bool
	keepalive time.Duration
	will      *willMessage

	// claims of the CONNECT key; nil without one. Atomic because the key
	// enforcer reads it from another goroutine.
	claims atomic.Pointer[keys.Claims]

	// Only the reading goroutine touches these.
	deadlineArmed time.Time               // when armKeepalive last set the read deadline
	keyCache      map[string]*keys.Claims // verified Emitter-dialect keys
	api           *emitterAPIState        // Emitter links; nil until used (links.go)
	subScratch    []mqtt.Subscription
	unsubScratch  [][]byte
	codeScratch   []byte
	enc           encoder

	// Outbound queue. See enqueue and flush.
	omu        sync.Mutex
	out        *outBuf // bytes waiting for the writer
	spare      *outBuf // the buffer the writer last wrote, reused
	writingLen int     // bytes handed to the socket and not yet written
	writing    bool    // a writer goroutine is running
	oclosed    bool    // no more bytes are accepted
	// closeWhenFlushed: the client sent DISCONNECT while replies were
	// queued; the writer sends them, then closes the socket (A20).
	closeWhenFlushed bool
	// cur/curOff: a buffer a non-blocking write left partly written; the
	// flusher finishes it before anything else.
	cur    *outBuf
	curOff int

	// Deferred flushing (see deferFlush). raw is the socket for
	// non-blocking writes (nil for TLS and WebSocket); rawWrite is built
	// once so raw.Write does not allocate; rawBuf/rawN/rawErr are its
	// argument and results, touched only by the goroutine that set writing.
	raw      syscall.RawConn
	rawWrite func(fd uintptr) bool
	rawBuf   []byte
	rawN     int
	rawErr   error
	// deferred: some reading goroutine will flush this conn before it
	// next blocks.
	deferred atomic.Bool
	// pending lists the conns this conn's reading goroutine owes a flush.
	pending []*conn

	cleanDisconnect atomic.Bool // DISCONNECT received: no will [MQTT-3.14.4-3]
	closeReason     atomic.Pointer[string]
}

type willMessage struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// outBuf is a pooled outbound buffer. Pointers go through the pool, so
// recycling does not allocate.
type outBuf struct {
	b     []byte
	since int64 // unix ns the oldest message in b was routed; 0 = unknown
}

// maxPooledBuf keeps one burst's large buffer from being pinned by the pool.
const maxPooledBuf = 64 << 10

var outBufs = sync.Pool{New: func() any { return &outBuf{b: make([]byte, 0, 4096)} }}

func putOutBuf(b *outBuf) {
	if b == nil || cap(b.b) > maxPooledBuf {
		return
	}
	b.b = b.b[:0]
	b.since = 0
	outBufs.Put(b)
}

// Close reasons, also used as log values.
var (
	reasonSlowConsumer = "slow consumer"
	reasonTakeover     = "session taken over"
	reasonShutdown     = "server shutting down"
	reasonKeyExpired   = "key expired or revoked"
)

// errors that end the read loop; they close the connection without a reply,
// which is what the spec asks of every protocol violation [MQTT-4.8.0-1].
var (
	errFirstNotConnect = errors.New("first packet is not CONNECT [MQTT-3.1.0-1]")
	errSecondConnect   = errors.New("second CONNECT [MQTT-3.1.0-2]")
	errServerOnly      = errors.New("packet type only a server may send")
	errUnknownPacketID = errors.New("ack for an unknown packet id")
)

// serveMQTT runs an MQTT connection until it closes. It returns when the
// connection is closed and its session detached.
func (s *Server) serveMQTT(nc net.Conn, transport string) {
	c := &conn{srv: s, nc: nc, transport: transport}
	c.enc.via = c
	c.setupRaw()
	s.conns.Store(c, struct{}{})
	defer s.conns.Delete(c)
	if s.closing.Load() {
		nc.Close()
		return
	}
	err := c.readLoop()
	c.shutdown(err)
}

func (c *conn) readLoop() error {
	lim := &c.srv.cfg.Limits
	r := mqtt.NewReader(c.nc, int(lim.MaxPacketSize))
	// Judge the type byte before reading a body, so a pre-auth client cannot
	// make the node buffer a large first packet (A2, A3).
	r.CheckHeader = func(h mqtt.FixedHeader) error {
		switch {
		case !c.connected && h.Type != mqtt.TypeConnect:
			return errFirstNotConnect
		case c.connected && h.Type == mqtt.TypeConnect:
			return errSecondConnect
		}
		switch h.Type {
		case mqtt.TypeConnack, mqtt.TypeSuback, mqtt.TypeUnsuback, mqtt.TypePingresp:
			return errServerOnly
		}
		return nil
	}
	if _, sniffed := c.nc.(*sniffConn); !sniffed {
		// A TCP connection's connect timeout already runs from its accept
		// (sniff); arming it again here would give a client that sends its
		// first byte just in time a second full timeout (H4).
		_ = c.nc.SetReadDeadline(time.Now().Add(time.Duration(lim.ConnectTimeout)))
	}
	for {
		if !r.HasPacket() {
			// About to block on the socket: first write what this batch
			// queued, to other connections and to this one (deferFlush).
			c.flushPending()
		}
		if c.connected && r.Buffered() == 0 {
			c.armKeepalive()
		}
		h, body, err := r.Next()
		if err != nil {
			return err
		}
		if err := c.handle(h, body); err != nil {
			return err
		}
	}
}

// armKeepalive enforces keepalive by read deadline, with no ticker: a
// client silent for 1.5 x its interval is closed [MQTT-3.1.2-24]; 0
// disables it. Re-arming a deadline costs a runtime timer update, so it is
// done at most once per slack period; the deadline carries that slack, so a
// client is closed between 1.5 x and 1.5 x + slack after its last packet
// (slack is at most 500 ms, inside reliability case B8's 1 s window).
func (c *conn) armKeepalive() {
	if c.keepalive <= 0 {
		if !c.deadlineArmed.IsZero() {
			return
		}
		_ = c.nc.SetReadDeadline(time.Time{})
		c.deadlineArmed = time.Unix(1, 0)
		return
	}
	slack := min(c.keepalive/2, 500*time.Millisecond)
	now := time.Now()
	if now.Sub(c.deadlineArmed) < slack {
		return
	}
	_ = c.nc.SetReadDeadline(now.Add(c.keepalive*3/2 + slack))
	c.deadlineArmed = now
}

func (c *conn) handle(h mqtt.FixedHeader, body []byte) error {
	switch h.Type {
	case mqtt.TypeConnect:
		return c.handleConnect(body)
	case mqtt.TypePublish:
		return c.handlePublish(h.Flags, body)
	case mqtt.TypePuback, mqtt.TypePubrec, mqtt.TypePubrel, mqtt.TypePubcomp:
		id, err := mqtt.DecodeAck(body)
		if err != nil {
			return err
		}
		return c.handleAck(h.Type, id)
	case mqtt.TypeSubscribe:
		return c.handleSubscribe(body)
	case mqtt.TypeUnsubscribe:
		return c.handleUnsubscribe(body)
	case mqtt.TypePingreq:
		c.enqueueControl(mqtt.AppendPingresp(nil))
		return nil
	case mqtt.TypeDisconnect:
		c.cleanDisconnect.Store(true)
		return errClientDisconnected
	}
	return fmt.Errorf("unexpected packet type %d", h.Type)
}

var errClientDisconnected = errors.New("client sent DISCONNECT")

// writeNow writes a reply directly to the socket; used only before the
// connection is registered (refused CONNECT), when no writer can be running.
func (c *conn) writeNow(b []byte) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Duration(c.srv.cfg.Limits.WriteTimeout)))
	_, _ = c.nc.Write(b)
}

// refuse answers CONNECT with a return code and ends the connection
// [MQTT-3.2.2-5].
func (c *conn) refuse(code byte, why string) error {
	c.writeNow(mqtt.AppendConnack(nil, false, code))
	return fmt.Errorf("connect refused (code %d): %s", code, why)
}

func (c *conn) handleConnect(body []byte) error {
	var p mqtt.Connect
	if err := mqtt.DecodeConnect(body, &p); err != nil {
		if errors.Is(err, mqtt.ErrUnsupportedProtocolLevel) {
			// [MQTT-3.1.2-2]
			return c.refuse(mqtt.RefusedProtocolVersion, "protocol level "+strconv.Itoa(int(p.ProtocolLevel)))
		}
		return err
	}
	lim := &c.srv.cfg.Limits
	if p.ClientID == "" {
		if !p.CleanSession {
			// [MQTT-3.1.3-8]
			return c.refuse(mqtt.RefusedIdentifierRejected, "empty client id needs clean session")
		}
		// [MQTT-3.1.3-6]: the server assigns a unique id.
		p.ClientID = "auto-" + strconv.FormatUint(c.srv.nextAnon.Add(1), 36) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	keepalive := time.Duration(p.KeepAlive) * time.Second
	if max := time.Duration(lim.MaxKeepalive); max > 0 && (keepalive == 0 || keepalive > max) {
		// MQTT 3.1.1 cannot tell a client to use another keepalive; refusing
		// is honest where clamping would get it disconnected later (B8),
		// which is also what Mosquitto 2 does.
		return c.refuse(mqtt.RefusedIdentifierRejected, "keepalive above limits.max_keepalive")
	}
	if c.srv.closing.Load() {
		return c.refuse(mqtt.RefusedServerUnavailable, "server shutting down")
	}
	if p.WillFlag {
		if err := topic.ValidateTopic([]byte(p.WillTopic)); err != nil {
			// [MQTT-3.1.2-9]/[MQTT-3.3.2-2] apply to the will topic too.
			return fmt.Errorf("will topic: %w", err)
		}
		c.will = &willMessage{topic: p.WillTopic, payload: p.WillPayload, qos: p.WillQoS, retain: p.WillRetain}
	}
	// H5: take the slot with one atomic add. A load-then-add lets a burst
	// of concurrent CONNECTs all pass the check before any is counted.
	if n := c.srv.online.Add(1); lim.MaxConnections > 0 && n > int64(lim.MaxConnections) {
		c.srv.online.Add(-1)
		return c.refuse(mqtt.RefusedServerUnavailable, "limits.max_connections reached")
	}
	if p.PasswordFlag && len(p.Password) > 0 && !c.srv.cfg.NoAuth {
		// The password is the session's channel key (DESIGN §5). With
		// no_auth any key is ignored, as Eventhub's disable_auth does.
		cl, err := c.srv.keyring.Verify(string(p.Password))
		if err != nil {
			c.srv.online.Add(-1)
			// E1-E4: log why, never the key.
			c.srv.log.Info("connect refused: invalid key", "client_id", p.ClientID, "remote", c.remote(), "reason", err.Error())
			return c.refuse(mqtt.RefusedNotAuthorized, "invalid key")
		}
		c.claims.Store(cl)
		c.origin = cl.Subject
	}
	c.id = newConnID()
	c.username = p.Username // before attach: a resumed session's presence events name it
	c.srv.stats.AddConnectionsTotal(1)
	c.keepalive = keepalive
	// attach sets c.sess and queues CONNACK, then anything the session
	// kept [MQTT-4.4.0-1], before publishers can reach c [MQTT-3.2.0-1].
	c.srv.attach(c, &p)
	c.connected = true
	return nil
}

func (c *conn) handlePublish(flags byte, body []byte) error {
	var p mqtt.Publish
	if err := mqtt.DecodePublish(flags, body, &p); err != nil {
		return err
	}
	c.srv.stats.AddMessagesIn(1)
	c.srv.stats.AddBytesIn(int64(len(p.Payload)))
	switch p.QoS {
	case 0:
		return c.routePublish(&p)
	case 1:
		if err := c.routePublish(&p); err != nil {
			return err
		}
		c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypePuback, p.PacketID))
	case 2:
		// Route once per packet id until PUBREL releases it, so a resent
		// PUBLISH with DUP is not delivered twice (B4) [MQTT-4.3.3-2].
		if c.sess.receiveQoS2(p.PacketID) {
			if err := c.routePublish(&p); err != nil {
				return err
			}
		}
		c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypePubrec, p.PacketID))
	}
	return nil
}

func (c *conn) handleAck(t mqtt.Type, id uint16) error {
	switch t {
	case mqtt.TypePuback:
		c.sess.acked(c, id, mqtt.TypePuback)
	case mqtt.TypePubrec:
		if c.sess.acked(c, id, mqtt.TypePubrec) {
			c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypePubrel, id))
		} else {
			// [MQTT-4.3.3-1] still answer so the client can finish its flow.
			c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypePubrel, id))
		}
	case mqtt.TypePubcomp:
		c.sess.acked(c, id, mqtt.TypePubcomp)
	case mqtt.TypePubrel:
		c.sess.releaseQoS2(id)
		// [MQTT-4.3.3-2]: PUBCOMP even for an id we no longer know.
		c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypePubcomp, id))
	}
	return nil
}

func (c *conn) handleSubscribe(body []byte) error {
	id, subs, err := mqtt.DecodeSubscribe(body, c.subScratch[:0])
	if err != nil {
		return err
	}
	c.subScratch = subs
	codes := c.codeScratch[:0]
	var granted []grantedSub
	for _, sub := range subs {
		g, code := c.subscribeOne(string(sub.Filter), sub.QoS, id)
		codes = append(codes, code)
		if code != mqtt.SubackFailure {
			granted = append(granted, g)
		}
	}
	c.codeScratch = codes
	// [MQTT-3.8.4-1]: SUBACK with one code per filter, in order.
	c.enqueueControl(mqtt.AppendSuback(nil, id, codes))
	for _, g := range granted {
		c.srv.sendRetained(c.sess, g.filter, g.qos, g.tag)
	}
	return nil
}

type grantedSub struct {
	filter string
	qos    byte
	tag    uint8
}

func (c *conn) handleUnsubscribe(body []byte) error {
	id, filters, err := mqtt.DecodeUnsubscribe(body, c.unsubScratch[:0])
	if err != nil {
		return err
	}
	c.unsubScratch = filters
	for _, f := range filters {
		// The same dialect rules as SUBSCRIBE, so "KEY/a/b/" removes "a/b/#".
		// Emitter answers unsubscribe without checking the key.
		if pt, err := parseTopic(string(f), true); err == nil {
			c.srv.unsubscribe(c.sess, pt.route)
		}
	}
	// [MQTT-3.10.4-4]: UNSUBACK even when nothing matched.
	c.enqueueControl(mqtt.AppendAck(c.enc.ack[:0], mqtt.TypeUnsuback, id))
	return nil
}

// enqueueControl queues a small reply (CONNACK, acks, PINGRESP).
// It is called on c's own reading goroutine, so the write is deferred to
// the end of the read batch.
func (c *conn) enqueueControl(b []byte) { c.enqueueVia(nil, b, 0, c) }

// enqueue appends b to the outbound queue and makes sure a writer runs. It
// never blocks on the socket: a connection whose pending bytes would pass
// limits.max_pending_bytes is closed as a slow consumer instead (H1), so one
// stalled reader never holds up a publisher or eats the node's memory.
func (c *conn) enqueue(b []byte) bool { return c.enqueueVia(nil, b, 0, nil) }

// enqueueAt is enqueue for a routed message; routedAt (unix ns) stamps the
// batch it starts, for the publish-to-deliver latency figure.
func (c *conn) enqueueAt(b []byte, routedAt int64) bool { return c.enqueueParts(nil, b, routedAt) }

// enqueueParts queues head then b as one unit (a JSON-RPC push is a
// per-subscription head and a per-message body).
func (c *conn) enqueueParts(head, b []byte, routedAt int64) bool {
	return c.enqueueVia(head, b, routedAt, nil)
}

// enqueueVia queues head and b. When via is a connection whose reading
// goroutine is the caller, starting a writer is deferred to the end of
// via's read batch (deferFlush): one write per batch instead of one per
// message, made from the reader itself without waking another goroutine —
// which is most of a small message's cost at moderate rates.
func (c *conn) enqueueVia(head, b []byte, routedAt int64, via *conn) bool {
	c.omu.Lock()
	if c.oclosed {
		c.omu.Unlock()
		return false
	}
	pending := c.writingLen + len(head) + len(b)
	if c.out != nil {
		pending += len(c.out.b)
	}
	if pending > int(c.srv.cfg.Limits.MaxPendingBytes) {
		c.oclosed = true
		c.omu.Unlock()
		c.closeAs(reasonSlowConsumer)
		return false
	}
	if c.out == nil {
		c.out = outBufs.Get().(*outBuf)
	}
	if c.out.since == 0 {
		c.out.since = routedAt
	}
	c.out.b = append(append(c.out.b, head...), b...)
	if c.writing {
		// The running writer takes these bytes in its next pass.
		c.omu.Unlock()
		return true
	}
	if via != nil {
		c.omu.Unlock()
		c.deferFlush(via)
		return true
	}
	c.writing = true
	c.omu.Unlock()
	c.srv.startFlush(c)
	return true
}

// deferFlush makes via's reading goroutine flush c before it next blocks.
// Correctness rests on an order: producers append their bytes before
// setting c.deferred, and the flushing goroutine clears c.deferred before
// it takes the bytes (flushPending), so bytes whose producer found the flag
// already set are always taken by the flag's owner.
func (c *conn) deferFlush(via *conn) {
	if c.deferred.CompareAndSwap(false, true) {
		via.pending = append(via.pending, c)
	}
}

// flushPending writes every connection this reading goroutine deferred.
func (c *conn) flushPending() {
	for i, t := range c.pending {
		t.deferred.Store(false)
		t.tryWriteNow()
		c.pending[i] = nil
	}
	c.pending = c.pending[:0]
}

// setupRaw prepares non-blocking writes for plain TCP connections.
func (c *conn) setupRaw() {
	var tc *net.TCPConn
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		tc = nc
	case *sniffConn:
		tc, _ = nc.Conn.(*net.TCPConn)
	}
	if tc == nil {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	c.raw = raw
	c.rawWrite = func(fd uintptr) bool {
		c.rawN, c.rawErr = syscall.Write(int(fd), c.rawBuf)
		return true // one attempt: never wait for the socket
	}
}

// tryWriteNow writes c's queued bytes with one non-blocking write when no
// writer is running. What the socket does not take at once goes to a
// flusher goroutine, which may block (bounded by write_timeout).
func (c *conn) tryWriteNow() {
	c.omu.Lock()
	if c.writing || c.oclosed || c.out == nil || len(c.out.b) == 0 {
		c.omu.Unlock()
		return
	}
	c.writing = true
	if c.raw == nil {
		c.omu.Unlock()
		c.srv.startFlush(c)
		return
	}
	buf := c.out
	c.out, c.spare = c.spare, nil
	c.writingLen = len(buf.b)
	c.omu.Unlock()

	c.rawBuf = buf.b
	err := c.raw.Write(c.rawWrite)
	n, werr := c.rawN, c.rawErr
	c.rawBuf = nil
	if err == nil && werr == nil && n == len(buf.b) {
		if buf.since != 0 {
			c.srv.stats.ObserveLatency(time.Duration(time.Now().UnixNano() - buf.since))
		}
		c.omu.Lock()
		c.writingLen = 0
		buf.b, buf.since = buf.b[:0], 0
		if c.out != nil && len(c.out.b) > 0 && !c.oclosed {
			// Producers appended while we wrote; they saw a writer running.
			c.spare = buf
			c.omu.Unlock()
			c.srv.startFlush(c)
			return
		}
		c.writing = false
		putOutBuf(buf)
		putOutBuf(c.out)
		putOutBuf(c.spare)
		c.out, c.spare = nil, nil
		c.omu.Unlock()
		return
	}
	// EINTR: a non-blocking write can still sleep on the socket lock and be
	// interrupted (the Go runtime preempts with signals); like EAGAIN it
	// means "try again", which the flusher does.
	// A deadline left over from the flusher's last blocking write makes
	// RawConn.Write refuse before it tries; the flusher sets a fresh one.
	stale := errors.Is(err, os.ErrDeadlineExceeded)
	if stale || err == nil && (werr == nil || errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR)) {
		if stale {
			n = 0
		}
		// The socket took part or nothing: the flusher finishes the job.
		c.omu.Lock()
		c.cur, c.curOff = buf, max(n, 0)
		c.writingLen = len(buf.b) - c.curOff
		c.omu.Unlock()
		c.srv.startFlush(c)
		return
	}
	c.omu.Lock()
	c.oclosed = true
	c.writing = false
	c.writingLen = 0
	putOutBuf(buf)
	c.omu.Unlock()
	if err == nil {
		err = werr
	}
	c.srv.log.Debug("write failed", "client_id", c.clientID(), "remote", c.remote(), "err", err)
	c.nc.Close()
}

// flusherIdle is how long an idle flusher goroutine waits for more work
// before it exits.
const flusherIdle = 10 * time.Second

// startFlush hands c to an idle flusher goroutine, or starts one when all
// are busy. Flushers are shared by all connections: a connection with
// nothing to send holds no goroutine for writing, and a steady load reuses
// the same few goroutines, so queueing a message does not allocate (a `go`
// statement would, once per burst).
func (s *Server) startFlush(c *conn) {
	select {
	case s.flushWork <- c:
	default:
		s.wg.Add(1)
		go s.flusher(c)
	}
}

func (s *Server) flusher(c *conn) {
	defer s.wg.Done()
	idle := time.NewTimer(flusherIdle)
	defer idle.Stop()
	for {
		c.flush()
		idle.Reset(flusherIdle)
		select {
		case c = <-s.flushWork:
		case <-idle.C:
			return
		case <-s.done:
			return
		}
	}
}

// flush writes everything queued, one write per pass, until the queue is
// empty; then it returns its buffers to the pool and exits. Bytes queued
// while a write is in progress go out together in the next pass: writes
// coalesce under load and nothing waits for a timer (DESIGN §3).
func (c *conn) flush() {
	wt := time.Duration(c.srv.cfg.Limits.WriteTimeout)
	for {
		c.omu.Lock()
		if c.cur != nil && !(c.oclosed && !c.closeWhenFlushed) {
			// Finish what a non-blocking write left.
			buf, off := c.cur, c.curOff
			c.cur, c.curOff = nil, 0
			c.omu.Unlock()
			if !c.writeBlocking(buf, off, wt) {
				return
			}
			continue
		}
		if c.cur != nil {
			putOutBuf(c.cur)
			c.cur = nil
		}
		if (c.oclosed && !c.closeWhenFlushed) || c.out == nil || len(c.out.b) == 0 {
			c.writing = false
			putOutBuf(c.out)
			putOutBuf(c.spare)
			c.out, c.spare = nil, nil
			closeNow := c.closeWhenFlushed
			c.omu.Unlock()
			if closeNow {
				c.nc.Close()
			}
			return
		}
		buf := c.out
		c.out, c.spare = c.spare, nil
		c.writingLen = len(buf.b)
		c.omu.Unlock()
		if !c.writeBlocking(buf, 0, wt) {
			return
		}
	}
}

// writeBlocking writes buf.b[off:] with the write deadline, then recycles
// buf as the spare. On an error it closes the connection (as a slow
// consumer when the deadline passed, H1) and reports false.
func (c *conn) writeBlocking(buf *outBuf, off int, wt time.Duration) bool {
	_ = c.nc.SetWriteDeadline(time.Now().Add(wt))
	_, err := c.nc.Write(buf.b[off:])
	if err == nil && buf.since != 0 {
		// One observation per write: the oldest message in it waited
		// longest, so this is the batch's worst latency.
		c.srv.stats.ObserveLatency(time.Duration(time.Now().UnixNano() - buf.since))
	}

	c.omu.Lock()
	c.writingLen = 0
	buf.b = buf.b[:0]
	buf.since = 0
	if cap(buf.b) > maxPooledBuf {
		buf = nil // let a burst's large buffer go
	}
	c.spare = buf
	if err != nil {
		c.oclosed = true
		c.writing = false
		putOutBuf(c.out)
		c.out = nil
		c.omu.Unlock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The client did not take bytes for write_timeout (H1).
			c.closeAs(reasonSlowConsumer)
		} else {
			c.nc.Close()
		}
		return false
	}
	c.omu.Unlock()
	return true
}

// closeAs closes the socket, remembering why; the read loop then detaches
// the session. Safe from any goroutine, any number of times.
func (c *conn) closeAs(reason string) {
	if c.closeReason.CompareAndSwap(nil, &reason) && reason == reasonSlowConsumer {
		c.srv.stats.AddSlowConsumers(1)
		c.srv.log.Warn("closing slow consumer", "client_id", c.clientID(), "remote", c.remote())
	}
	c.nc.Close()
}

func (c *conn) clientID() string {
	if c.sess == nil {
		return ""
	}
	return c.sess.id
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// shutdown runs once, on the reading goroutine, when the read loop ends.
func (c *conn) shutdown(readErr error) {
	// Bytes this goroutine queued for others must not be stranded.
	c.flushPending()
	c.omu.Lock()
	c.oclosed = true
	// Replies to the packets before a DISCONNECT (CONNACK, PUBACK, ...) are
	// still owed when they arrived in the same read: a running writer sends
	// them and closes the socket, bounded by write_timeout. Otherwise the
	// outcome would depend on how the client's bytes were framed (A20).
	linger := c.cleanDisconnect.Load() && c.writing
	c.closeWhenFlushed = linger
	c.omu.Unlock()
	if !linger {
		c.nc.Close()
	}
	if !c.connected {
		if readErr != nil && !isQuietClose(readErr) {
			c.srv.log.Debug("connection closed before CONNECT", "remote", c.remote(), "err", readErr)
		}
		return
	}
	c.srv.online.Add(-1)
	reason := ""
	if r := c.closeReason.Load(); r != nil {
		reason = *r
	}
	// A will is published on every close that was not a DISCONNECT
	// [MQTT-3.1.2-8], takeover included (pinned in docs/mqtt.md), but not
	// when the node itself is shutting down.
	if !c.cleanDisconnect.Load() && c.will != nil && reason != reasonShutdown && !c.srv.closing.Load() {
		c.srv.publishWill(c.sess, c.claims.Load(), c.will)
	}
	c.srv.presence.unwatchAll(c)
	c.srv.detach(c)
	if readErr != nil && !isQuietClose(readErr) {
		c.srv.log.Debug("connection closed", "client_id", c.sess.id, "remote", c.remote(), "err", readErr, "reason", reason)
	}
}

func isQuietClose(err error) bool {
	return errors.Is(err, errClientDisconnected) || errors.Is(err, net.ErrClosed)
}
