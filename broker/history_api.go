package broker

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
)

// Emitter's history request (emitter.md §3): a PUBLISH to emitter/history/
// with {"key","channel":"KEY/a/b/?last=N&from=&until=","startFromID":b64}
// is answered on the same topic with {"req","messages":[{"id","channel",
// "payload"}]} and no status field. The key needs 'l'.
//
// Paging runs backwards in time, as in Emitter and its Go SDK: a page is
// the newest messages of the window, oldest first, and the next request
// passes the first (oldest) message's id as startFromID to get the newest
// messages strictly older than it.

// maxHistoryReply caps the bytes of one answer, as Emitter caps its replies
// at about 64 KiB (emitter.md §10) so SDKs with Emitter's packet limit can
// read them; the SDK pages for the rest. One message is always sent, so a
// larger one can still be read.
const maxHistoryReply = 64 << 10

// historyAPIRequest is the body of an emitter/history/ request.
type historyAPIRequest struct {
	// Key is ignored by Emitter, which reads the key from Channel; here it
	// authorises a Channel given without one.
	Key         string `json:"key"`
	Channel     string `json:"channel"`
	StartFromID []byte `json:"startFromID"` // base64 of store.ID.Bytes
}

// historyAPIMessage is one message of the answer.
type historyAPIMessage struct {
	ID      []byte `json:"id"` // base64 of store.ID.Bytes, for startFromID
	Channel string `json:"channel"`
	// Topic repeats Channel: the Go SDK (emitter-io/go v2) reads "topic".
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
}

func (c *conn) apiHistory(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req historyAPIRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Channel == "" {
		fail(400, msgBadRequest)
		return
	}
	pt, emitterForm, err := historyChannel(req.Channel)
	if err != nil {
		fail(400, msgBadTarget)
		return
	}
	if !c.srv.cfg.NoAuth {
		cl := c.claims.Load()
		key := pt.key
		if key == "" {
			key = req.Key
		}
		if key != "" {
			if cl, err = c.verifyKey(key); err != nil {
				fail(401, msgUnauthorized)
				return
			}
		}
		if cl == nil || !cl.CanLoad(pt.route) {
			fail(401, msgUnauthorized)
			return
		}
	}
	var before store.ID
	if len(req.StartFromID) > 0 {
		if before, err = store.IDFromBytes(req.StartFromID); err != nil {
			fail(400, msgBadRequest)
			return
		}
	}
	limit := c.srv.cfg.Storage.MaxRequestLimit
	if pt.opts.hasLast {
		limit = min(limit, pt.opts.last)
	}
	q := store.Query{Filter: pt.route}
	if pt.opts.from > 0 {
		q.From = time.Unix(pt.opts.from, 0)
	}
	if pt.opts.until > 0 {
		q.Until = time.Unix(pt.opts.until, 0)
	}
	msgs := []store.Message{}
	if limit > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if msgs, err = c.srv.historyBefore(ctx, q, before, limit); err != nil {
			c.srv.log.Warn("history query failed", "err", err)
			fail(500, "the history could not be read")
			return
		}
	}
	msgs = newestWithin(msgs, maxHistoryReply)
	out := make([]historyAPIMessage, len(msgs))
	for i, m := range msgs {
		b := m.ID.Bytes()
		ch := m.Topic
		if emitterForm {
			ch += "/"
		}
		out[i] = historyAPIMessage{ID: b[:], Channel: ch, Topic: ch, Payload: m.Payload}
	}
	reply(map[string]any{"messages": out})
}

// historyChannel reads the channel of a history request. A channel that
// carries no key (auth off, or the key given in "key") still has Emitter's
// meaning when it ends with '/': "a/b/" is a/b and everything below it.
// emitterForm reports that answers carry the channel's trailing '/'.
func historyChannel(raw string) (pt parsedTopic, emitterForm bool, err error) {
	if pt, err = parseTopic(raw, true); err != nil {
		return pt, false, err
	}
	if pt.api != "" {
		return pt, false, errEmitterChannel
	}
	emitterForm = pt.emitter
	if !emitterForm {
		base := raw
		if i := strings.LastIndex(raw, "/?"); i >= 0 && !strings.Contains(raw[i+2:], "/") {
			base = raw[:i+1]
		}
		if strings.HasSuffix(base, "/") {
			if pt.route, err = emitterChannel(base, true); err != nil {
				return pt, false, err
			}
			emitterForm = true
		}
	}
	if _, _, shared := topic.SplitShared(pt.route); shared {
		return pt, false, errEmitterChannel // history belongs to topics, not share groups
	}
	return pt, emitterForm, topic.ValidateFilter(pt.route)
}

// historyBefore returns, oldest first, the newest limit messages matching
// q (Filter, From, Until) that are older than before; a zero before means
// no such bound. The store pages forwards (AfterID), so the bound is two
// queries: the millisecond of before, filtered by id, then the newest of
// everything earlier.
func (s *Server) historyBefore(ctx context.Context, q store.Query, before store.ID, limit int) ([]store.Message, error) {
	q.Newest, q.Limit = true, limit
	if before.IsZero() {
		return s.store.Query(ctx, q)
	}
	ms := before.Millis()
	var same []store.Message
	if (q.From.IsZero() || q.From.UnixMilli() <= ms) && (q.Until.IsZero() || q.Until.UnixMilli() >= ms) {
		at := time.UnixMilli(ms)
		all, err := s.store.Query(ctx, store.Query{Filter: q.Filter, From: at, Until: at})
		if err != nil {
			return nil, err
		}
		for _, m := range all {
			if m.ID.Less(before) {
				same = append(same, m)
			}
		}
		if len(same) > limit {
			same = same[len(same)-limit:]
		}
	}
	if len(same) == limit || ms == 0 {
		return same, nil
	}
	earlier := time.UnixMilli(ms - 1)
	if q.Until.IsZero() || q.Until.After(earlier) {
		q.Until = earlier
	}
	if !q.From.IsZero() && q.From.After(q.Until) {
		return same, nil
	}
	q.Limit = limit - len(same)
	older, err := s.store.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return append(older, same...), nil
}

// newestWithin keeps the newest messages of msgs (oldest first) whose
// answer fits in budget bytes, and at least one.
func newestWithin(msgs []store.Message, budget int) []store.Message {
	used := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		m := &msgs[i]
		// base64 id and payload, the channel twice, JSON punctuation.
		used += (store.IDLen+len(m.Payload))*4/3 + 2*len(m.Topic) + 64
		if used > budget && i < len(msgs)-1 {
			return msgs[i+1:]
		}
	}
	return msgs
}
