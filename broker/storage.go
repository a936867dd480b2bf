package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pubsub/pubsub/broker/jsonrpc"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// Message history, retained messages and the key-value namespace live in
// the store (DESIGN §6, docs/storage.md). What is stored: publishes with a
// ttl option from a key holding 's', JSON-RPC publishes (storage.default_ttl),
// messages on storage.record topics, and retained messages.

// parseSync reads storage.sync: "always" (fsync before the PUBACK) or an
// interval.
func parseSync(v string) (time.Duration, error) {
	if v == "always" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want \"always\" or an interval such as 100ms, got %q", v)
	}
	return d, nil
}

func (s *Server) openStore() error {
	sc := s.cfg.Storage
	sync, _ := parseSync(sc.Sync) // validated in Config.Validate
	opts := store.Options{
		Sync:        sync,
		MaxBytes:    int64(sc.MaxBytes),
		MaxPerTopic: sc.MaxPerTopic,
		MaxTTL:      time.Duration(sc.MaxTTL),
		MaxRetained: s.cfg.Limits.MaxRetained,
		Logger:      s.log,
	}
	var err error
	switch sc.Provider {
	case "disk":
		opts.Dir = filepath.Join(s.cfg.DataDir, "store")
		s.store, err = store.OpenDisk(opts)
	default:
		s.store, err = store.OpenMemory(opts)
	}
	if err != nil {
		return fmt.Errorf("open %s store: %w", sc.Provider, err)
	}
	s.ids = store.NewIDGenerator(nodeIDOf(s.cfg), nil)
	// Ids keep increasing across a restart even if the clock stepped back.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if newest, err := s.store.Query(ctx, store.Query{Filter: "#", Newest: true, Limit: 1}); err == nil && len(newest) == 1 {
		s.ids.Advance(newest[0].ID)
	}
	return nil
}

// nodeIDOf is the node component of the message ids this node mints.
func nodeIDOf(cfg Config) uint16 {
	h := fnv.New32a()
	h.Write([]byte(nodeName(cfg)))
	return uint16(h.Sum32())
}

// Store is the node's message store (tests and tools).
func (s *Server) Store() store.Store { return s.store }

// expireLoop sweeps expired history once a minute; reads never serve an
// expired message whether or not the sweep ran.
func (s *Server) expireLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := s.store.Expire(time.Now()); err != nil {
				s.log.Warn("store expiry sweep failed", "err", err)
			}
		case <-s.done:
			return
		}
	}
}

// msgID returns the id of the message being routed, minting it on first
// use so a message that is neither stored nor pushed to JSON-RPC costs none.
func (s *Server) msgID(enc *encoder) store.ID {
	if !enc.hasID {
		enc.id, enc.hasID = s.ids.Next(), true
	}
	return enc.id
}

// timestampedSeq numbers ids minted for a publisher-chosen time. Their
// sequence has the top bit set, a range the generator (which restarts at 0
// every millisecond) never reaches, so they cannot collide with its ids.
var timestampedSeq atomic.Uint32

// timestampedID mints an id for Eventhub's publish timestamp parameter
// (eventhub.md §2.2: it overrides the id and the history time).
func (s *Server) timestampedID(at time.Time) store.ID {
	seq := timestampedSeq.Add(1)&(1<<31-1) | 1<<31
	return store.MakeID(at.UnixMilli(), nodeIDOf(s.cfg), seq)
}

// storeMessage appends the routed message to history when ttl > 0.
func (s *Server) storeMessage(enc *encoder, t []byte, payload []byte, qos byte, publisher string, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	m := store.Message{
		ID:        s.msgID(enc),
		Topic:     string(t),
		Payload:   append([]byte(nil), payload...),
		QoS:       qos,
		Publisher: publisher,
		Expires:   time.Now().Add(ttl),
	}
	return s.store.Append([]store.Message{m})
}

// recordTTL returns storage.default_ttl when t matches a storage.record
// filter: such topics are stored whatever the publisher asked.
func (s *Server) recordTTL(t []byte) time.Duration {
	for _, f := range s.cfg.Storage.Record {
		if topic.Matches(f, t) {
			return time.Duration(s.cfg.Storage.DefaultTTL)
		}
	}
	return 0
}

// setRetained keeps the last retained message of a topic in the store, so
// it survives a restart with the disk provider [MQTT-3.3.1-5]; an empty
// payload deletes it [MQTT-3.3.1-10].
func (s *Server) setRetained(enc *encoder, t, payload []byte, qos byte) {
	m := store.Message{ID: s.msgID(enc), Topic: string(t), Payload: append([]byte(nil), payload...), QoS: qos, Retain: true}
	if err := s.store.SetRetained(m); err != nil {
		s.log.Warn("retained message not kept", "err", err)
	}
}

// externalPublish is a publish that does not come from an MQTT connection
// (JSON-RPC, HTTP API).
type externalPublish struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
	origin  string
	ttl     time.Duration // store for this long; 0 = not stored
	at      time.Time
	store   bool // the key may store
}

// publishExternal routes a message and stores it as asked, returning its id.
func (s *Server) publishExternal(p externalPublish) (store.ID, error) {
	enc := encoders.Get().(*encoder)
	defer encoders.Put(enc)
	enc.origin = p.origin
	s.stats.AddMessagesIn(1)
	s.stats.AddBytesIn(int64(len(p.payload)))
	if !p.at.IsZero() {
		enc.next, enc.hasNext = s.timestampedID(p.at), true
	}
	t := []byte(p.topic)
	s.publish(enc, t, p.payload, p.qos, p.retain, nil, false)
	id := s.msgID(enc)
	ttl := max(s.recordTTL(t), 0)
	if p.store && p.ttl > 0 {
		ttl = p.ttl
	}
	if err := s.storeMessage(enc, t, p.payload, p.qos, p.origin, ttl); err != nil {
		return id, err
	}
	return id, nil
}

// replayMQTT sends stored messages for a new subscription that asked for
// them with last/from/until (DESIGN §4), before its SUBACK.
func (c *conn) replayMQTT(pt parsedTopic, cl *keys.Claims, tag uint8, granted byte) {
	o := pt.opts
	if !o.hasLast && !o.hasRange {
		return
	}
	if !c.srv.cfg.NoAuth && (cl == nil || !cl.CanLoad(pt.route)) {
		return
	}
	q := store.Query{Filter: pt.route, Newest: true, Limit: o.last}
	if !o.hasLast {
		q.Limit = c.srv.cfg.Storage.MaxRequestLimit
	}
	if o.from > 0 {
		q.From = time.Unix(o.from, 0)
	}
	if o.until > 0 {
		q.Until = time.Unix(o.until, 0)
	}
	if q.Limit <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := c.srv.store.Query(ctx, q)
	if err != nil {
		c.srv.log.Warn("history query failed", "err", err)
		return
	}
	c.sendStored(msgs, tag, granted, false)
}

// sendStored writes stored messages to this connection, each at
// min(stored QoS, granted).
func (c *conn) sendStored(msgs []store.Message, tag uint8, granted byte, retain bool) {
	var buf []byte
	for _, m := range msgs {
		qos := min(m.QoS, granted)
		t := m.Topic
		if tag&tagEmitter != 0 {
			t += "/"
		}
		p := mqtt.Publish{QoS: qos, Retain: retain, Topic: []byte(t), Payload: m.Payload}
		buf = p.AppendTo(buf[:0])
		if qos == 0 {
			if c.enqueue(buf) {
				c.srv.stats.AddMessagesOut(1)
			}
			continue
		}
		c.sess.sendQoS(buf, p.PacketIDOffset(), qos, len(m.Payload), c)
	}
}

// historyRequest is Eventhub's history parameters (eventhub.md §5), shared
// by subscribe, eventlog and SSE.
type historyRequest struct {
	filter string
	// sinceEventID is the id after which to replay; hasSinceEventID is set
	// when one was given, even a malformed one.
	sinceEventID    string
	hasSinceEventID bool
	since           int64 // ms since the epoch; negative = relative to now; 0 = none
	limit           int64
	hasLimit        bool
}

// rpcHistory reads the history parameters of a JSON-RPC request.
func rpcHistory(filter string, p map[string]json.RawMessage) historyRequest {
	h := historyRequest{filter: filter}
	if id, ok := paramString(p, "sinceEventId"); ok && id != "" {
		h.sinceEventID, h.hasSinceEventID = id, true
	}
	h.since, _ = paramInt(p, "since")
	h.limit, h.hasLimit = paramInt(p, "limit")
	return h
}

// history answers a history request, oldest first: the newest `limit`
// messages (capped by storage.max_request_limit; negative means the cap, 0
// nothing) after sinceEventId, else since `since`. As in Eventhub, an
// unknown or expired sinceEventId yields nothing rather than everything, and
// a request with neither yields nothing.
func (s *Server) history(h historyRequest) ([]store.Message, error) {
	limit := s.cfg.Storage.MaxRequestLimit
	if h.hasLimit {
		switch {
		case h.limit == 0:
			return nil, nil
		case h.limit > 0 && h.limit < int64(limit):
			limit = int(h.limit)
		}
	}
	q := store.Query{Filter: h.filter, Newest: true, Limit: limit}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case h.hasSinceEventID:
		id, err := store.ParseID(h.sinceEventID)
		if err != nil {
			return nil, nil
		}
		// The id must still be stored under this filter: an unknown one
		// means the client's position is lost, and Eventhub then replays
		// nothing (§5 sinceEventId).
		at, err := s.store.Query(ctx, store.Query{Filter: h.filter, From: id.Time(), Until: id.Time()})
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(at, func(m store.Message) bool { return m.ID == id }) {
			return nil, nil
		}
		q.AfterID = id
	case h.since < 0:
		q.From = time.Now().Add(time.Duration(h.since) * time.Millisecond)
	case h.since > 0:
		q.From = time.UnixMilli(h.since)
	default:
		return nil, nil
	}
	return s.store.Query(ctx, q)
}

// rpcItem is one history entry in Eventhub's shape.
type rpcItem struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	Origin  string `json:"origin,omitempty"`
	Topic   string `json:"topic"`
}

func itemOf(m store.Message) rpcItem {
	return rpcItem{ID: m.ID.String(), Message: string(m.Payload), Origin: m.Publisher, Topic: m.Topic}
}

// replay pushes history for a JSON-RPC subscribe, after its ack. With
// jsonrpc.enable_cache off there is none, silently, as in Eventhub.
func (rc *rpcConn) replay(child *session, id json.RawMessage, p map[string]json.RawMessage) {
	if !rc.srv.cfg.JSONRPC.EnableCache {
		return
	}
	msgs, err := rc.srv.history(rpcHistory(child.rpcFilter, p))
	if err != nil {
		rc.srv.log.Warn("history query failed", "err", err)
		return
	}
	for _, m := range msgs {
		b, err := jsonrpc.AppendResult(nil, id, itemOf(m))
		if err == nil {
			rc.out.enqueue(append(b, '\n'))
		}
	}
}

func (rc *rpcConn) eventlog(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
	if !rc.srv.cfg.JSONRPC.EnableCache {
		return nil, jsonrpc.InvalidParams("Cache is not enabled in server config")
	}
	h := rpcHistory("", p)
	t, ok := paramString(p, "topic")
	// Eventhub reads topic and sinceEventId together, so a missing topic
	// hides sinceEventId and the "either" error wins (§2.2 quirk); since
	// 0 asks for nothing and counts as absent (§5).
	if h.since == 0 && (!h.hasSinceEventID || !ok || t == "") {
		return nil, jsonrpc.InvalidParams("You must specify either 'since' or 'sinceEventId'.")
	}
	if !ok || t == "" {
		return nil, jsonrpc.InvalidParams("You must specify topic.")
	}
	if topic.ValidateFilter(t) != nil {
		return nil, jsonrpc.InvalidParams("Invalid topic in request: " + t)
	}
	if !rc.canRead(t) || (!rc.srv.cfg.NoAuth && !rc.claims.CanLoad(t)) {
		return nil, jsonrpc.InvalidParams("You are not allowed to read from topic: " + t)
	}
	h.filter = t
	msgs, err := rc.srv.history(h)
	if err != nil {
		return nil, jsonrpc.InvalidParams("Error while looking up cache: " + err.Error())
	}
	items := make([]rpcItem, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, itemOf(m))
	}
	return map[string]any{"action": "eventlog", "items": items, "status": "ok", "topic": t}, nil
}

// kvPrefix keeps the Eventhub key-value namespace apart from pubsub's own
// keys in the store.
const kvPrefix = "kv/"

func (rc *rpcConn) kv(method string, p map[string]json.RawMessage) (any, *jsonrpc.Error) {
	if !rc.srv.cfg.JSONRPC.EnableKVStore {
		return nil, jsonrpc.InvalidParams("KVStore is not enabled.")
	}
	key, ok := paramString(p, "key")
	if !ok || key == "" {
		return nil, jsonrpc.InvalidParams("You must specify 'key'.")
	}
	switch method {
	case "get":
		if !rc.canRead(key) {
			return nil, jsonrpc.InvalidParams("You are not allowed to read key " + key)
		}
		v, found, err := rc.srv.store.KVGet(kvPrefix + key)
		if err != nil {
			return nil, jsonrpc.InvalidParams("KVStore: " + err.Error())
		}
		if !found {
			return nil, jsonrpc.InvalidParams("KVStore: key not found")
		}
		return map[string]any{"action": "get", "key": key, "value": string(v)}, nil
	case "set":
		if !rc.canWrite(key) {
			return nil, jsonrpc.InvalidParams("You are not allowed to write key " + key)
		}
		v, ok := paramString(p, "value")
		if !ok {
			return nil, jsonrpc.InvalidParams("KVStore: value must be a string")
		}
		ttl, _ := paramInt(p, "ttl")
		if err := rc.srv.store.KVSet(kvPrefix+key, []byte(v), time.Duration(ttl)*time.Second); err != nil {
			return nil, jsonrpc.InvalidParams("KVStore: " + err.Error())
		}
		return map[string]any{"action": "set", "key": key, "success": true}, nil
	default:
		if !rc.canWrite(key) {
			return nil, jsonrpc.InvalidParams("You are not allowed to delete key " + key)
		}
		existed, err := rc.srv.store.KVDelete(kvPrefix + key)
		if err != nil {
			return nil, jsonrpc.InvalidParams("KVStore: " + err.Error())
		}
		return map[string]any{"action": "del", "key": key, "success": existed}, nil
	}
}

// appendJSONForm renders the per-message part of a JSON-RPC push:
// {"id":…,"message":…,"origin":…,"topic":…}} and a newline. It is built
// once per message however many JSON-RPC and SSE subscribers get it, in the
// encoder's reused buffer, without allocating.
func (s *Server) appendJSONForm(enc *encoder) []byte {
	if enc.hasJSON {
		return enc.jsonForm
	}
	b := enc.jsonForm[:0]
	b = append(b, `{"id":"`...)
	b = s.msgID(enc).AppendText(b)
	b = append(b, `","message":`...)
	b = appendJSONString(b, enc.payload)
	if enc.origin != "" {
		b = append(b, `,"origin":`...)
		b = appendJSONString(b, enc.origin)
	}
	b = append(b, `,"topic":`...)
	b = appendJSONString(b, enc.topic)
	b = append(b, "}}\n"...)
	enc.jsonForm, enc.hasJSON = b, true
	return b
}

// appendJSONString appends s as a JSON string [RFC 8259 §7]: '"', '\\' and
// control characters escaped, each byte of invalid UTF-8 replaced by U+FFFD
// as encoding/json does, all else as is (Eventhub does not escape UTF-8
// either, eventhub.md §2.1).
func appendJSONString[T ~string | ~[]byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		// At most UTFMax bytes are converted, which stays on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
