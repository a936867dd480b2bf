package cluster

import (
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/pubsub/pubsub/broker/topic"
)

// interest is the node's half of interest routing: the filters its own
// subscribers hold (refcounted, so the broker can add and remove one per
// subscription), and the filters every other node advertises, indexed in a
// topic trie whose subscribers are node names.
//
// Each node versions its own set with a Lamport clock. The clock starts at
// the wall-clock time in nanoseconds, so a restarted node normally
// outnumbers what the cluster remembers of its former self, and it also
// witnesses any record about itself it hears (push/pull, gossip): when that
// record is as new as its clock, the clock jumps past it and the node
// re-announces, so even a node whose wall clock went backwards wins. For
// everyone else a record replaces the held one only when its version is
// higher, so gossip that arrives late or twice changes nothing.
//
// Only the filters of alive members are in the trie (routed); a record that
// arrives before its node is known to be alive waits (bounded), and a
// member that fails or leaves loses its filters at once and leaves a
// tombstone with its last version, so stale gossip about it cannot bring
// them back while it is gone.
type interest struct {
	self string
	trie *topic.Trie[string]

	// mu guards everything below. Lock order: taken inside memberlist's
	// node lock (event callbacks) and outside the trie's locks; never held
	// while calling into memberlist.
	mu         sync.Mutex
	local      map[string]int // normalised filter -> subscriptions holding it
	version    uint64         // Lamport clock of local
	remote     map[string]*remoteInterest
	alive      map[string]bool // members that are routed
	tombstones map[string]tombstone
}

type remoteInterest struct {
	version uint64
	filters []string
	stored  time.Time
}

type tombstone struct {
	version uint64
	at      time.Time
}

// maxUnroutedRecords caps the records held for nodes not (yet) known to be
// alive, so gossip naming made-up nodes cannot grow the table.
const maxUnroutedRecords = 64

func newInterest(self string, cacheSize int, now time.Time) *interest {
	return &interest{
		self:       self,
		trie:       topic.NewTrie[string](cacheSize),
		local:      make(map[string]int),
		version:    max(uint64(now.UnixNano()), 1),
		remote:     make(map[string]*remoteInterest),
		alive:      make(map[string]bool),
		tombstones: make(map[string]tombstone),
	}
}

// add counts one more subscription to filter and reports whether the
// advertised set changed.
func (in *interest) add(filter string) (bool, error) {
	if err := topic.ValidateFilter(filter); err != nil {
		return false, err
	}
	f := normalizeFilter(filter)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.local[f]++
	if in.local[f] > 1 {
		return false, nil
	}
	in.version++
	return true, nil
}

// remove counts one subscription to filter less. It reports whether the
// advertised set changed and whether filter was held at all.
func (in *interest) remove(filter string) (changed, held bool) {
	f := normalizeFilter(filter)
	in.mu.Lock()
	defer in.mu.Unlock()
	n, ok := in.local[f]
	if !ok {
		return false, false
	}
	if n > 1 {
		in.local[f] = n - 1
		return false, true
	}
	delete(in.local, f)
	in.version++
	return true, true
}

// set replaces the local interest with filters, one subscription each
// (repeats count), and reports whether the advertised set changed.
func (in *interest) set(filters []string) (bool, error) {
	next := make(map[string]int, len(filters))
	for _, filter := range filters {
		if err := topic.ValidateFilter(filter); err != nil {
			return false, err
		}
		next[normalizeFilter(filter)]++
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	changed := len(next) != len(in.local)
	for f := range next {
		if _, ok := in.local[f]; !ok {
			changed = true
			break
		}
	}
	in.local = next
	if changed {
		in.version++
	}
	return changed, nil
}

// localRecord returns the local set, sorted, and its version.
func (in *interest) localRecord() (uint64, []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	filters := make([]string, 0, len(in.local))
	for f := range in.local {
		filters = append(filters, f)
	}
	slices.Sort(filters)
	return in.version, filters
}

// localFilters returns the distinct local filters, sorted.
func (in *interest) localFilters() []string {
	_, filters := in.localRecord()
	return filters
}

// apply merges a full record. accepted means it replaced what was held
// (worth relaying); witnessed means it was about this node and advanced the
// clock (the node must re-announce).
func (in *interest) apply(rec interestRecord, now time.Time) (accepted, witnessed bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if rec.node == in.self {
		return false, in.witnessLocked(rec.version)
	}
	if t, ok := in.tombstones[rec.node]; ok && rec.version <= t.version {
		return false, false
	}
	old := in.remote[rec.node]
	if old != nil && rec.version <= old.version {
		return false, false
	}
	routed := in.alive[rec.node]
	if old == nil && !routed && in.unroutedLocked() >= maxUnroutedRecords {
		return false, false
	}
	if routed {
		var oldFilters []string
		if old != nil {
			oldFilters = old.filters
		}
		in.reindexLocked(rec.node, oldFilters, rec.filters)
	}
	in.remote[rec.node] = &remoteInterest{version: rec.version, filters: rec.filters, stored: now}
	return true, false
}

// newer reports whether a digest announces a version of node that this node
// lacks and can fetch (node routed), and whether it witnessed its own.
func (in *interest) newer(node string, version uint64) (fetch, witnessed bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if node == in.self {
		return false, in.witnessLocked(version)
	}
	if !in.alive[node] {
		return false, false
	}
	if old := in.remote[node]; old != nil && version <= old.version {
		return false, false
	}
	return true, false
}

// witnessLocked advances the clock past a version seen for this node.
func (in *interest) witnessLocked(v uint64) bool {
	if v < in.version {
		return false
	}
	in.version = v + 1
	return true
}

func (in *interest) unroutedLocked() int {
	n := 0
	for node := range in.remote {
		if !in.alive[node] {
			n++
		}
	}
	return n
}

// reindexLocked moves node's filters in the trie from before to after.
func (in *interest) reindexLocked(node string, before, after []string) {
	keep := make(map[string]struct{}, len(after))
	for _, f := range after {
		keep[f] = struct{}{}
	}
	for _, f := range before {
		if _, ok := keep[f]; ok {
			delete(keep, f) // already indexed
			continue
		}
		in.trie.Unsubscribe(f, node)
	}
	for _, f := range after {
		if _, ok := keep[f]; !ok {
			continue
		}
		// Filters were validated when decoded, so Subscribe cannot fail.
		_, _ = in.trie.Subscribe(f, node, 0, 0)
	}
}

// memberUp routes node's interest: it is an alive member now.
func (in *interest) memberUp(node string) {
	if node == in.self {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.alive[node] {
		return
	}
	in.alive[node] = true
	delete(in.tombstones, node) // the live node is the authority again
	if rec := in.remote[node]; rec != nil {
		in.reindexLocked(node, nil, rec.filters)
	}
}

// memberDown drops node's interest when it fails or leaves.
func (in *interest) memberDown(node string, now time.Time) {
	if node == in.self {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	wasAlive := in.alive[node]
	delete(in.alive, node)
	rec := in.remote[node]
	if rec == nil {
		return
	}
	if wasAlive {
		in.reindexLocked(node, rec.filters, nil)
	}
	delete(in.remote, node)
	in.tombstones[node] = tombstone{version: rec.version, at: now}
}

// sweep forgets tombstones and unrouted records older than ttl.
func (in *interest) sweep(now time.Time, ttl time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for node, t := range in.tombstones {
		if now.Sub(t.at) > ttl {
			delete(in.tombstones, node)
		}
	}
	for node, rec := range in.remote {
		if !in.alive[node] && now.Sub(rec.stored) > ttl {
			delete(in.remote, node)
		}
	}
}

// appendState appends the push/pull state: this node's record, then the
// records of routed members, as many as fit in limit bytes. Relaying other
// nodes' records is what makes push/pull anti-entropy: one exchange repairs
// whatever gossip a node missed about anyone.
func (in *interest) appendState(dst []byte, limit int) []byte {
	version, filters := in.localRecord()
	in.mu.Lock()
	defer in.mu.Unlock()
	type entry struct {
		node string
		rec  *remoteInterest
	}
	size := 1 + 10 + recordLen(in.self, version, filters) // type, count (<= 10 bytes)
	if size > limit {
		// Our own set alone is too big to send: say nothing rather than
		// something the receivers would reject.
		return append(dst, gossipState, 0)
	}
	entries := []entry{}
	for node, rec := range in.remote {
		if !in.alive[node] {
			continue
		}
		n := recordLen(node, rec.version, rec.filters)
		if size+n > limit {
			continue
		}
		size += n
		entries = append(entries, entry{node, rec})
	}
	dst = append(dst, gossipState)
	dst = binary.AppendUvarint(dst, uint64(1+len(entries)))
	dst = appendRecord(dst, in.self, version, filters)
	for _, e := range entries {
		dst = appendRecord(dst, e.node, e.rec.version, e.rec.filters)
	}
	return dst
}

// appendMatches appends the names of the alive members whose interest
// matches the concrete topic. On a cache hit of the trie it allocates
// nothing beyond growing dst.
func (in *interest) appendMatches(dst []string, topicName []byte) []string {
	res := in.trie.Match(topicName)
	for i := range res.Subs {
		dst = append(dst, res.Subs[i].Sub)
	}
	return dst
}
