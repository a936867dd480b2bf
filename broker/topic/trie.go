package topic

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultCacheSize is the number of concrete topics whose match results a
// Trie caches when NewTrie is given 0.
const DefaultCacheSize = 4096

// Entry is one recipient of a message.
type Entry[S comparable] struct {
	Sub S
	QoS byte // granted QoS
	// Tag holds opaque per-subscription bits owned by the caller (e.g. the
	// wire dialect); merged with OR when one subscriber has overlapping filters.
	Tag uint8
}

// Group is a shared subscription group matching a topic; exactly one member
// receives each message. A Group reached through a Result is immutable
// except for its round-robin cursor.
type Group[S comparable] struct {
	Name    string     // share group name
	Filter  string     // inner filter, without "$share/GROUP/"
	Members []Entry[S] // never empty in a Result
	next    *atomic.Uint64
}

// Pick returns the member that gets the next message. It walks the members
// round robin with an atomic cursor shared by every Group value of the same
// group, so it is safe for concurrent use and stays even when the cache is
// rebuilt. A Group with no members gives the zero Entry.
func (g *Group[S]) Pick() Entry[S] {
	switch {
	case len(g.Members) == 0:
		return Entry[S]{}
	case len(g.Members) == 1 || g.next == nil:
		return g.Members[0]
	}
	i := g.next.Add(1) - 1
	return g.Members[i%uint64(len(g.Members))]
}

// Result is the immutable set of recipients of one concrete topic. It is
// shared through the cache: callers must not modify it.
type Result[S comparable] struct {
	// Subs holds the non-shared subscribers, one entry per subscriber even
	// when several of its filters match, at the maximum granted QoS
	// [MQTT-3.3.5-1] and with the Tags ORed.
	Subs []Entry[S]
	// Groups holds the shared groups that match; deliver to one Pick each.
	Groups []*Group[S]
}

// Empty reports whether nobody receives the topic.
func (r *Result[S]) Empty() bool { return len(r.Subs) == 0 && len(r.Groups) == 0 }

// Trie is the subscription index: a tree of topic levels with a bounded
// cache of match results per concrete topic. All methods are safe for
// concurrent use; Match takes only a read lock on a cache hit. A Trie must be
// created with NewTrie.
//
// Lock: mu guards every field below it. Group views are built under the read
// lock through atomics (see groupState.snapshot).
type Trie[S comparable] struct {
	mu    sync.RWMutex
	root  node[S]
	count int    // subscriptions, shared ones included
	gen   uint64 // bumped by every change, so a Match that walked an older trie does not cache its result
	cache matchCache[S]

	cacheEnabled bool       // immutable after NewTrie, read without the lock
	empty        *Result[S] // the shared result of a topic nobody receives

	interest InterestFunc // see OnInterest; guarded by mu
}

// InterestFunc is told when a filter gains its first subscription (present)
// and when it loses its last one. A shared subscription counts toward its
// inner filter. It is what a node tells its cluster peers it wants (DESIGN
// §7): the set of filters, not who holds them.
type InterestFunc func(filter string, present bool)

// OnInterest installs fn. It is called with the trie's lock held, in the
// order the changes happen, so it must be quick and must not call back into
// the trie. Filters already subscribed are reported at once, as present.
func (t *Trie[S]) OnInterest(fn InterestFunc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.interest = fn
	if fn == nil {
		return
	}
	t.root.walkHolders("", func(filter string) { fn(filter, true) })
}

// holds reports whether any subscription ends at n.
func (n *node[S]) holds() bool { return n.subs.len() > 0 || len(n.groups) > 0 }

// walkHolders calls fn with the filter of every node holding a subscription.
func (n *node[S]) walkHolders(prefix string, fn func(string)) {
	if n.holds() {
		fn(prefix)
	}
	visit := func(level string, c *node[S]) {
		if c == nil {
			return
		}
		p := level
		if n.parent != nil || prefix != "" {
			p = prefix + "/" + level
		}
		c.walkHolders(p, fn)
	}
	for level, c := range n.literals {
		visit(level, c)
	}
	visit("+", n.plus)
	visit("#", n.hash)
}

// NewTrie creates a trie whose match cache holds at most cacheSize concrete
// topics (0 means DefaultCacheSize, negative disables the cache). The cache
// also keeps its keys and results under cacheSize*cacheBytesPerTopic bytes,
// so wide fan-outs or 64 KiB topics cannot make it grow without bound.
func NewTrie[S comparable](cacheSize int) *Trie[S] {
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	t := &Trie[S]{empty: &Result[S]{}}
	if cacheSize > 0 {
		t.cacheEnabled = true
		t.cache = newMatchCache[S](cacheSize)
	}
	return t
}

// Subscribe adds a subscription, or replaces the QoS and Tag of the same
// filter for the same sub, reporting existed=true then. filter may be
// "$share/GROUP/FILTER". An invalid filter or a QoS above 2 gives an error
// and changes nothing. When Subscribe returns, every later Match sees it.
func (t *Trie[S]) Subscribe(filter string, sub S, qos byte, tag uint8) (existed bool, err error) {
	if err := ValidateFilter(filter); err != nil {
		return false, err
	}
	if qos > 2 {
		return false, fmt.Errorf("%w: %d", ErrInvalidQoS, qos) // [MQTT-3.8.3-4]
	}
	group, inner, shared := SplitShared(filter)
	entry := Entry[S]{Sub: sub, QoS: qos, Tag: tag}

	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.root.descend(inner, true)
	had := n.holds()
	defer func() {
		if !had && t.interest != nil && n.holds() {
			t.interest(strings.Clone(inner), true)
		}
	}()
	var changed bool
	if shared {
		i := n.group(group)
		if i < 0 {
			i = len(n.groups)
			n.groups = append(n.groups, &groupState[S]{name: strings.Clone(group), filter: strings.Clone(inner)})
		}
		g := n.groups[i]
		if existed, changed = g.members.upsert(entry); changed {
			g.view.Store(nil)
		}
	} else {
		existed, changed = n.subs.upsert(entry)
	}
	if !existed {
		t.count++
	}
	if changed {
		t.gen++
		t.cache.invalidate(inner)
	}
	return existed, nil
}

// Unsubscribe removes the subscription of sub to filter (exactly as it was
// subscribed, "$share/GROUP/FILTER" included) and reports whether it
// existed. Nodes left empty are pruned. When it returns, every later Match
// reflects it.
func (t *Trie[S]) Unsubscribe(filter string, sub S) bool {
	if ValidateFilter(filter) != nil {
		return false // never subscribed
	}
	group, inner, shared := SplitShared(filter)

	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.root.descend(inner, false)
	if n == nil {
		return false
	}
	if shared {
		i := n.group(group)
		if i < 0 {
			return false
		}
		g := n.groups[i]
		if !g.members.remove(sub) {
			return false
		}
		if g.members.len() == 0 {
			n.removeGroup(i) // a Result never holds a group without members
		} else {
			g.view.Store(nil)
		}
	} else if !n.subs.remove(sub) {
		return false
	}
	if t.interest != nil && !n.holds() {
		t.interest(strings.Clone(inner), false)
	}
	t.count--
	t.gen++
	t.cache.invalidate(inner)
	n.prune()
	return true
}

// Match returns the recipients of the concrete topic; the result is never
// nil and must not be modified. A cache hit takes a read lock and does not
// allocate. topic is not validated (see ValidateTopic); whatever it holds,
// Match agrees with Matches and does not panic.
func (t *Trie[S]) Match(topic []byte) *Result[S] {
	t.mu.RLock()
	if r, ok := t.cache.results[string(topic)]; ok {
		t.mu.RUnlock()
		return r
	}
	gen := t.gen
	r := t.walk(topic)
	t.mu.RUnlock()

	if t.cacheEnabled {
		t.mu.Lock()
		// A change between the walk and here may have made r stale for the
		// Matches that follow it; r is still a correct answer for this one.
		if t.gen == gen {
			t.cache.add(string(topic), r)
		}
		t.mu.Unlock()
	}
	return r
}

// Len returns the number of subscriptions, shared ones included.
func (t *Trie[S]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// Filters returns the distinct filters currently subscribed, sorted; shared
// ones as "$share/GROUP/FILTER". The cluster gossips this as the node's
// interest.
func (t *Trie[S]) Filters() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	var path []string
	var visit func(n *node[S])
	visit = func(n *node[S]) {
		path = append(path, n.level)
		if n.subs.len() > 0 || len(n.groups) > 0 {
			filter := strings.Join(path, "/")
			if n.subs.len() > 0 {
				out = append(out, filter)
			}
			for _, g := range n.groups {
				out = append(out, sharePrefix+g.name+"/"+filter)
			}
		}
		for _, c := range n.literals {
			visit(c)
		}
		if n.plus != nil {
			visit(n.plus)
		}
		if n.hash != nil {
			visit(n.hash)
		}
		path = path[:len(path)-1]
	}
	// Recursion depth is bounded by MaxLevels: only valid filters get in.
	for _, c := range t.root.literals {
		visit(c)
	}
	if t.root.plus != nil {
		visit(t.root.plus)
	}
	if t.root.hash != nil {
		visit(t.root.hash)
	}
	slices.Sort(out)
	return out
}

// walk computes the result of topic from the trie. Read lock held.
func (t *Trie[S]) walk(topic []byte) *Result[S] {
	var c collector[S]
	level, rest, more := cutBytes(topic)
	// [MQTT-4.7.2-1] a leading wildcard does not match a '$' topic; deeper
	// wildcards do ("$SYS/#" matches "$SYS/x").
	dollar := len(topic) > 0 && topic[0] == '$'
	if !dollar && t.root.hash != nil {
		c.collect(t.root.hash)
	}
	if child := t.root.literals[string(level)]; child != nil {
		c.visit(child, rest, more)
	}
	if !dollar && t.root.plus != nil {
		c.visit(t.root.plus, rest, more)
	}
	return c.result(t.empty)
}

// collector gathers the matches of one walk.
type collector[S comparable] struct {
	subs    []Entry[S]
	groups  []*Group[S]
	sources int // nodes that contributed subscribers: above 1 a subscriber may be listed twice
}

// visit handles node n reached by matching a level; rest holds the levels
// after it when more is set. Recursion depth is bounded by the trie's depth.
func (c *collector[S]) visit(n *node[S], rest []byte, more bool) {
	if !more {
		c.collect(n)
		if n.hash != nil {
			c.collect(n.hash) // "a/#" matches "a" [MQTT-4.7.1-2]
		}
		return
	}
	if n.hash != nil {
		c.collect(n.hash)
	}
	level, rest, more := cutBytes(rest)
	if child := n.literals[string(level)]; child != nil {
		c.visit(child, rest, more)
	}
	if n.plus != nil {
		c.visit(n.plus, rest, more)
	}
}

func (c *collector[S]) collect(n *node[S]) {
	if n.subs.len() > 0 {
		c.subs = append(c.subs, n.subs.entries...)
		c.sources++
	}
	for _, g := range n.groups {
		c.groups = append(c.groups, g.snapshot())
	}
}

// result turns the collected matches into a Result, with one entry per
// subscriber at its highest QoS [MQTT-3.3.5-1]. Capacities are clipped so an
// append by a careless caller cannot write into a shared array.
func (c *collector[S]) result(empty *Result[S]) *Result[S] {
	if len(c.subs) == 0 && len(c.groups) == 0 {
		if empty == nil {
			return &Result[S]{} // a zero Trie, not made by NewTrie
		}
		return empty
	}
	subs := c.subs
	if c.sources > 1 {
		subs = mergeDuplicates(subs)
	}
	return &Result[S]{Subs: slices.Clip(subs), Groups: slices.Clip(c.groups)}
}

// mergeLinearMax is the result size up to which duplicates are found by a
// quadratic scan, cheaper than a map at that size.
const mergeLinearMax = 32

// mergeDuplicates folds entries of the same subscriber into the first one,
// keeping the highest QoS and ORing the Tags. It reuses entries' array.
func mergeDuplicates[S comparable](entries []Entry[S]) []Entry[S] {
	out := entries[:0]
	if len(entries) <= mergeLinearMax {
	next:
		for _, e := range entries {
			for i := range out {
				if out[i].Sub == e.Sub {
					out[i] = merged(out[i], e)
					continue next
				}
			}
			out = append(out, e)
		}
	} else {
		index := make(map[S]int, len(entries))
		for _, e := range entries {
			if i, ok := index[e.Sub]; ok {
				out[i] = merged(out[i], e)
				continue
			}
			index[e.Sub] = len(out)
			out = append(out, e)
		}
	}
	clear(entries[len(out):]) // drop references past the end
	return out
}

func merged[S comparable](a, b Entry[S]) Entry[S] {
	a.QoS = max(a.QoS, b.QoS)
	a.Tag |= b.Tag
	return a
}

// cutBytes is cutLevel for the walk, using the vectorised IndexByte.
func cutBytes(s []byte) (level, rest []byte, more bool) {
	if i := bytes.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}
