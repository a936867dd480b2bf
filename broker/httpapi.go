package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// The plain-HTTP side of the Eventhub-compatible surface (docs/eventhub.md):
// CORS preflight for every path, Eventhub's per-token publish rate limits
// (rlimit), and POST /api/publish, a REST publish that neither Emitter nor
// Eventhub has, for scripts, webhooks and serverless functions that cannot
// hold a socket open. A message published here is routed like any other:
// MQTT, JSON-RPC and SSE subscribers all receive it.

// Preflight answers (eventhub.md §1.3, widened to the methods and headers
// pubsub's HTTP endpoints take).
const (
	corsAllowMethods = "GET, POST, OPTIONS"
	corsAllowHeaders = "Authorization, Content-Type, Last-Event-ID"
	// corsMaxAge lets a browser reuse a preflight for ten minutes.
	corsMaxAge = "600"
)

// withCORS answers OPTIONS on any path with 204 and the CORS headers, before
// routing, as Eventhub does (eventhub.md §1.1 #1). Keys travel in headers,
// never cookies, so allowing every origin grants a page nothing its key
// does not. The /keygen page is the exception: a same-origin form with its
// own method policy (keygen_http.go), not an API for other origins.
func withCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodOptions || r.URL.Path == "/keygen" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		setAllowOrigin(h, r)
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	})
}

// withRawPaths hands SSE and WebSocket requests that mux would route to
// "/" straight to root. ServeMux answers a path that is not clean with a
// redirect, which a WebSocket client does not follow and which would move
// an SSE stream to another topic; but Eventhub's JS client connects to
// "<url>//?auth=" (checklist 1) and a topic may have empty levels ("a//b").
func withRawPaths(mux *http.ServeMux, root http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" || websocket.IsWebSocketUpgrade(r) {
			if _, pattern := mux.Handler(r); pattern == "/" {
				root(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// takeConnSlot counts a JSON-RPC or SSE client against
// limits.max_connections before its upgrade or first byte, as CONNECT does
// for MQTT (H5): one atomic add, so a burst cannot overshoot. A refusal is
// 503 and the caller returns; otherwise it must release the slot with
// s.online.Add(-1) when the client goes.
func (s *Server) takeConnSlot(w http.ResponseWriter) bool {
	if s.closing.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return false
	}
	if n := s.online.Add(1); s.cfg.Limits.MaxConnections > 0 && n > int64(s.cfg.Limits.MaxConnections) {
		s.online.Add(-1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Too many connections (limits.max_connections).", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// setAllowOrigin echoes the request's Origin, or * without one.
func setAllowOrigin(h http.Header, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		h.Add("Vary", "Origin")
		return
	}
	h.Set("Access-Control-Allow-Origin", "*")
}

// publishBodySlack is what a publish body may hold besides the message:
// the other members, the key (keys.MaxTokenLen at most) and JSON syntax.
const publishBodySlack = 16 << 10

// httpPublishRequest is the body of POST /api/publish. Pointers tell a
// missing member from a zero one.
type httpPublishRequest struct {
	Topic   string  `json:"topic"`
	Message *string `json:"message"`
	TTL     int64   `json:"ttl"`    // seconds to keep the message; 0 = not stored
	Retain  bool    `json:"retain"` // keep as the topic's retained message
	QoS     *int    `json:"qos"`    // 0 (default), 1 or 2: the most subscribers get
	Key     string  `json:"key"`    // when no Authorization header or auth query
}

// httpPublishResponse is the 200 answer: the message id (Eventhub's
// "<epoch-ms>-<seq>", usable as sinceEventId) and the topic.
type httpPublishResponse struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
}

// httpError is every non-200 answer of the HTTP API.
type httpError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, httpError{Error: msg})
}

// serveHTTPPublish handles POST /api/publish. Checks run cheapest first and
// nothing is routed unless all pass: method (405), content type (415), a
// key from the header or query (401) before the body is read, the body
// capped before it is parsed (413, 400), the topic (400), access (403), the
// key's rate limit (429).
func (s *Server) serveHTTPPublish(w http.ResponseWriter, r *http.Request) {
	setAllowOrigin(w.Header(), r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSONError(w, http.StatusMethodNotAllowed, "use POST with a JSON body {\"topic\", \"message\"}")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeJSONError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
	}
	if s.closing.Load() {
		writeJSONError(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	// A key in the header or query is checked before the body is read, so
	// a request without a good one costs no parsing.
	var claims *keys.Claims
	token := tokenFromRequest(r)
	authed := s.cfg.NoAuth
	if !authed && token != "" && token != "undefined" {
		cl, err := s.keyring.Verify(token)
		if err != nil {
			s.log.Info("http publish refused: invalid key", "remote", r.RemoteAddr, "reason", err.Error())
			writeJSONError(w, http.StatusUnauthorized, "Authentication failed.")
			return
		}
		claims, authed = cl, true
	}

	maxMessage := int64(s.cfg.Limits.MaxPacketSize)
	// A message of n bytes can take 6n as a JSON string (\u00XX); the cap
	// allows a typical escaping overhead and the limit on the decoded
	// message is checked below.
	body := http.MaxBytesReader(w, r.Body, 2*maxMessage+publishBodySlack)
	var req httpPublishRequest
	if err := decodeStrict(body, &req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit))
			return
		}
		writeJSONError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if !authed {
		if req.Key == "" {
			writeJSONError(w, http.StatusUnauthorized, "No authentication token was given.")
			return
		}
		cl, err := s.keyring.Verify(req.Key)
		if err != nil {
			s.log.Info("http publish refused: invalid key", "remote", r.RemoteAddr, "reason", err.Error())
			writeJSONError(w, http.StatusUnauthorized, "Authentication failed.")
			return
		}
		claims = cl
	}

	qos := 0
	if req.QoS != nil {
		qos = *req.QoS
	}
	switch {
	case req.Topic == "" || req.Message == nil:
		writeJSONError(w, http.StatusBadRequest, "You need to specify topic and message to publish to.")
		return
	case topic.ValidateTopic([]byte(req.Topic)) != nil:
		// [MQTT-3.3.2-2]: a publish names one topic, no wildcards.
		writeJSONError(w, http.StatusBadRequest, req.Topic+" is not a valid topic.")
		return
	case qos < 0 || qos > 2:
		writeJSONError(w, http.StatusBadRequest, "qos must be 0, 1 or 2")
		return
	case req.TTL < 0:
		writeJSONError(w, http.StatusBadRequest, "ttl must be >= 0 seconds")
		return
	case int64(len(*req.Message)) > maxMessage:
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message larger than limits.max_packet_size (%d bytes)", maxMessage))
		return
	}
	if !s.cfg.NoAuth {
		if !claims.CanPublish(req.Topic) {
			s.denied.Add(1)
			writeJSONError(w, http.StatusForbidden, "Insufficient access to topic: "+req.Topic)
			return
		}
		// Keeping a message (ttl, retain) needs 's' (DESIGN §5); refusing
		// is clearer to an HTTP caller than storing silently nothing.
		if (req.TTL > 0 || req.Retain) && !claims.CanStore(req.Topic) {
			s.denied.Add(1)
			writeJSONError(w, http.StatusForbidden, "the key may not store messages on topic: "+req.Topic)
			return
		}
		if !s.allowRate(claims, req.Topic) {
			w.Header().Set("Retry-After", "1")
			writeJSONError(w, http.StatusTooManyRequests, "ERR_RATE_LIMIT_EXCEEDED")
			return
		}
	}
	origin := ""
	if claims != nil {
		origin = claims.Subject
	}
	id, err := s.publishExternal(externalPublish{
		topic:   req.Topic,
		payload: []byte(*req.Message),
		qos:     byte(qos),
		retain:  req.Retain,
		origin:  origin,
		ttl:     time.Duration(req.TTL) * time.Second,
		store:   true, // checked above
	})
	if err != nil {
		// Routed, but not kept: the caller asked for history and must know.
		s.log.Error("http publish not stored", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "message delivered but not stored: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, httpPublishResponse{ID: id.String(), Topic: req.Topic})
}

// decodeStrict decodes one JSON object into v, refusing unknown members
// (a misspelt "mesage" must not publish nothing silently) and anything
// after the object.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// rateWindows counts publishes per (rlimit entry, key subject) in fixed
// windows, Eventhub's rate limiting (eventhub.md §4) kept in the node's
// memory instead of Redis: the limit holds per node, not cluster-wide.
type rateWindows struct {
	mu        sync.Mutex
	windows   map[rateKey]*rateWindow
	nextSweep int
}

type rateKey struct{ filter, subject string }

type rateWindow struct {
	count int64
	ends  time.Time
}

// minRateSweep is the table size below which expired windows are left in
// place; above it they are swept whenever the table has doubled, which keeps
// the sweep's cost constant per insert.
const minRateSweep = 1024

// allow counts one publish in k's window and reports whether it was under
// max; a window starts with the first publish after the last one ended.
func (rw *rateWindows) allow(k rateKey, max int64, interval time.Duration, now time.Time) bool {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	w := rw.windows[k]
	if w == nil || !now.Before(w.ends) {
		if w == nil {
			if rw.windows == nil {
				rw.windows = make(map[rateKey]*rateWindow)
			}
			rw.sweepLocked(now)
			w = &rateWindow{}
			rw.windows[k] = w
		}
		w.count, w.ends = 0, now.Add(interval)
	}
	if w.count >= max {
		return false
	}
	w.count++
	return true
}

// sweepLocked drops ended windows when the table has grown enough since the
// last sweep. rw.mu must be held.
func (rw *rateWindows) sweepLocked(now time.Time) {
	if len(rw.windows) < max(rw.nextSweep, minRateSweep) {
		return
	}
	for k, w := range rw.windows {
		if !now.Before(w.ends) {
			delete(rw.windows, k)
		}
	}
	rw.nextSweep = 2 * len(rw.windows)
}

// allowRate applies the key's rlimit claim to one publish on topic t
// (eventhub.md §4): only keys with a subject are limited; the entry whose
// topic equals t wins, else the longest filter matching t; max or interval
// 0 means no limit.
func (s *Server) allowRate(cl *keys.Claims, t string) bool {
	if s.cfg.NoAuth || cl == nil || cl.Subject == "" || len(cl.RateLimits) == 0 {
		return true
	}
	lim, ok := pickRateLimit(cl.RateLimits, t)
	if !ok || lim.Max <= 0 || lim.Interval <= 0 {
		return true
	}
	return s.rateLimits.allow(rateKey{filter: lim.Topic, subject: cl.Subject}, lim.Max,
		time.Duration(lim.Interval)*time.Second, time.Now())
}

func pickRateLimit(limits []keys.RateLimit, t string) (keys.RateLimit, bool) {
	var best keys.RateLimit
	found := false
	for _, l := range limits {
		if l.Topic == t {
			return l, true
		}
		if topic.ValidateFilter(l.Topic) != nil || !topic.Matches(l.Topic, []byte(t)) {
			continue
		}
		if !found || len(l.Topic) > len(best.Topic) {
			best, found = l, true
		}
	}
	return best, found
}
