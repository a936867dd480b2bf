package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pubsub/pubsub/broker/mqtt"
)

// Emitter's request/response API (emitter.md §3): a PUBLISH of a JSON body
// to emitter/<op>/ is answered with a PUBLISH to the same topic string, on
// this connection only, whose JSON carries "req" = the request's MQTT packet
// id. Errors the node cannot send on the request topic go to emitter/error/
// with the same "req" (emitter.md §10). Request sends at QoS 1 because a
// QoS 0 PUBLISH has no packet id to correlate the answer with.

// apiErrorTopic is where Emitter sends errors it does not answer on the
// request topic (emitter.md §10).
const apiErrorTopic = "emitter/error/"

// APIError is a refusal from the node: an answer whose status is not 200.
type APIError struct {
	Op      string // the request, e.g. "keygen"
	Status  int    // Emitter's HTTP-like code: 400, 401, 404, 500, 501
	Message string // Emitter's text, meant for people
}

func (e *APIError) Error() string {
	return fmt.Sprintf("emitter/%s/: %d %s", e.Op, e.Status, e.Message)
}

// apiWaiters hands answers to the goroutines of pending Requests instead of
// Messages. The read loop asks it about every PUBLISH, so while no request
// is pending that costs one atomic load.
type apiWaiters struct {
	pending atomic.Int32
	mu      sync.Mutex
	byID    map[uint16]apiWaiter // packet id -> waiter
}

type apiWaiter struct {
	topic string      // the request topic, where the answer comes
	reply chan []byte // capacity 1, so the read loop never blocks on it
}

func (w *apiWaiters) add(id uint16, topic string) (chan []byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byID == nil {
		w.byID = make(map[uint16]apiWaiter)
	}
	// The id is reserved in Client.waiting until PUBACK; an older request
	// can still hold it here only after 65535 newer ones, which is a
	// caller that never reads its answers.
	if _, busy := w.byID[id]; busy {
		return nil, errors.New("client: too many requests in flight")
	}
	ch := make(chan []byte, 1)
	w.byID[id] = apiWaiter{topic: topic, reply: ch}
	w.pending.Add(1)
	return ch, nil
}

func (w *apiWaiters) remove(id uint16) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.byID[id]; ok {
		delete(w.byID, id)
		w.pending.Add(-1)
	}
}

// answer gives m to the request it answers, reporting whether it did. Only
// a PUBLISH on the request's own topic or on emitter/error/ whose "req"
// names a pending request qualifies; anything else stays a message.
func (w *apiWaiters) answer(m Message) bool {
	if !strings.HasPrefix(m.Topic, "emitter/") {
		return false
	}
	var head struct {
		Req *uint16 `json:"req"`
	}
	if json.Unmarshal(m.Payload, &head) != nil || head.Req == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	waiter, ok := w.byID[*head.Req]
	if !ok || (m.Topic != waiter.topic && m.Topic != apiErrorTopic) {
		return false
	}
	delete(w.byID, *head.Req)
	w.pending.Add(-1)
	waiter.reply <- m.Payload
	return true
}

// dispatch hands a received PUBLISH to a pending Request it answers, or
// else to Messages. It reports false when the client closed meanwhile.
func (c *Client) dispatch(m Message) bool {
	if c.api.pending.Load() > 0 && c.api.answer(m) {
		return true
	}
	return c.deliver(m)
}

// Request sends an Emitter API request: request marshalled as JSON to
// emitter/<op>/ at QoS 1. It returns the node's JSON answer once both the
// answer and the PUBACK have arrived, or when ctx ends. An answer whose
// "status" is present and not 200 is returned together with an *APIError.
//
// Answers to a pending Request never reach Messages.
func (c *Client) Request(ctx context.Context, op string, request any) ([]byte, error) {
	// Emitter takes exactly one level as the op (emitter.md §3).
	if op == "" || strings.ContainsAny(op, "/+#?") {
		return nil, fmt.Errorf("client: request %q: want one topic level such as \"keygen\"", op)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(request)
	if err != nil {
		return nil, fmt.Errorf("client: request %s: %w", op, err)
	}
	topic := "emitter/" + op + "/"
	id, acked, err := c.register()
	if err != nil {
		return nil, err
	}
	reply, err := c.api.add(id, topic)
	if err != nil {
		c.unregister(id)
		return nil, err
	}
	defer c.api.remove(id)
	p := mqtt.Publish{Topic: []byte(topic), Payload: payload, QoS: 1, PacketID: id}
	if err := c.write(p.AppendTo(nil), true); err != nil {
		c.unregister(id)
		return nil, err
	}
	// The node may answer before or after its PUBACK; wait for both, so the
	// packet id is free again when Request returns.
	var body []byte
	gotAck, gotReply := false, false
	for !gotAck || !gotReply {
		select {
		case <-acked:
			gotAck = true
		case body = <-reply:
			gotReply = true
		case <-ctx.Done():
			if !gotAck {
				c.unregister(id)
			}
			return nil, fmt.Errorf("client: no answer to emitter/%s/: %w", op, ctx.Err())
		case <-c.done:
			if gotReply {
				return body, answerError(op, body)
			}
			if c.err != nil {
				return nil, c.err
			}
			return nil, ErrClosed
		}
	}
	return body, answerError(op, body)
}

// answerError reads the status of an answer. Emitter's history answer has
// no status at all, so only a present status other than 200 is an error.
func answerError(op string, body []byte) error {
	var st struct {
		Status  *int   `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("client: emitter/%s/: answer is not JSON: %w", op, err)
	}
	if st.Status == nil || *st.Status == 200 {
		return nil
	}
	return &APIError{Op: op, Status: *st.Status, Message: st.Message}
}
