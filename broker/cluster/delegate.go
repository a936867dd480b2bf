package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the node as memberlist sees it (Delegate, EventDelegate,
// AliveDelegate). A separate type keeps these methods out of Node's API.
//
// memberlist calls the event and alive callbacks with its node lock held,
// and NotifyMsg/GetBroadcasts on its packet and gossip goroutines, so
// nothing here blocks or calls back into memberlist.
type delegate struct{ n *Node }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
)

// NodeMeta returns the metadata built at Start (peer address, version).
func (d *delegate) NodeMeta(limit int) []byte {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	if len(d.n.meta) > limit {
		return nil // cannot happen: fields are capped far below 512 bytes
	}
	return d.n.meta
}

// NotifyMsg copies the payload and hands it to applyGossip without
// blocking: memberlist reuses the buffer and its packet loop must go on.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 || len(b) > maxGossipMessage {
		d.n.rejectGossip("notify_msg", len(b), errMalformed)
		return
	}
	msg := make([]byte, len(b))
	copy(msg, b)
	select {
	case d.n.inbox <- msg:
	default:
		d.n.droppedGossip.Add(1)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState is this node's side of a push/pull: every interest record it
// holds for alive members, its own first.
func (d *delegate) LocalState(join bool) []byte {
	return d.n.interest.appendState(nil, maxStateBytes)
}

// MergeRemoteState applies the peer's side of a push/pull. memberlist has
// already merged the membership it carried, so the members named in it are
// known and their records route at once.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return // a peer without user state (or a memberlist tool)
	}
	recs, err := decodeState(buf)
	if err != nil {
		d.n.rejectGossip("merge_remote_state", len(buf), err)
		return
	}
	now := time.Now()
	witnessed := false
	for _, rec := range recs {
		_, w := d.n.interest.apply(rec, now)
		witnessed = witnessed || w
	}
	if witnessed {
		d.n.signalAnnounce()
	}
}

func (d *delegate) NotifyJoin(node *memberlist.Node)   { d.n.memberAlive(node) }
func (d *delegate) NotifyUpdate(node *memberlist.Node) { d.n.memberAlive(node) }
func (d *delegate) NotifyLeave(node *memberlist.Node)  { d.n.memberGone(node) }

// NotifyAlive refuses nodes that are not pubsub nodes of a compatible
// release: their metadata must decode. A foreign memberlist that shares
// the key and label still cannot become a member.
func (d *delegate) NotifyAlive(node *memberlist.Node) error {
	if len(node.Name) == 0 || len(node.Name) > maxNameLen {
		return fmt.Errorf("cluster: member name of %d bytes", len(node.Name))
	}
	if _, err := decodeMeta(node.Meta); err != nil {
		return fmt.Errorf("cluster: member %q: %w", node.Name, err)
	}
	return nil
}

// rejectGossip counts and logs a payload that failed validation. The log
// names the source and size, never the bytes.
func (n *Node) rejectGossip(source string, size int, err error) {
	n.malformedGossip.Add(1)
	if errors.Is(err, errUnknownType) {
		// A newer release's message kind: expected during upgrades.
		n.log.Debug("cluster gossip ignored", "source", source, "bytes", size, "err", err)
		return
	}
	n.log.Warn("cluster gossip rejected", "source", source, "bytes", size, "err", err)
}

// applyGossip applies NotifyMsg payloads, off memberlist's goroutines.
func (n *Node) applyGossip() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case msg := <-n.inbox:
			n.applyGossipMsg(msg)
		}
	}
}

func (n *Node) applyGossipMsg(msg []byte) {
	typ, rec, err := decodeGossip(msg)
	if err != nil {
		n.rejectGossip("notify_msg", len(msg), err)
		return
	}
	switch typ {
	case gossipInterest:
		accepted, witnessed := n.interest.apply(rec, time.Now())
		if accepted {
			// Pass it on (epidemic spread): memberlist only retransmits
			// what this node queues itself.
			n.broadcasts.QueueBroadcast(&interestBroadcast{node: rec.node, msg: msg})
		}
		if witnessed {
			n.signalAnnounce()
		}
	case gossipDigest:
		fetch, witnessed := n.interest.newer(rec.node, rec.version)
		if fetch {
			n.broadcasts.QueueBroadcast(&interestBroadcast{node: rec.node, msg: msg})
			n.fetchInterest(rec.node)
		}
		if witnessed {
			n.signalAnnounce()
		}
	}
}

// interestBroadcast is the gossip "interest of node X". Its name makes a
// newer one replace an older one still queued, so the queue holds at most
// one per node however fast interest changes.
type interestBroadcast struct {
	node string
	msg  []byte
}

func (b *interestBroadcast) Name() string    { return "interest/" + b.node }
func (b *interestBroadcast) Message() []byte { return b.msg }
func (b *interestBroadcast) Finished()       {}

func (b *interestBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(memberlist.NamedBroadcast)
	return ok && o.Name() == b.Name()
}

// signalAnnounce asks announceLoop to gossip the local interest.
func (n *Node) signalAnnounce() {
	select {
	case n.announce <- struct{}{}:
	default:
	}
}

// announceLoop gossips the local interest whenever it changes, the first
// change at once and then at most one announcement per announceSpacing:
// changes in between collapse into the next one, so a burst of a thousand
// subscriptions costs two encodings (and, for a large set, two rounds of
// fetches by every other node), not a thousand. This paces gossip, the
// control plane; messages never wait on it.
func (n *Node) announceLoop() {
	defer n.wg.Done()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.announce:
		}
		version, filters := n.interest.localRecord()
		msg := appendInterestMsg(nil, n.cfg.Name, version, filters)
		if len(msg) > inlineInterestLimit {
			msg = appendDigestMsg(nil, n.cfg.Name, version)
		}
		n.broadcasts.QueueBroadcast(&interestBroadcast{node: n.cfg.Name, msg: msg})
		pace.Reset(announceSpacing)
		select {
		case <-n.ctx.Done():
			return
		case <-pace.C:
		}
	}
}

// announceSpacing is the least time between two interest announcements.
const announceSpacing = 50 * time.Millisecond

// fetchInterest asks node for its interest record over the peer link,
// once at a time per node.
func (n *Node) fetchInterest(node string) {
	n.mu.Lock()
	if n.fetching[node] || n.stopped {
		n.mu.Unlock()
		return
	}
	n.fetching[node] = true
	n.wg.Add(1) // applyGossip is counted, so Wait has not returned
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.fetching, node)
			n.mu.Unlock()
		}()
		replies := n.ask(n.ctx, []string{node}, kindInterest, nil)
		body, ok := replies[node]
		if !ok {
			return // push/pull will bring it
		}
		rec, err := decodeInterestReply(body)
		if err != nil || rec.node != node {
			n.rejectGossip("interest_reply", len(body), errors.Join(errMalformed, err))
			return
		}
		n.interest.apply(rec, time.Now())
	}()
}

// interestRecord is the answer to kindInterest: this node's record.
func (n *Node) interestRecord() []byte {
	version, filters := n.interest.localRecord()
	return appendRecord(nil, n.cfg.Name, version, filters)
}

// decodeInterestReply decodes the answer to kindInterest.
func decodeInterestReply(b []byte) (interestRecord, error) {
	if len(b) > maxStateBytes {
		return interestRecord{}, fmt.Errorf("%w: %d-byte interest reply", errMalformed, len(b))
	}
	d := decoder{buf: b}
	rec := d.record()
	if err := d.done(); err != nil {
		return interestRecord{}, err
	}
	return rec, nil
}

// AddInterest counts one more local subscription to filter. The node
// advertises each distinct filter once, whatever the count; shared
// subscriptions "$share/GROUP/F" count as F. Invalid filters are refused.
func (n *Node) AddInterest(filter string) error {
	changed, err := n.interest.add(filter)
	if changed {
		n.signalAnnounce()
	}
	return err
}

// RemoveInterest counts one local subscription to filter less and reports
// whether filter was held; the filter stops being advertised when its
// count reaches zero.
func (n *Node) RemoveInterest(filter string) bool {
	changed, held := n.interest.remove(filter)
	if changed {
		n.signalAnnounce()
	}
	return held
}

// SetInterest replaces the local interest with filters, one subscription
// each. On error (an invalid filter) nothing changes.
func (n *Node) SetInterest(filters []string) error {
	changed, err := n.interest.set(filters)
	if changed {
		n.signalAnnounce()
	}
	return err
}

// LocalInterest returns the distinct filters this node advertises, sorted.
func (n *Node) LocalInterest() []string {
	return n.interest.localFilters()
}

// Interested returns the other alive members with a filter matching the
// concrete topic, in no particular order. See AppendInterested to avoid
// the allocation.
func (n *Node) Interested(topic []byte) []string {
	return n.interest.appendMatches(nil, topic)
}

// AppendInterested appends to dst the other alive members with a filter
// matching the concrete topic and returns the extended slice. Results are
// cached per topic (bounded), so on a cache hit it allocates nothing when
// dst has room. The topic is not validated.
func (n *Node) AppendInterested(dst []string, topic []byte) []string {
	return n.interest.appendMatches(dst, topic)
}
