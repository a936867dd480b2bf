package topic

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The reference implementations below are deliberately naive (split on '/',
// compare slices) and independent of the production code, so the tests and
// fuzz targets hold two different implementations to the same rules.

// refSplitShared strips "$share/GROUP/" from filter.
func refSplitShared(filter string) (group, inner string, shared bool) {
	if !strings.HasPrefix(filter, "$share/") {
		return "", filter, false
	}
	parts := strings.SplitN(filter, "/", 3)
	if len(parts) < 3 {
		return "", filter, false
	}
	return parts[1], parts[2], true
}

// refMatch is the MQTT matching rule written the obvious way.
func refMatch(filter, topic string) bool {
	_, filter, _ = refSplitShared(filter)
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

func refValidFilter(filter string) bool {
	if filter == "" || len(filter) > MaxLength || strings.ContainsRune(filter, 0) {
		return false
	}
	if strings.HasPrefix(filter, "$share/") {
		parts := strings.SplitN(filter, "/", 3)
		if len(parts) < 3 || parts[1] == "" || strings.ContainsAny(parts[1], "+#") || parts[2] == "" {
			return false
		}
		filter = parts[2]
	}
	levels := strings.Split(filter, "/")
	if len(levels) > MaxLevels {
		return false
	}
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
	}
	return true
}

func refValidTopic(topic string) bool {
	return topic != "" && len(topic) <= MaxLength && !strings.ContainsAny(topic, "+#\x00") &&
		strings.Count(topic, "/") < MaxLevels
}

// model is the expected state of a Trie[int]: the subscriptions as a map.
type model struct {
	subs map[modelKey]Entry[int]
}

type modelKey struct {
	filter string
	sub    int
}

func newModel() *model { return &model{subs: make(map[modelKey]Entry[int])} }

func (m *model) subscribe(filter string, sub int, qos byte, tag uint8) {
	m.subs[modelKey{filter, sub}] = Entry[int]{Sub: sub, QoS: qos, Tag: tag}
}

func (m *model) unsubscribe(filter string, sub int) {
	delete(m.subs, modelKey{filter, sub})
}

// shape is a Result reduced to comparable maps: subscriber -> entry, and
// "group\x00inner" -> members.
type shape struct {
	Subs   map[int]Entry[int]
	Groups map[string]map[int]Entry[int]
}

func (m *model) expect(topic string) shape {
	want := shape{Subs: map[int]Entry[int]{}, Groups: map[string]map[int]Entry[int]{}}
	for k, e := range m.subs {
		if !refMatch(k.filter, topic) {
			continue
		}
		if group, inner, shared := refSplitShared(k.filter); shared {
			key := group + "\x00" + inner
			if want.Groups[key] == nil {
				want.Groups[key] = map[int]Entry[int]{}
			}
			want.Groups[key][e.Sub] = e
			continue
		}
		if old, ok := want.Subs[e.Sub]; ok {
			e.QoS = max(e.QoS, old.QoS)
			e.Tag |= old.Tag
		}
		want.Subs[e.Sub] = e
	}
	return want
}

// shapeOf converts r, failing on anything a Result must never hold:
// duplicate subscribers, duplicate groups, empty groups.
func shapeOf(t testing.TB, r *Result[int]) shape {
	t.Helper()
	require.NotNil(t, r)
	got := shape{Subs: map[int]Entry[int]{}, Groups: map[string]map[int]Entry[int]{}}
	for _, e := range r.Subs {
		_, dup := got.Subs[e.Sub]
		require.False(t, dup, "subscriber %d listed twice", e.Sub)
		got.Subs[e.Sub] = e
	}
	for _, g := range r.Groups {
		key := g.Name + "\x00" + g.Filter
		_, dup := got.Groups[key]
		require.False(t, dup, "group %q listed twice", key)
		require.NotEmpty(t, g.Members, "group %q without members", key)
		members := map[int]Entry[int]{}
		for _, e := range g.Members {
			_, dup := members[e.Sub]
			require.False(t, dup, "member %d listed twice in %q", e.Sub, key)
			members[e.Sub] = e
		}
		got.Groups[key] = members
	}
	return got
}

func requireMatch(t testing.TB, tr *Trie[int], m *model, topic string) {
	t.Helper()
	want := m.expect(topic)
	got := shapeOf(t, tr.Match([]byte(topic)))
	if !maps.Equal(want.Subs, got.Subs) || !maps.EqualFunc(want.Groups, got.Groups, maps.Equal) {
		t.Fatalf("Match(%q):\n got  %s\n want %s", topic, fmtShape(got), fmtShape(want))
	}
}

func fmtShape(s shape) string {
	return fmt.Sprintf("subs=%v groups=%v", s.Subs, s.Groups)
}

// nodeCount counts the trie's nodes below the root. Caller holds no lock.
func nodeCount[S comparable](tr *Trie[S]) int {
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	var count func(n *node[S]) int
	count = func(n *node[S]) int {
		c := 0
		for _, ch := range n.literals {
			c += 1 + count(ch)
		}
		if n.plus != nil {
			c += 1 + count(n.plus)
		}
		if n.hash != nil {
			c += 1 + count(n.hash)
		}
		return c
	}
	return count(&tr.root)
}

// cached reports whether topic has a cached result.
func cached[S comparable](tr *Trie[S], topic string) bool {
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	_, ok := tr.cache.results[topic]
	return ok
}

// requireCacheAccounting checks the cache's bounds and its byte bookkeeping.
func requireCacheAccounting[S comparable](t testing.TB, tr *Trie[S]) {
	t.Helper()
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	c := &tr.cache
	sum := 0
	for k, r := range c.results {
		sum += c.cost(k, r)
	}
	require.Equal(t, sum, c.bytes, "cache byte accounting")
	require.LessOrEqual(t, len(c.results), c.maxTopics)
	require.LessOrEqual(t, c.bytes, c.maxBytes)
}
