package cluster

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Send.
var (
	// ErrUnknownPeer: no link to that node (not a member, or not yet).
	ErrUnknownPeer = errors.New("cluster: unknown peer")
	// ErrQueueFull: the peer's queue is at LinkQueueBytes; the message was
	// dropped and counted.
	ErrQueueFull = errors.New("cluster: peer queue full")
	// ErrTooLarge: the message does not fit MaxFrameBytes.
	ErrTooLarge = errors.New("cluster: message exceeds the frame limit")
)

const (
	// handshakeTimeout bounds dialing plus the handshake.
	handshakeTimeout = 5 * time.Second
	// maxHandshakes bounds inbound connections that have not yet
	// authenticated, so unauthenticated sockets cannot pile up (pre-auth
	// resources are what A2/H4 attack on the client port).
	maxHandshakes = 16

	dialBackoffMin = 50 * time.Millisecond
	dialBackoffMax = 2 * time.Second
	// stableLink is how long a link must last for the dial backoff to reset.
	stableLink = 10 * time.Second

	// spareKeep is the largest write buffer an idle link keeps for reuse,
	// so it does not pin the size of its largest burst.
	spareKeep = 256 << 10
)

// links owns the peer links of a node: one TCP connection per node pair,
// dialed by the node whose name sorts first (see dials), carrying frames
// in both directions.
//
// Each peer has a bounded byte queue. Send appends an encoded frame under
// the peer's mutex and wakes the writer, so producers never block on a
// socket. The writer takes the whole queue and writes it in one call, so
// frames queued while a write is in flight go out together in the next.
// A write that misses LinkWriteTimeout closes the link as slow; a frame
// that does not fit the queue is dropped, counted, and flags the peer slow.
type links struct {
	self       string
	auth       *linkAuth
	log        *slog.Logger
	queueBytes int
	maxFrame   int
	writeLimit time.Duration

	onMessage func(from string, m Message)
	onQuery   func(p *peer, q queryFrame)
	onReply   func(from string, r replyFrame)

	ctx context.Context // canceled at shutdown
	wg  *sync.WaitGroup // the node's
	ln  net.Listener

	handshakes chan struct{} // semaphore of inbound handshakes

	// peersMu serialises changes of peers (a copy-on-write map, so Send
	// looks a peer up without locking) and guards closed.
	peersMu sync.Mutex
	peers   atomic.Pointer[map[string]*peer]
	closed  bool

	authFailures atomic.Uint64
	slowCloses   atomic.Uint64
}

// peer is the link state of one remote node.
type peer struct {
	name   string
	dialer bool // this node dials the peer
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: bytes were queued
	redial chan struct{} // cap 1: the address changed

	// mu guards the fields below. It is a leaf lock: nothing else is
	// taken while it is held.
	mu            sync.Mutex
	addr          string
	member        bool // known through gossip, not only by an inbound link
	conn          net.Conn
	pending       []byte
	pendingFrames uint64
	spare         []byte
	downSince     time.Time
	removed       bool

	sent, received, dropped atomic.Uint64
	slow                    atomic.Bool
}

func newLinks(n *Node) *links {
	l := &links{
		self:       n.cfg.Name,
		auth:       newLinkAuth(n.cfg.SecretKey, n.cfg.Label, n.cfg.Name),
		log:        n.log,
		queueBytes: n.cfg.LinkQueueBytes,
		maxFrame:   n.cfg.MaxFrameBytes,
		writeLimit: n.cfg.LinkWriteTimeout,
		onMessage:  n.cfg.OnMessage,
		onQuery:    n.serveQuery,
		onReply:    n.queries.deliver,
		ctx:        n.ctx,
		wg:         &n.wg,
		handshakes: make(chan struct{}, maxHandshakes),
	}
	empty := map[string]*peer{}
	l.peers.Store(&empty)
	return l
}

// start serves inbound links on ln.
func (l *links) start(ln net.Listener) {
	l.ln = ln
	l.wg.Add(1)
	go l.acceptLoop()
}

// close stops accepting, closes every link and drops every queue. The
// goroutines exit on their own; the node waits for them.
func (l *links) close() {
	l.peersMu.Lock()
	l.closed = true
	peers := *l.peers.Load()
	empty := map[string]*peer{}
	l.peers.Store(&empty)
	l.peersMu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	for _, p := range peers {
		p.shut()
	}
}

func (l *links) lookup(name string) *peer {
	return (*l.peers.Load())[name]
}

// upsert records that name is an alive member whose link listens at addr.
// Called from memberlist's event callbacks: it must not block.
func (l *links) upsert(name, addr string) {
	l.peersMu.Lock()
	defer l.peersMu.Unlock()
	if l.closed {
		return
	}
	if p := l.lookup(name); p != nil {
		p.setAddr(addr, true)
		return
	}
	p := l.addLocked(name)
	p.setAddr(addr, true)
}

// addLocked creates a peer and starts its dialer if this node dials it.
// peersMu held; not closed.
func (l *links) addLocked(name string) *peer {
	ctx, cancel := context.WithCancel(l.ctx)
	p := &peer{
		name:      name,
		dialer:    dials(l.self, name),
		ctx:       ctx,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		redial:    make(chan struct{}, 1),
		downSince: time.Now(),
	}
	next := make(map[string]*peer, len(*l.peers.Load())+1)
	for k, v := range *l.peers.Load() {
		next[k] = v
	}
	next[name] = p
	l.peers.Store(&next)
	if p.dialer {
		l.wg.Add(1)
		go l.dialLoop(p)
	}
	return p
}

// remove closes the link to name and drops its queue (the member failed or
// left). Messages queued for it are counted as dropped.
func (l *links) remove(name string) {
	l.peersMu.Lock()
	p := l.removeLocked(name, nil)
	l.peersMu.Unlock()
	if p != nil {
		p.shut()
	}
}

// removeLocked unlinks name from the map, only if it maps to want when want
// is not nil. peersMu held.
func (l *links) removeLocked(name string, want *peer) *peer {
	cur := *l.peers.Load()
	p := cur[name]
	if p == nil || (want != nil && p != want) {
		return nil
	}
	next := make(map[string]*peer, len(cur))
	for k, v := range cur {
		if k != name {
			next[k] = v
		}
	}
	l.peers.Store(&next)
	return p
}

// shut marks the peer removed, closes its connection and stops its
// goroutines.
func (p *peer) shut() {
	p.mu.Lock()
	p.removed = true
	c := p.conn
	p.dropped.Add(p.pendingFrames)
	p.pending, p.pendingFrames, p.spare = nil, 0, nil
	p.mu.Unlock()
	p.cancel()
	if c != nil {
		_ = c.Close()
	}
}

// setAddr updates the peer's address. A changed address closes a dialed
// link (it pointed at the former process) and wakes the dialer.
func (p *peer) setAddr(addr string, member bool) {
	p.mu.Lock()
	changed := p.addr != addr
	p.addr = addr
	p.member = p.member || member
	var stale net.Conn
	if changed && p.dialer {
		stale = p.conn
	}
	p.mu.Unlock()
	if !changed || !p.dialer {
		return
	}
	if stale != nil {
		_ = stale.Close()
	}
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// send queues m for the peer named name. It never blocks.
func (l *links) send(name string, m *Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	p := l.lookup(name)
	if p == nil {
		return ErrUnknownPeer
	}
	body := messageBodyLen(m)
	if body > l.maxFrame {
		return ErrTooLarge
	}
	size := frameLen(body)
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return ErrUnknownPeer
	}
	if len(p.pending)+size > l.queueBytes {
		p.mu.Unlock()
		l.overflow(p)
		return ErrQueueFull
	}
	p.pending = appendMessageFrame(p.pending, m)
	p.pendingFrames++
	p.mu.Unlock()
	p.signal()
	return nil
}

// sendQuery queues a query frame.
func (l *links) sendQuery(name string, id, timeoutMillis uint64, kind string, body []byte) error {
	p := l.lookup(name)
	if p == nil {
		return ErrUnknownPeer
	}
	size := queryLen(id, timeoutMillis, kind, body)
	if size > l.maxFrame {
		return ErrTooLarge
	}
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return ErrUnknownPeer
	}
	if len(p.pending)+size > l.queueBytes {
		p.mu.Unlock()
		l.overflow(p)
		return ErrQueueFull
	}
	p.pending = appendQueryFrame(p.pending, id, timeoutMillis, kind, body)
	p.pendingFrames++
	p.mu.Unlock()
	p.signal()
	return nil
}

// sendReply queues a reply frame; a reply that does not fit is replaced
// by a replyTooLarge status so the asker stops waiting for it.
func (l *links) sendReply(p *peer, id uint64, status byte, body []byte) {
	if replyLen(id, body) > l.maxFrame {
		status, body = replyTooLarge, nil
	}
	size := replyLen(id, body)
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return
	}
	if len(p.pending)+size > l.queueBytes {
		p.mu.Unlock()
		l.overflow(p)
		return
	}
	p.pending = appendReplyFrame(p.pending, id, status, body)
	p.pendingFrames++
	p.mu.Unlock()
	p.signal()
}

// overflow counts a frame dropped for a full queue and flags the peer,
// logging once per episode rather than once per message.
func (l *links) overflow(p *peer) {
	p.dropped.Add(1)
	if !p.slow.Swap(true) {
		l.log.Warn("cluster peer is slow, dropping messages", "peer", p.name, "queue_bytes", l.queueBytes)
	}
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take hands the queued bytes to the writer of c.
func (p *peer) take(c net.Conn) (buf []byte, frames uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != c {
		// c was replaced; this writer may have swallowed the wake-up meant
		// for the new one, so pass it on.
		if len(p.pending) > 0 {
			p.signal()
		}
		return nil, 0
	}
	if len(p.pending) == 0 {
		return nil, 0
	}
	buf, frames = p.pending, p.pendingFrames
	p.pending, p.pendingFrames, p.spare = p.spare, 0, nil
	return buf, frames
}

// written returns a written buffer for reuse and clears the slow flag once
// the queue is drained. A large buffer is kept only while more bytes wait,
// so a busy link stops allocating and an idle one lets it go.
func (p *peer) written(buf []byte) {
	p.mu.Lock()
	drained := len(p.pending) == 0
	if p.spare == nil && !p.removed && (cap(buf) <= spareKeep || !drained) {
		p.spare = buf[:0]
	}
	p.mu.Unlock()
	if drained {
		p.slow.Store(false)
	}
}

// attach makes c the peer's connection, closing the one it replaces.
func (p *peer) attach(c net.Conn) bool {
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return false
	}
	old := p.conn
	p.conn = c
	p.downSince = time.Time{}
	queued := len(p.pending) > 0
	p.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	if queued {
		p.signal()
	}
	return true
}

// detach forgets c if it is still the peer's connection.
func (p *peer) detach(c net.Conn) {
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
		p.downSince = time.Now()
	}
	p.mu.Unlock()
}

// downFor reports how long the peer has had no connection (0 if it has).
func (p *peer) downFor(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil || p.downSince.IsZero() {
		return 0
	}
	return now.Sub(p.downSince)
}

// dialLoop keeps a link to p open until p is removed, redialing with
// jittered exponential backoff.
func (l *links) dialLoop(p *peer) {
	defer l.wg.Done()
	backoff := dialBackoffMin
	for p.ctx.Err() == nil {
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		if addr == "" {
			if !p.pause(time.Hour) {
				return
			}
			continue
		}
		conn, br, err := l.dial(p, addr)
		if err != nil {
			if errors.Is(err, errAuth) {
				l.authFailures.Add(1)
				l.log.Warn("cluster peer link refused", "peer", p.name, "addr", addr, "err", err)
			} else if p.ctx.Err() == nil {
				l.log.Debug("cluster peer link dial failed", "peer", p.name, "addr", addr, "err", err)
			}
			if !p.pause(jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, dialBackoffMax)
			continue
		}
		l.log.Debug("cluster peer link up", "peer", p.name, "addr", addr)
		began := time.Now()
		l.serve(p, conn, br)
		if time.Since(began) >= stableLink {
			backoff = dialBackoffMin
			continue // redial at once after a long-lived link broke
		}
		if !p.pause(jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, dialBackoffMax)
	}
}

// pause waits d, or less if the address changes; false once p is removed.
func (p *peer) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-p.redial:
		return true
	case <-t.C:
		return true
	}
}

// jitter spreads d over [d/2, d) so peers that lost a link together do
// not redial in lockstep.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// dial connects to p and runs the dialer's handshake.
func (l *links) dial(p *peer, addr string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(p.ctx, func() { _ = conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReaderSize(conn, linkReadBuffer)
	if err := l.auth.dial(conn, br, p.name); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}

func (l *links) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("cluster peer link accept failed", "err", err, "retry_in", delay)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		select {
		case l.handshakes <- struct{}{}:
		default:
			_ = conn.Close() // too many unauthenticated sockets
			continue
		}
		l.wg.Add(1)
		go l.acceptOne(conn)
	}
}

// acceptOne authenticates an inbound link and serves it.
func (l *links) acceptOne(conn net.Conn) {
	defer l.wg.Done()
	stop := context.AfterFunc(l.ctx, func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReaderSize(conn, linkReadBuffer)
	name, err := l.auth.accept(conn, br)
	<-l.handshakes
	stopped := stop()
	if err != nil || !stopped {
		if errors.Is(err, errAuth) {
			l.authFailures.Add(1)
			l.log.Warn("cluster peer link refused", "remote_addr", conn.RemoteAddr().String(), "err", err)
		}
		_ = conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})

	l.peersMu.Lock()
	if l.closed {
		l.peersMu.Unlock()
		_ = conn.Close()
		return
	}
	p := l.lookup(name)
	if p == nil {
		// Authenticated before gossip told us about it: keep the link; the
		// member event that follows finds the peer in place.
		p = l.addLocked(name)
	}
	l.peersMu.Unlock()

	l.log.Debug("cluster peer link up", "peer", name, "remote_addr", conn.RemoteAddr().String())
	l.serve(p, conn, br)

	// A peer known only by its inbound link goes with the link.
	p.mu.Lock()
	orphan := !p.member && p.conn == nil
	p.mu.Unlock()
	if orphan {
		l.peersMu.Lock()
		gone := l.removeLocked(name, p)
		l.peersMu.Unlock()
		if gone != nil {
			gone.shut()
		}
	}
}

// serve runs a link until it fails or the peer is removed: the reader on
// a goroutine of its own, the writer on this one.
func (l *links) serve(p *peer, conn net.Conn, br *bufio.Reader) {
	if !p.attach(conn) {
		_ = conn.Close()
		return
	}
	readErr := make(chan error, 1)
	go func() { readErr <- l.readLoop(p, conn, br) }()
	werr := l.writeLoop(p, conn, readErr)
	_ = conn.Close()
	rerr := <-readErr
	p.detach(conn)
	if p.ctx.Err() == nil {
		err := werr
		if err == nil {
			err = rerr
		}
		l.log.Debug("cluster peer link down", "peer", p.name, "err", err)
	}
}

// writeLoop flushes the peer's queue whenever it is woken, until the link
// fails (write error, reader gone, peer removed).
func (l *links) writeLoop(p *peer, conn net.Conn, readErr chan error) error {
	for {
		select {
		case <-p.wake:
		case err := <-readErr:
			readErr <- err // serve reads it again
			return nil
		case <-p.ctx.Done():
			return nil
		}
		for {
			buf, frames := p.take(conn)
			if buf == nil {
				break
			}
			_ = conn.SetWriteDeadline(time.Now().Add(l.writeLimit))
			if _, err := conn.Write(buf); err != nil {
				p.dropped.Add(frames)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					p.slow.Store(true)
					l.slowCloses.Add(1)
					l.log.Warn("cluster peer link closed: slow peer", "peer", p.name,
						"write_timeout", l.writeLimit, "dropped", frames)
				}
				return err
			}
			p.sent.Add(frames)
			p.written(buf)
		}
	}
}

// readLoop reads and dispatches frames until the link fails.
func (l *links) readLoop(p *peer, conn net.Conn, br *bufio.Reader) error {
	fr := newFrameReader(br, l.maxFrame)
	originOf := func(b []byte) string {
		if string(b) == p.name {
			return p.name // the usual case: no allocation
		}
		return string(b)
	}
	var m Message
	for {
		typ, body, err := fr.next()
		if err != nil {
			return err
		}
		switch typ {
		case frameMessage:
			if err := decodeMessage(body, &m, originOf); err != nil {
				return err
			}
			p.received.Add(1)
			if l.onMessage != nil {
				l.onMessage(p.name, m)
			}
		case frameQuery:
			q, err := decodeQuery(body)
			if err != nil {
				return err
			}
			l.onQuery(p, q)
		case frameReply:
			r, err := decodeReply(body)
			if err != nil {
				return err
			}
			l.onReply(p.name, r)
		default:
			// A frame type from a later release: its length is known,
			// so skip it and keep the link.
		}
	}
}
