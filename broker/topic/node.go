package topic

import (
	"strings"
	"sync/atomic"
)

// indexThreshold is the number of subscribers at one node (or members of one
// group) above which a map index replaces the linear scan, so that 100k
// clients subscribing to one hot filter cost O(1) each instead of O(n).
const indexThreshold = 16

// node is one level of the trie. The two wildcards are dedicated child
// pointers, so matching never hashes a '+' or '#'; literal levels live in a
// map that exists only when there are literal children.
type node[S comparable] struct {
	parent   *node[S]
	level    string // this node's level in its parent: a literal, "+" or "#"
	literals map[string]*node[S]
	plus     *node[S]
	hash     *node[S]
	subs     entrySet[S]      // non-shared subscriptions whose filter ends here
	groups   []*groupState[S] // shared groups whose inner filter ends here; few per node
}

// child returns the child for one filter level, creating it when create is
// set. Levels are cloned before they are kept: the caller's filter may be a
// slice of a packet buffer, and a node must not pin a 64 KiB filter.
func (n *node[S]) child(level string, create bool) *node[S] {
	switch level {
	case "+":
		if n.plus == nil && create {
			n.plus = &node[S]{parent: n, level: "+"}
		}
		return n.plus
	case "#":
		if n.hash == nil && create {
			n.hash = &node[S]{parent: n, level: "#"}
		}
		return n.hash
	}
	c := n.literals[level]
	if c == nil && create {
		if n.literals == nil {
			n.literals = make(map[string]*node[S])
		}
		level = strings.Clone(level)
		c = &node[S]{parent: n, level: level}
		n.literals[level] = c
	}
	return c
}

// descend walks filter (without share prefix) from n, creating missing nodes
// when create is set; without create it returns nil for a missing path.
func (n *node[S]) descend(filter string, create bool) *node[S] {
	for {
		level, rest, more := cutLevel(filter)
		if n = n.child(level, create); n == nil || !more {
			return n
		}
		filter = rest
	}
}

// empty reports whether n holds nothing and can be pruned.
func (n *node[S]) empty() bool {
	return n.subs.len() == 0 && len(n.groups) == 0 &&
		len(n.literals) == 0 && n.plus == nil && n.hash == nil
}

// prune removes n and its ancestors while they are empty, so the trie's
// memory follows the live subscriptions, not the history of churn.
func (n *node[S]) prune() {
	for n.parent != nil && n.empty() {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.literals, n.level)
			if len(p.literals) == 0 {
				p.literals = nil // a map never shrinks; drop it with its last key
			}
		}
		n.parent = nil
		n = p
	}
}

// group returns the index of the shared group called name at n, or -1.
func (n *node[S]) group(name string) int {
	for i, g := range n.groups {
		if g.name == name {
			return i
		}
	}
	return -1
}

// removeGroup drops n.groups[i] without keeping a reference in the array.
func (n *node[S]) removeGroup(i int) {
	last := len(n.groups) - 1
	n.groups[i] = n.groups[last]
	n.groups[last] = nil
	n.groups = n.groups[:last]
	if len(n.groups) == 0 {
		n.groups = nil
	}
}

// entrySet holds at most one Entry per subscriber. Its slice is what the
// matcher copies; the index exists only for large sets.
type entrySet[S comparable] struct {
	entries []Entry[S]
	index   map[S]int // position in entries, non-nil iff len(entries) > indexThreshold
}

func (s *entrySet[S]) len() int { return len(s.entries) }

func (s *entrySet[S]) find(sub S) int {
	if s.index != nil {
		if i, ok := s.index[sub]; ok {
			return i
		}
		return -1
	}
	for i := range s.entries {
		if s.entries[i].Sub == sub {
			return i
		}
	}
	return -1
}

// upsert adds e or replaces the entry of the same subscriber. changed is
// false when an identical entry was already there, so the caller can skip
// invalidating cached results.
func (s *entrySet[S]) upsert(e Entry[S]) (existed, changed bool) {
	if i := s.find(e.Sub); i >= 0 {
		if s.entries[i] == e {
			return true, false
		}
		s.entries[i] = e
		return true, true
	}
	s.entries = append(s.entries, e)
	switch {
	case s.index != nil:
		s.index[e.Sub] = len(s.entries) - 1
	case len(s.entries) > indexThreshold:
		s.index = make(map[S]int, len(s.entries))
		for i, x := range s.entries {
			s.index[x.Sub] = i
		}
	}
	return false, true
}

// remove deletes sub's entry, reporting whether there was one. Order is not
// kept (the last entry moves into the hole) and storage shrinks with the set.
func (s *entrySet[S]) remove(sub S) bool {
	i := s.find(sub)
	if i < 0 {
		return false
	}
	last := len(s.entries) - 1
	if i != last {
		s.entries[i] = s.entries[last]
		if s.index != nil {
			s.index[s.entries[i].Sub] = i
		}
	}
	s.entries[last] = Entry[S]{} // do not keep the subscriber reachable
	s.entries = s.entries[:last]
	if s.index != nil {
		delete(s.index, sub)
		if len(s.entries) <= indexThreshold/2 {
			s.index = nil
		}
	}
	switch {
	case len(s.entries) == 0:
		s.entries = nil
	case cap(s.entries) > 4*indexThreshold && len(s.entries) < cap(s.entries)/4:
		s.entries = append([]Entry[S](nil), s.entries...)
	}
	return true
}

// groupState is the stable object behind a shared group (one per group name
// and inner filter). Its round-robin cursor lives here, not in the Group
// values handed out, so distribution stays even across cache rebuilds and
// membership changes.
type groupState[S comparable] struct {
	name    string
	filter  string // inner filter, without "$share/GROUP/"
	members entrySet[S]
	next    atomic.Uint64
	// view is the immutable Group for the current members. Writers (trie
	// lock held) reset it to nil; readers (read lock held) build it lazily,
	// so a burst of joins costs one copy, not one per join.
	view atomic.Pointer[Group[S]]
}

// snapshot returns the Group for the current members. Trie read lock held.
func (g *groupState[S]) snapshot() *Group[S] {
	if v := g.view.Load(); v != nil {
		return v
	}
	members := make([]Entry[S], g.members.len())
	copy(members, g.members.entries)
	v := &Group[S]{Name: g.name, Filter: g.filter, Members: members, next: &g.next}
	if g.view.CompareAndSwap(nil, v) {
		return v
	}
	// Another reader built the same members first; share its value.
	return g.view.Load()
}
