package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Scatter/gather queries: a request to every alive member over the peer
// links, answered by a handler registered for its kind, with the answers
// collected until every member replied or the deadline passed. Presence and
// history are built on it. The deadline travels with the request, so a
// handler does not work on past the point where its answer is wanted.

// Handler answers a query from another node. It runs on a goroutine of its
// own (at most MaxConcurrentQueries at once per node) and should honour
// ctx, which ends at the asker's deadline or at shutdown. body is the
// handler's to keep. A nil answer is an empty answer, not a refusal.
type Handler func(ctx context.Context, body []byte) []byte

// ErrInvalidKind is returned for a query kind that is empty, longer than
// 255 bytes, or starts with '$' (reserved for the package's own queries).
var ErrInvalidKind = errors.New("cluster: invalid query kind")

// ErrNotRunning is returned by calls that need a started, running node.
var ErrNotRunning = errors.New("cluster: node not running")

// The package's own query kinds, answered on the link's reading goroutine
// (they are cheap and must not queue behind user handlers).
const (
	// kindInterest: "send me your interest record", the answer to a
	// gossiped digest of a set too large for a packet.
	kindInterest = "$interest"
	// kindLeave: "I am about to leave". memberlist reports a graceful leave
	// and a failure alike (NotifyLeave), so a leaving node tells its peers
	// first, and they list it as left rather than dead (serf does the same
	// with its own leave intent).
	kindLeave = "$leave"
)

// maxQueryTimeout caps the deadline a remote asker can impose on a handler.
const maxQueryTimeout = time.Minute

func validKind(kind string) error {
	if kind == "" || len(kind) > maxKindLen || kind[0] == '$' {
		return fmt.Errorf("%w: %q", ErrInvalidKind, kind)
	}
	return nil
}

// queries tracks the queries this node is waiting on.
type queries struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingQuery
}

type pendingQuery struct {
	mu   sync.Mutex
	want map[string]struct{} // asked and not yet answered
	got  map[string][]byte
	done chan struct{} // closed when want empties
}

func newQueries() *queries {
	return &queries{pending: make(map[uint64]*pendingQuery)}
}

func (qs *queries) register(peers []string) (uint64, *pendingQuery) {
	pq := &pendingQuery{
		want: make(map[string]struct{}, len(peers)),
		got:  make(map[string][]byte, len(peers)),
		done: make(chan struct{}),
	}
	for _, p := range peers {
		pq.want[p] = struct{}{}
	}
	if len(pq.want) == 0 {
		close(pq.done)
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.next++
	qs.pending[qs.next] = pq
	return qs.next, pq
}

func (qs *queries) unregister(id uint64) {
	qs.mu.Lock()
	delete(qs.pending, id)
	qs.mu.Unlock()
}

// deliver records a reply; runs on a link's reading goroutine. A reply to
// an unknown or finished query, or from a node that was not asked, is
// ignored: it is late, not malformed.
func (qs *queries) deliver(from string, r replyFrame) {
	qs.mu.Lock()
	pq := qs.pending[r.id]
	qs.mu.Unlock()
	if pq == nil {
		return
	}
	var body []byte
	if r.status == replyOK {
		body = bytes.Clone(r.body)
		if body == nil {
			body = []byte{}
		}
	}
	pq.settle(from, body)
}

// settle removes from from the nodes still awaited, storing body unless it
// is nil (no answer).
func (pq *pendingQuery) settle(from string, body []byte) {
	pq.mu.Lock()
	defer pq.mu.Unlock()
	if _, ok := pq.want[from]; !ok {
		return
	}
	delete(pq.want, from)
	if body != nil {
		pq.got[from] = body
	}
	if len(pq.want) == 0 {
		close(pq.done)
	}
}

func (pq *pendingQuery) results() map[string][]byte {
	pq.mu.Lock()
	defer pq.mu.Unlock()
	out := make(map[string][]byte, len(pq.got))
	for k, v := range pq.got {
		out[k] = v
	}
	return out
}

// Handle registers h for queries of kind, replacing any handler before it;
// a nil h removes it. Nodes without a handler for a kind answer that they
// have none, and Query leaves them out of its result.
func (n *Node) Handle(kind string, h Handler) error {
	if err := validKind(kind); err != nil {
		return err
	}
	n.setHandler(kind, h)
	return nil
}

func (n *Node) setHandler(kind string, h Handler) {
	n.handlersMu.Lock()
	defer n.handlersMu.Unlock()
	if h == nil {
		delete(n.handlers, kind)
		return
	}
	n.handlers[kind] = h
}

func (n *Node) handler(kind []byte) Handler {
	n.handlersMu.RLock()
	defer n.handlersMu.RUnlock()
	return n.handlers[string(kind)]
}

// Query sends a query of kind with body to every other alive member and
// returns the answers by node name, once all of them answered or ctx ended
// (DefaultQueryTimeout, or Config.QueryTimeout, when ctx has no deadline).
// Members that did not answer in time, have no handler for kind or were
// too busy are missing from the result; this node is never asked, so the
// caller answers for itself.
func (n *Node) Query(ctx context.Context, kind string, body []byte) (map[string][]byte, error) {
	if err := validKind(kind); err != nil {
		return nil, err
	}
	if !n.running() {
		return nil, ErrNotRunning
	}
	if queryLen(0, 0, kind, body)+2*10 > n.cfg.MaxFrameBytes { // room for id and timeout varints
		return nil, ErrTooLarge
	}
	return n.ask(ctx, n.alivePeers(), kind, body), nil
}

// ask queries peers and gathers their answers.
func (n *Node) ask(ctx context.Context, peers []string, kind string, body []byte) map[string][]byte {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.QueryTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	timeoutMillis := uint64(max(time.Until(deadline).Milliseconds(), 1))

	id, pq := n.queries.register(peers)
	defer n.queries.unregister(id)
	for _, p := range peers {
		if err := n.links.sendQuery(p, id, timeoutMillis, kind, body); err != nil {
			pq.settle(p, nil) // cannot be asked: do not wait for it
		}
	}
	select {
	case <-pq.done:
	case <-ctx.Done():
	case <-n.ctx.Done():
	}
	return pq.results()
}

// serveQuery answers a query frame from p; runs on p's reading goroutine,
// so the handler itself runs elsewhere.
func (n *Node) serveQuery(p *peer, q queryFrame) {
	switch string(q.kind) {
	case kindInterest:
		n.links.sendReply(p, q.id, replyOK, n.interestRecord())
		return
	case kindLeave:
		n.markLeaving(p.name)
		n.links.sendReply(p, q.id, replyOK, nil)
		return
	}
	h := n.handler(q.kind)
	if h == nil {
		n.links.sendReply(p, q.id, replyNoHandler, nil)
		return
	}
	select {
	case n.querySlots <- struct{}{}:
	default:
		n.links.sendReply(p, q.id, replyBusy, nil)
		return
	}
	timeout := n.cfg.QueryTimeout
	if q.timeoutMillis > 0 {
		timeout = min(time.Duration(q.timeoutMillis)*time.Millisecond, maxQueryTimeout)
	}
	body := bytes.Clone(q.body)
	n.wg.Add(1) // the reading goroutine is counted, so Wait has not returned
	go func() {
		defer n.wg.Done()
		defer func() { <-n.querySlots }()
		ctx, cancel := context.WithTimeout(n.ctx, timeout)
		answer := h(ctx, body)
		cancel()
		n.links.sendReply(p, q.id, replyOK, answer)
	}()
}
