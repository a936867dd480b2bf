package broker

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/pubsub/pubsub/broker/jsonrpc"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// The Eventhub-compatible JSON-RPC protocol (protocols/eventhub.md): a
// WebSocket upgrade that offers no MQTT subprotocol, on any path, carries
// JSON-RPC 2.0 in text frames. Its subscribers live in the same trie as MQTT
// sessions — one topic space — as child sessions tagged tagJSON, one per
// subscribe call, because Eventhub pushes each message once per matching
// subscription with that subscription's request id.

// tagJSON marks a JSON-RPC subscription: its messages are pushed as
// JSON-RPC results reusing the subscribe request's id.
const tagJSON uint8 = 2

// tokenFromRequest reads a key the way Eventhub does: the Authorization
// header (raw, or "Bearer x" as a superset), else the auth query parameter.
func tokenFromRequest(r *http.Request) string {
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return h
	}
	return r.URL.Query().Get("auth")
}

// authorizeHTTP verifies the request's key before an upgrade or an HTTP API
// call; a missing or bad key is HTTP 401 with Eventhub's texts (§1.1).
func (s *Server) authorizeHTTP(w http.ResponseWriter, r *http.Request) (*keys.Claims, bool) {
	if s.cfg.NoAuth {
		// Eventhub's disable_auth ignores any token, so origin stays empty.
		return nil, true
	}
	token := tokenFromRequest(r)
	if token == "" || token == "undefined" {
		http.Error(w, "No authentication token was given.", http.StatusUnauthorized)
		return nil, false
	}
	cl, err := s.keyring.Verify(token)
	if err != nil {
		s.log.Info("http request refused: invalid key", "remote", r.RemoteAddr, "reason", err.Error())
		http.Error(w, "Authentication failed.", http.StatusUnauthorized)
		return nil, false
	}
	return cl, true
}

// Control lines a JSON-RPC connection's outbound queue carries besides
// JSON documents, which never start with either: an empty line asks for a
// ping frame (keepalive, eventhub.md §1.2), and a line starting with
// closeMark for a close frame, after which the socket is closed. The rest
// of a close line is the close reason; with one the code is 1008 (policy
// violation), without one 1000 (normal closure) [RFC 6455 §7.4.1].
const closeMark = '\x04'

// textFrames writes each newline-terminated JSON document of a flush as its
// own text frame, so the connection's coalescing outbound queue can serve
// JSON-RPC clients, which expect one message per frame.
type textFrames struct {
	ws       *websocket.Conn
	wmu      sync.Mutex
	deadline time.Time // the flusher's write deadline; guarded by wmu
}

func (t *textFrames) Read([]byte) (int, error) { return 0, net.ErrClosed }
func (t *textFrames) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			i = len(p)
		}
		switch line := p[:i]; {
		case len(line) == 0:
			if err := t.ws.WriteControl(websocket.PingMessage, nil, t.deadline); err != nil {
				return n, err
			}
		case line[0] == closeMark:
			code := websocket.CloseNormalClosure
			if len(line) > 1 {
				code = websocket.ClosePolicyViolation
			}
			_ = t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, string(line[1:])), t.deadline)
			t.ws.Close()
			return n, net.ErrClosed
		default:
			if err := t.ws.WriteMessage(websocket.TextMessage, line); err != nil {
				return n, err
			}
		}
		if i < len(p) {
			i++
		}
		n += i
		p = p[i:]
	}
	return n, nil
}
func (t *textFrames) Close() error                      { return t.ws.Close() }
func (t *textFrames) LocalAddr() net.Addr               { return t.ws.LocalAddr() }
func (t *textFrames) RemoteAddr() net.Addr              { return t.ws.RemoteAddr() }
func (t *textFrames) SetDeadline(d time.Time) error     { return t.SetWriteDeadline(d) }
func (t *textFrames) SetReadDeadline(d time.Time) error { return t.ws.SetReadDeadline(d) }
func (t *textFrames) SetWriteDeadline(d time.Time) error {
	t.wmu.Lock()
	t.deadline = d
	t.wmu.Unlock()
	return t.ws.SetWriteDeadline(d)
}

// rpcConn is one JSON-RPC client.
type rpcConn struct {
	srv    *Server
	ws     *websocket.Conn
	out    *conn // outbound queue, writer and slow-consumer policy
	claims *keys.Claims
	origin string
	id     string

	// subs maps each subscribed topic or pattern string to its child
	// session. Only the reading goroutine changes it; mu guards it for the
	// close path.
	mu   sync.Mutex
	subs map[string]*session

	// ending is set once a close frame is queued (disconnect, key expiry):
	// the connection ends when the writer has sent it.
	ending atomic.Bool
}

// end queues a close frame behind what is already queued and stops
// deliveries; the writer closes the socket once the frame is out, which
// ends the read loop. reason "" is a normal closure. Safe from any
// goroutine; only the first call counts.
func (rc *rpcConn) end(reason string) {
	if !rc.ending.CompareAndSwap(false, true) {
		return
	}
	rc.unsubscribeAll()
	if !rc.out.enqueue(append([]byte{closeMark}, reason+"\n"...)) {
		rc.ws.Close() // the queue is closed already (slow consumer)
	}
}

func (s *Server) serveJSONRPC(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.authorizeHTTP(w, r)
	if !ok || !s.takeConnSlot(w) {
		return
	}
	defer s.online.Add(-1)
	up := *s.rpcUpgrader
	// Eventhub echoes an offered subprotocol; browsers fail a connection
	// whose requested subprotocol is not selected, so select the first.
	if offered := websocket.Subprotocols(r); len(offered) > 0 {
		up.Subprotocols = offered[:1]
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(int64(s.cfg.Limits.MaxPacketSize)) // C6: larger closes with 1009
	rc := &rpcConn{srv: s, ws: ws, claims: cl, id: newConnID(), subs: map[string]*session{}}
	if cl != nil {
		rc.origin = cl.Subject
	}
	rc.out = &conn{srv: s, nc: &textFrames{ws: ws}, transport: "jsonrpc", connected: true}
	s.rpcConns.Store(rc, struct{}{})
	s.stats.AddConnectionsTotal(1)
	defer func() {
		s.rpcConns.Delete(rc)
		rc.close()
	}()
	rc.readLoop()
}

// close removes every subscription and closes the socket.
func (rc *rpcConn) close() {
	rc.unsubscribeAll()
	rc.out.omu.Lock()
	rc.out.oclosed = true
	rc.out.omu.Unlock()
	rc.ws.Close()
}

func (rc *rpcConn) readLoop() {
	// D8: a flood from one socket gets rate-limit errors instead of
	// starving other clients (jsonrpc.request_rate).
	limiter := rate.NewLimiter(rate.Inf, 0)
	if n := rc.srv.cfg.JSONRPC.RequestRate; n > 0 {
		limiter = rate.NewLimiter(rate.Limit(n), 2*n)
	}
	for {
		mt, frame, err := rc.ws.ReadMessage()
		if err != nil {
			return
		}
		if mt != websocket.TextMessage || rc.ending.Load() {
			// Eventhub ignores binary frames; nothing is read after a
			// disconnect while its close frame goes out.
			continue
		}
		out, disconnect := rc.handleFrame(frame, limiter)
		if out != nil {
			rc.out.enqueue(out)
		}
		if disconnect {
			// Checklist 14: no response and a close frame, promptly; what
			// was answered before still goes out first.
			rc.end("")
		}
	}
}

// handleFrame runs the calls of one text frame and returns the frame to
// send back (nil for none: notifications only [JSON-RPC 2.0 §4.1]), with
// a batch's responses in one array [JSON-RPC 2.0 §6]. disconnect reports a
// disconnect call; the calls after it are not run.
func (rc *rpcConn) handleFrame(frame []byte, limiter *rate.Limiter) (out []byte, disconnect bool) {
	calls, batch := jsonrpc.Parse(frame)
	if batch {
		out = append(out, '[')
	}
	wrote := false
	for _, call := range calls {
		var resp []byte
		switch {
		case call.Err != nil:
			resp = jsonrpc.AppendError(nil, call.ID, call.Err)
		case !limiter.Allow():
			if !call.Notification {
				resp = jsonrpc.AppendError(nil, call.ID, jsonrpc.ErrRateLimited)
			}
		default:
			resp, disconnect = rc.dispatch(call.Request)
			if call.Notification {
				resp = nil
			}
		}
		if disconnect {
			break
		}
		if resp == nil {
			continue
		}
		if batch && wrote {
			out = append(out, ',')
		}
		out = append(out, resp...)
		wrote = true
	}
	if !wrote {
		return nil, disconnect
	}
	if batch {
		out = append(out, ']')
	}
	return append(out, '\n'), disconnect
}

// dispatch runs one request and returns its encoded response. Pushes that
// must follow the response (history) are queued by the method itself,
// after it has queued the response.
func (rc *rpcConn) dispatch(req jsonrpc.Request) (resp []byte, closeConn bool) {
	result, rerr := rc.call(req)
	if rerr == errDisconnect {
		return nil, true
	}
	if rerr != nil {
		return jsonrpc.AppendError(nil, req.ID, rerr), false
	}
	if result == nil {
		return nil, false // already written (subscribe)
	}
	b, err := jsonrpc.AppendResult(nil, req.ID, result)
	if err != nil {
		return jsonrpc.AppendError(nil, req.ID, jsonrpc.InvalidParams(err.Error())), false
	}
	return b, false
}

var errDisconnect = &jsonrpc.Error{Code: 0, Message: "disconnect"}

// params decodes an object's named members without failing on other types:
// Eventhub reads what it needs and ignores the rest.
func decodeParams(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(raw) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &m)
	}
	return m
}

func paramString(m map[string]json.RawMessage, k string) (string, bool) {
	raw, ok := m[k]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func paramInt(m map[string]json.RawMessage, k string) (int64, bool) {
	raw, ok := m[k]
	if !ok {
		return 0, false
	}
	var f float64
	// Beyond 2^53 a JSON number is no longer an exact integer, and a
	// float64 outside int64's range has no defined conversion.
	if json.Unmarshal(raw, &f) != nil || f < -(1<<53) || f > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func (rc *rpcConn) call(req jsonrpc.Request) (any, *jsonrpc.Error) {
	p := decodeParams(req.Params)
	switch req.Method {
	case "subscribe":
		return rc.subscribe(req, p)
	case "unsubscribe":
		var entries []json.RawMessage
		if json.Unmarshal(req.Params, &entries) != nil || entries == nil {
			return nil, jsonrpc.InvalidParams("Parameter is not array of topics to unsubscribe from.")
		}
		n := 0
		for _, e := range entries {
			// Entries that are not strings are skipped, as Eventhub does
			// with invalid or unreadable ones.
			var t string
			if json.Unmarshal(e, &t) == nil && rc.unsubscribe(t) {
				n++
			}
		}
		return map[string]any{"unsubscribe_count": n}, nil
	case "unsubscribeall":
		return map[string]any{"unsubscribe_count": rc.unsubscribeAll()}, nil
	case "publish":
		return rc.publish(p)
	case "list":
		rc.mu.Lock()
		list := make([]string, 0, len(rc.subs))
		for t := range rc.subs {
			list = append(list, t)
		}
		rc.mu.Unlock()
		return list, nil
	case "eventlog":
		return rc.eventlog(p)
	case "get", "set", "del":
		return rc.kv(req.Method, p)
	case "ping":
		return map[string]any{"pong": time.Now().UnixMilli()}, nil
	case "disconnect":
		return nil, errDisconnect
	}
	return nil, jsonrpc.ErrMethodNotFound
}

func (rc *rpcConn) canRead(filter string) bool {
	if rc.srv.cfg.NoAuth {
		return true
	}
	return rc.claims != nil && rc.claims.CanSubscribe(filter)
}

func (rc *rpcConn) canWrite(t string) bool {
	if rc.srv.cfg.NoAuth {
		return true
	}
	return rc.claims != nil && rc.claims.CanPublish(t)
}

// subscribe: the ack goes out first, then history, then live messages
// (eventhub.md §2.3: clients register their callback on the ack). Live
// messages that arrive while history is read are held and sent after it.
func (rc *rpcConn) subscribe(req jsonrpc.Request, p map[string]json.RawMessage) (any, *jsonrpc.Error) {
	t, ok := paramString(p, "topic")
	if !ok || t == "" {
		return nil, jsonrpc.InvalidParams("You must specify 'topic' to subscribe to.")
	}
	if topic.ValidateFilter(t) != nil || strings.HasPrefix(t, "$share/") {
		return nil, jsonrpc.InvalidParams("Invalid topic in request: " + t)
	}
	if !rc.canRead(t) {
		return nil, jsonrpc.InvalidParams("You are not allowed to subscribe to topic: " + t)
	}
	ack, err := jsonrpc.AppendResult(nil, req.ID, map[string]any{"action": "subscribe", "status": "ok", "topic": t})
	if err != nil {
		return nil, jsonrpc.InvalidParams(err.Error())
	}
	rc.mu.Lock()
	_, exists := rc.subs[t]
	count := len(rc.subs)
	rc.mu.Unlock()
	if exists {
		// Eventhub answers success again and keeps the first request id.
		rc.out.enqueue(append(ack, '\n'))
		return nil, nil
	}
	if max := rc.srv.cfg.Limits.MaxSubscriptions; max > 0 && count >= max {
		// H7: each subscription is a trie entry; one socket must not
		// grow the trie without bound.
		return nil, jsonrpc.InvalidParams("Too many subscriptions on this connection (limits.max_subscriptions).")
	}
	child := newSession(rc.srv, "rpc-"+rc.id, true)
	child.rpcFilter = t
	child.rpcPrefix = rpcPrefix(req.ID)
	child.held = [][]byte{} // hold live pushes until history is out
	child.conn.Store(rc.out)
	if _, err := rc.srv.trie.Subscribe(t, child, 0, tagJSON); err != nil {
		return nil, jsonrpc.InvalidParams("Invalid topic in request: " + t)
	}
	// Recorded only once in the trie, so a failed subscribe leaves nothing
	// behind; the close path removes what is recorded here.
	rc.mu.Lock()
	rc.subs[t] = child
	rc.mu.Unlock()
	rc.out.enqueue(append(ack, '\n'))
	rc.replay(child, req.ID, p)
	child.releaseHeld()
	return nil, nil
}

// rpcPrefix renders the part of a push that differs per subscription.
func rpcPrefix(id json.RawMessage) []byte {
	b := append([]byte(`{"id":`), id...)
	return append(b, `,"jsonrpc":"2.0","result":`...)
}

// unsubscribeAll removes every subscription and returns how many there
// were.
func (rc *rpcConn) unsubscribeAll() int {
	rc.mu.Lock()
	subs := rc.subs
	rc.subs = map[string]*session{}
	rc.mu.Unlock()
	for t, child := range subs {
		rc.srv.trie.Unsubscribe(t, child)
	}
	return len(subs)
}

func (rc *rpcConn) unsubscribe(t string) bool {
	if !rc.canRead(t) {
		return false // Eventhub skips non-readable entries silently
	}
	rc.mu.Lock()
	child, ok := rc.subs[t]
	delete(rc.subs, t)
	rc.mu.Unlock()
	if !ok {
		return false
	}
	rc.srv.trie.Unsubscribe(t, child)
	return true
}

func (rc *rpcConn) publish(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
	t, ok1 := paramString(p, "topic")
	msg, ok2 := paramString(p, "message")
	if !ok1 || !ok2 || t == "" || msg == "" {
		return nil, jsonrpc.InvalidParams("You need to specify topic and message to publish to.")
	}
	// Eventhub checks access before validity (§2.2).
	if !rc.canWrite(t) {
		return nil, jsonrpc.InvalidParams("Insufficient access to topic: " + t)
	}
	if topic.ValidateTopic([]byte(t)) != nil {
		return nil, jsonrpc.InvalidParams(t + " is not a valid topic.")
	}
	if !rc.srv.allowRate(rc.claims, t) {
		// A result, not an error: clients read status (eventhub.md §2.2).
		return map[string]any{"action": "publish", "status": "ERR_RATE_LIMIT_EXCEEDED", "topic": t}, nil
	}
	// With the cache on every publish is kept for default_ttl, or the ttl
	// asked for (§5); with it off only storage.record topics are.
	var ttl time.Duration
	if rc.srv.cfg.JSONRPC.EnableCache {
		ttl = time.Duration(rc.srv.cfg.Storage.DefaultTTL)
		if v, ok := paramInt(p, "ttl"); ok && v > 0 {
			ttl = time.Duration(v) * time.Second
		}
	}
	var at time.Time
	if v, ok := paramInt(p, "timestamp"); ok && v > 0 {
		at = time.UnixMilli(v)
	}
	id, err := rc.srv.publishExternal(externalPublish{
		topic: t, payload: []byte(msg), qos: 1, origin: rc.origin, ttl: ttl, at: at,
		store: rc.srv.cfg.NoAuth || rc.claims == nil || rc.claims.CanStore(t),
	})
	if err != nil {
		return nil, jsonrpc.InvalidParams("Error while publishing message: " + err.Error())
	}
	return map[string]any{"action": "publish", "id": id.String(), "status": "ok", "topic": t}, nil
}
