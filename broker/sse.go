package broker

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// Server-Sent Events, Eventhub's subscribe-only transport (eventhub.md
// §1.4): `GET /<topic>` with `Accept: text/event-stream` streams every
// message on the topic or pattern in the path as `id: <msgId>` and `data:`
// lines. Last-Event-ID (header) or lastEventId, since and limit (query)
// replay history first, as a reconnecting EventSource expects.
//
// An SSE stream is one more subscriber in the shared trie: a child session
// tagged tagJSON, exactly like a JSON-RPC subscription, so a publish renders
// its JSON form once for all of them. The stream's outbound queue is the
// same conn queue MQTT uses (bounded, slow consumers closed, one writer
// while bytes are pending); only its writer, sseStream.Write, differs: it
// turns each queued JSON push into an event. Unlike Eventhub, a message with
// line breaks becomes one `data:` line per line, which EventSource joins
// back with "\n" (Eventhub writes them raw, a bug its §13 lists).

// ssePrefix starts every push queued for an SSE stream: the shared JSON
// form ends with an extra '}' (it closes a JSON-RPC envelope), so the
// stream wraps it in an object of its own and sseStream.Write decodes that.
var ssePrefix = []byte(`{"r":`)

// sseHeaderAllow is Eventhub's Access-Control-Allow-Headers on a stream.
const sseHeaderAllow = "Accept, Cache-Control, X-Requested-With, Last-Event-ID"

// keepaliveLine asks a JSON-RPC or SSE writer for a keepalive: a ping frame
// or a comment line.
var keepaliveLine = []byte{'\n'}

// serveSSE answers a request whose Accept header is exactly
// text/event-stream. Eventhub checks the key before the feature switch
// (§1.1 #5, #6); the topic is the URL-decoded path without its leading '/'.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "SSE needs GET.", http.StatusMethodNotAllowed)
		return
	}
	cl, ok := s.authorizeHTTP(w, r)
	if !ok {
		return
	}
	if !s.cfg.JSONRPC.EnableSSE {
		http.Error(w, "SSE is not enabled in this setup.", http.StatusNotImplemented)
		return
	}
	filter := strings.TrimPrefix(r.URL.Path, "/")
	if topic.ValidateFilter(filter) != nil || strings.HasPrefix(filter, "$share/") {
		writeJSONError(w, http.StatusNotFound, "Invalid topic requested.")
		return
	}
	if !s.canSubscribe(cl, filter) {
		s.denied.Add(1)
		writeJSONError(w, http.StatusUnauthorized, "Insufficient access.")
		return
	}
	if !s.takeConnSlot(w) {
		return
	}
	defer s.online.Add(-1)
	history, hasHistory := sseHistory(filter, r)

	st := &sseStream{
		w:      w,
		ctl:    http.NewResponseController(w),
		done:   make(chan struct{}),
		claims: cl,
		remote: r.RemoteAddr,
	}
	st.out = &conn{srv: s, nc: st, transport: "sse", connected: true}
	// Subscribed before the first byte, so a client that has read ":ok"
	// misses nothing published after it; live messages are held until the
	// replay is out, and nothing is queued before ":ok" is written.
	child := newSession(s, "sse-"+newConnID(), true)
	child.rpcFilter = filter
	child.rpcPrefix = ssePrefix
	child.held = [][]byte{}
	child.conn.Store(st.out)
	if _, err := s.trie.Subscribe(filter, child, 0, tagJSON); err != nil {
		writeJSONError(w, http.StatusNotFound, "Invalid topic requested.")
		return
	}
	s.sseConns.Store(st, struct{}{})
	s.stats.AddConnectionsTotal(1)
	defer func() {
		s.trie.Unsubscribe(filter, child)
		s.sseConns.Delete(st)
		st.out.omu.Lock()
		st.out.oclosed = true
		st.out.omu.Unlock()
		st.finish()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", sseHeaderAllow)
	h.Set("X-Accel-Buffering", "no") // nginx would hold events back
	w.WriteHeader(http.StatusOK)
	// Eventhub's first bytes, under the stream's write lock: the
	// keepalive ticker may already be writing.
	if !st.writeRaw([]byte(":ok\n\n")) {
		return
	}

	if hasHistory && s.cfg.JSONRPC.EnableCache && (s.cfg.NoAuth || cl.CanLoad(filter)) {
		msgs, err := s.history(history)
		if err != nil {
			s.log.Warn("history query failed", "err", err)
		}
		for _, m := range msgs {
			b, err := json.Marshal(itemOf(m))
			if err != nil {
				continue
			}
			st.out.enqueue(append(append(append([]byte(nil), ssePrefix...), b...), "}\n"...))
		}
	}
	child.releaseHeld()

	select {
	case <-r.Context().Done():
	case <-st.done:
	case <-s.done:
	}
}

// sseHistory reads the replay a stream asks for: lastEventId (query) or
// Last-Event-ID (header), the query winning as in Eventhub; else since (ms;
// negative is relative to now, a pubsub extension); limit caps either.
func sseHistory(filter string, r *http.Request) (historyRequest, bool) {
	q := r.URL.Query()
	h := historyRequest{filter: filter}
	if id := q.Get("lastEventId"); id != "" {
		h.sinceEventID, h.hasSinceEventID = id, true
	} else if id := r.Header.Get("Last-Event-ID"); id != "" {
		h.sinceEventID, h.hasSinceEventID = id, true
	}
	if v, err := strconv.ParseInt(q.Get("since"), 10, 64); err == nil {
		h.since = v
	}
	if v, err := strconv.ParseInt(q.Get("limit"), 10, 64); err == nil {
		h.limit, h.hasLimit = v, true
	}
	return h, h.hasSinceEventID || h.since != 0
}

// sseStream is the socket side of one SSE subscriber, as the net.Conn its
// outbound queue writes to. Close may be called from any goroutine (a
// publisher closing a slow consumer) and never blocks; writes stop for good
// once the handler, which owns the ResponseWriter, has called finish.
type sseStream struct {
	w      http.ResponseWriter
	ctl    *http.ResponseController
	out    *conn
	claims *keys.Claims
	remote string

	done      chan struct{} // closed by Close: the handler returns
	closeOnce sync.Once
	expired   atomic.Bool

	mu       sync.Mutex // serialises writes with finish
	finished bool       // guarded by mu: w must not be touched
	buf      []byte     // guarded by mu
}

// sseEvent is what a stream reads back from a queued push.
type sseEvent struct {
	R struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"r"`
}

// Write renders queued lines as events: an empty line is a keepalive
// comment, any other a push (ssePrefix + JSON form).
func (st *sseStream) Write(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return 0, net.ErrClosed
	}
	b := st.buf[:0]
	for rest := p; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(line) == 0 {
			b = append(b, ":\n\n"...) // Eventhub's keepalive comment
			continue
		}
		var ev sseEvent
		if json.Unmarshal(line, &ev) != nil {
			continue // not produced by this package; nothing to render
		}
		b = appendEvent(b, ev.R.ID, ev.R.Message)
	}
	st.buf = b
	if len(st.buf) > maxPooledBuf {
		st.buf = nil // let a burst's large buffer go
	}
	if _, err := st.w.Write(b); err != nil {
		return 0, err
	}
	if err := st.ctl.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// appendEvent appends one event. Each line of the message gets its own
// data: field, the only way to carry a line break in SSE; CR, LF and CRLF
// all end a line [HTML Living Standard §9.2.6 "Interpreting an event
// stream"], so each is a split point.
func appendEvent(b []byte, id, msg string) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	for {
		b = append(b, "data: "...)
		i := strings.IndexAny(msg, "\r\n")
		if i < 0 {
			b = append(b, msg...)
			break
		}
		b = append(b, msg[:i]...)
		b = append(b, '\n')
		if msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
			i++
		}
		msg = msg[i+1:]
	}
	return append(b, "\n\n"...)
}

// writeRaw writes b as is; it reports false when the stream is done.
func (st *sseStream) writeRaw(b []byte) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return false
	}
	_, err := st.w.Write(b)
	return err == nil && st.ctl.Flush() == nil
}

func (st *sseStream) Read([]byte) (int, error) { return 0, net.ErrClosed }

// Close ends the stream: the handler wakes and finishes it.
func (st *sseStream) Close() error {
	st.closeOnce.Do(func() { close(st.done) })
	return nil
}

// finish runs on the handler goroutine before it returns: a write stuck on
// the socket is cut short, then writes stop for good, and the deadline is
// lifted again so net/http can end the response cleanly.
func (st *sseStream) finish() {
	st.Close()
	_ = st.ctl.SetWriteDeadline(time.Now())
	st.mu.Lock()
	st.finished = true
	st.mu.Unlock()
	_ = st.ctl.SetWriteDeadline(time.Time{})
}

func (st *sseStream) LocalAddr() net.Addr             { return nil }
func (st *sseStream) RemoteAddr() net.Addr            { return sseAddr(st.remote) }
func (st *sseStream) SetReadDeadline(time.Time) error { return nil }
func (st *sseStream) SetDeadline(d time.Time) error   { return st.SetWriteDeadline(d) }
func (st *sseStream) SetWriteDeadline(d time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return net.ErrClosed
	}
	return st.ctl.SetWriteDeadline(d)
}

// sseAddr is the client's address as net/http reports it.
type sseAddr string

func (a sseAddr) Network() string { return "tcp" }
func (a sseAddr) String() string  { return string(a) }

// keepaliveLoop is the one node-wide ticker behind every JSON-RPC and SSE
// connection (DESIGN §3: no per-connection tickers). Each second it ends
// connections whose key expired or was revoked (E8, as enforceKeys does for
// MQTT), and every jsonrpc.ping_interval it queues a keepalive on each idle
// one: a WebSocket ping frame or an SSE comment (eventhub.md §1.2, §1.4).
// A connection with a writer running is sending bytes already.
func (s *Server) keepaliveLoop() {
	defer s.wg.Done()
	every := time.Duration(s.cfg.JSONRPC.PingInterval)
	tick := time.Second
	if every > 0 && every < tick {
		tick = every
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPing := time.Now()
	for {
		var now time.Time
		select {
		case now = <-t.C:
		case <-s.done:
			return
		}
		// Half a tick of slack: ticks are not exact, and a ping due now
		// must not wait a whole tick more.
		ping := every > 0 && now.Sub(lastPing) >= every-tick/2
		if ping {
			lastPing = now
		}
		s.rpcConns.Range(func(k, _ any) bool {
			rc := k.(*rpcConn)
			switch {
			case rc.claims != nil && s.stillValid(rc.claims) != nil:
				rc.end(reasonKeyExpired)
			case ping:
				sendKeepalive(rc.out)
			}
			return true
		})
		s.sseConns.Range(func(k, _ any) bool {
			st := k.(*sseStream)
			switch {
			case st.claims != nil && s.stillValid(st.claims) != nil:
				if st.expired.CompareAndSwap(false, true) {
					s.log.Info("closing SSE stream: key expired or revoked", "remote", st.remote)
				}
				st.Close()
			case ping:
				sendKeepalive(st.out)
			}
			return true
		})
	}
}

// sendKeepalive queues a keepalive on c unless a writer is running.
func sendKeepalive(c *conn) {
	c.omu.Lock()
	busy := c.writing || c.oclosed
	c.omu.Unlock()
	if !busy {
		c.enqueue(keepaliveLine)
	}
}
