package topic

import (
	"strings"
	"unsafe"
)

const (
	// cacheBytesPerTopic sizes the cache's memory budget: a cache of N topics
	// may hold N*cacheBytesPerTopic bytes of keys and results (16 MiB for the
	// default 4096). Without it, caching topics that fan out to 100k
	// subscribers, or 64 KiB topic names, would multiply memory by N.
	cacheBytesPerTopic = 4096
	// cacheEntryOverhead approximates the map slot, string header and Result
	// header of one cached topic, in bytes.
	cacheEntryOverhead = 96
)

// matchCache maps concrete topics to their Result. Trie lock held for every
// method: write lock to change it, read lock to look up.
type matchCache[S comparable] struct {
	results   map[string]*Result[S] // nil when the cache is disabled
	maxTopics int
	bytes     int // estimated memory held by keys and results
	maxBytes  int
}

func newMatchCache[S comparable](maxTopics int) matchCache[S] {
	return matchCache[S]{
		results:   make(map[string]*Result[S]), // grows with use: a quiet trie stays small
		maxTopics: maxTopics,
		maxBytes:  maxTopics * cacheBytesPerTopic,
	}
}

// cost estimates the bytes one cached topic keeps alive. Group members are
// not counted: group views are shared by every result of the group.
func (c *matchCache[S]) cost(topic string, r *Result[S]) int {
	var e Entry[S]
	var g *Group[S]
	return cacheEntryOverhead + len(topic) +
		len(r.Subs)*int(unsafe.Sizeof(e)) + len(r.Groups)*int(unsafe.Sizeof(g))
}

// add caches r for topic, evicting entries at random until both bounds
// hold. Random eviction needs no bookkeeping on the hit path, unlike LRU.
func (c *matchCache[S]) add(topic string, r *Result[S]) {
	if _, ok := c.results[topic]; ok {
		return // a concurrent Match of the same topic got here first
	}
	cost := c.cost(topic, r)
	if cost > c.maxBytes {
		return // larger than the whole budget: recompute it on every publish
	}
	for len(c.results) > 0 && (len(c.results) >= c.maxTopics || c.bytes+cost > c.maxBytes) {
		for k := range c.results { // map iteration starts at a random slot
			c.remove(k)
			break
		}
	}
	c.results[topic] = r
	c.bytes += cost
}

func (c *matchCache[S]) remove(topic string) {
	if r, ok := c.results[topic]; ok {
		c.bytes -= c.cost(topic, r)
		delete(c.results, topic)
	}
}

// invalidate drops the cached results of every topic filter (without share
// prefix) matches, after a subscription to filter changed. A literal filter
// matches one topic only, so it costs a single lookup; a wildcard filter
// scans the cache, which is bounded.
func (c *matchCache[S]) invalidate(filter string) {
	if len(c.results) == 0 {
		return
	}
	if !strings.ContainsAny(filter, "+#") {
		c.remove(filter)
		return
	}
	for topic := range c.results {
		if matchFilter(filter, topic) {
			c.remove(topic)
		}
	}
}
