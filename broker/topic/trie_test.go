package topic

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func subscribeAll(t testing.TB, tr *Trie[int], m *model, subs []modelSub) {
	t.Helper()
	for _, s := range subs {
		_, err := tr.Subscribe(s.filter, s.sub, s.qos, s.tag)
		require.NoError(t, err, s.filter)
		if m != nil {
			m.subscribe(s.filter, s.sub, s.qos, s.tag)
		}
	}
}

type modelSub struct {
	filter string
	sub    int
	qos    byte
	tag    uint8
}

func TestMatchOverlappingFilters(t *testing.T) {
	// B9 and [MQTT-3.3.5-1]: one copy per subscriber, at the highest QoS of
	// its matching subscriptions, with the Tags of all of them.
	tests := []struct {
		name  string
		subs  []modelSub
		topic string
		want  map[int]Entry[int]
	}{
		{
			name:  "a/# and a/b at QoS 0 and 2",
			subs:  []modelSub{{"a/#", 1, 0, 1}, {"a/b", 1, 2, 2}},
			topic: "a/b",
			want:  map[int]Entry[int]{1: {Sub: 1, QoS: 2, Tag: 3}},
		},
		{
			name: "four filters, two subscribers",
			subs: []modelSub{
				{"a/#", 1, 0, 1}, {"a/b", 1, 0, 2}, {"+/b", 1, 1, 4}, {"#", 1, 0, 8},
				{"a/b", 2, 1, 16},
			},
			topic: "a/b",
			want:  map[int]Entry[int]{1: {Sub: 1, QoS: 1, Tag: 15}, 2: {Sub: 2, QoS: 1, Tag: 16}},
		},
		{
			name:  "only the matching filters count",
			subs:  []modelSub{{"a/b", 1, 0, 1}, {"a/c", 1, 2, 2}, {"a/+", 1, 1, 4}},
			topic: "a/b",
			want:  map[int]Entry[int]{1: {Sub: 1, QoS: 1, Tag: 5}},
		},
		{
			name:  "a/# matches its parent and merges with it",
			subs:  []modelSub{{"a", 1, 2, 1}, {"a/#", 1, 0, 2}, {"+", 1, 1, 4}},
			topic: "a",
			want:  map[int]Entry[int]{1: {Sub: 1, QoS: 2, Tag: 7}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTrie[int](0)
			m := newModel()
			subscribeAll(t, tr, m, tt.subs)
			got := shapeOf(t, tr.Match([]byte(tt.topic)))
			require.Equal(t, tt.want, got.Subs)
			requireMatch(t, tr, m, tt.topic) // again, from the cache
		})
	}
}

func TestMatchMergesManySubscribers(t *testing.T) {
	// Above mergeLinearMax entries the merge switches to a map; both paths
	// must give one entry per subscriber.
	tr := NewTrie[int](0)
	m := newModel()
	const n = 3 * mergeLinearMax
	for i := range n {
		subscribeAll(t, tr, m, []modelSub{
			{"x/+", i, byte(i % 3), 1}, {"x/#", i, byte((i + 1) % 3), 2}, {"x/y", i, 0, 4},
		})
	}
	r := tr.Match([]byte("x/y"))
	require.Len(t, r.Subs, n)
	requireMatch(t, tr, m, "x/y")
	for _, e := range r.Subs {
		require.Equal(t, uint8(7), e.Tag)
		require.Equal(t, max(byte(e.Sub%3), byte((e.Sub+1)%3)), e.QoS)
	}
}

func TestSubscribeReplaces(t *testing.T) {
	tr := NewTrie[int](0)
	existed, err := tr.Subscribe("a/+", 1, 0, 1)
	require.NoError(t, err)
	require.False(t, existed)
	require.Equal(t, []Entry[int]{{Sub: 1, QoS: 0, Tag: 1}}, tr.Match([]byte("a/b")).Subs)

	existed, err = tr.Subscribe("a/+", 1, 2, 4)
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, []Entry[int]{{Sub: 1, QoS: 2, Tag: 4}}, tr.Match([]byte("a/b")).Subs, "replaced, not merged")

	existed, err = tr.Subscribe("a/+", 1, 2, 4)
	require.NoError(t, err)
	require.True(t, existed, "identical subscription")
	require.True(t, cached(tr, "a/b"), "an identical resubscribe must not invalidate")

	existed, err = tr.Subscribe("$share/g/a/+", 1, 1, 0)
	require.NoError(t, err)
	require.False(t, existed, "shared is a different subscription")
	existed, err = tr.Subscribe("$share/g/a/+", 1, 0, 0)
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, 2, tr.Len())
	r := tr.Match([]byte("a/b"))
	require.Len(t, r.Groups, 1)
	require.Equal(t, []Entry[int]{{Sub: 1, QoS: 0}}, r.Groups[0].Members)
}

func TestSubscribeRejects(t *testing.T) {
	tests := []struct {
		filter string
		qos    byte
		err    error
	}{
		{"a/#/b", 0, ErrInvalidFilter},
		{"", 0, ErrInvalidFilter},
		{"$share//a", 0, ErrInvalidFilter},
		{levels(1000), 0, ErrInvalidFilter},
		{"a/b", 3, ErrInvalidQoS},
		{"a/b", 0x80, ErrInvalidQoS},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s qos %d", tt.filter, tt.qos), func(t *testing.T) {
			tr := NewTrie[int](0)
			existed, err := tr.Subscribe(tt.filter, 1, tt.qos, 0)
			require.ErrorIs(t, err, tt.err)
			require.False(t, existed)
			require.Zero(t, tr.Len())
			require.Empty(t, tr.Filters())
			require.Zero(t, nodeCount(tr), "nothing changed")
			require.False(t, tr.Unsubscribe(tt.filter, 1))
		})
	}
}

func TestUnsubscribe(t *testing.T) {
	tr := NewTrie[int](0)
	m := newModel()
	subscribeAll(t, tr, m, []modelSub{
		{"a/b", 1, 1, 0}, {"a/b", 2, 0, 0}, {"a/#", 1, 0, 0}, {"$share/g/a/b", 3, 0, 0}, {"$share/g/a/b", 4, 0, 0},
	})
	require.Equal(t, 5, tr.Len())
	requireMatch(t, tr, m, "a/b")

	tests := []struct {
		filter string
		sub    int
		want   bool
	}{
		{"a/b", 1, true},
		{"a/b", 1, false}, // already gone
		{"a/c", 2, false}, // never subscribed
		{"a/+", 2, false}, // wildcard is not literal
		{"a/#/b", 2, false},
		{"$share/h/a/b", 3, false}, // other group
		{"a/b", 3, false},          // 3 is only a group member
		{"$share/g/a/b", 3, true},
		{"a/#", 1, true},
		{"$share/g/a/b", 4, true}, // last member: group goes away
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tr.Unsubscribe(tt.filter, tt.sub), "%s %d", tt.filter, tt.sub)
		if tt.want {
			m.unsubscribe(tt.filter, tt.sub)
		}
		requireMatch(t, tr, m, "a/b")
		requireMatch(t, tr, m, "a")
	}
	require.Equal(t, 1, tr.Len())
	require.Equal(t, []string{"a/b"}, tr.Filters())
}

func TestUnsubscribePrunes(t *testing.T) {
	tr := NewTrie[int](0)
	subscribeAll(t, tr, nil, []modelSub{{"a/b/c", 1, 0, 0}, {"a/x", 1, 0, 0}, {"a/+/#", 2, 0, 0}})
	require.Equal(t, 6, nodeCount(tr)) // a, a/b, a/b/c, a/x, a/+, a/+/#

	require.True(t, tr.Unsubscribe("a/b/c", 1))
	require.Equal(t, 4, nodeCount(tr), "a/b and a/b/c pruned, a kept")
	require.True(t, tr.Unsubscribe("a/+/#", 2))
	require.Equal(t, 2, nodeCount(tr))
	require.True(t, tr.Unsubscribe("a/x", 1))
	require.Zero(t, nodeCount(tr))
	require.Nil(t, tr.root.literals, "empty literal map dropped")

	// Churn must not leave nodes or grow the trie: subscribe and unsubscribe
	// thousands of random deep filters.
	rng := rand.New(rand.NewPCG(1, 2))
	var live []modelSub
	for i := range 5000 {
		if len(live) > 0 && rng.IntN(2) == 0 {
			j := rng.IntN(len(live))
			require.True(t, tr.Unsubscribe(live[j].filter, live[j].sub))
			live = append(live[:j], live[j+1:]...)
			continue
		}
		s := modelSub{filter: randomFilter(rng, 6), sub: i}
		_, err := tr.Subscribe(s.filter, s.sub, 0, 0)
		require.NoError(t, err)
		live = append(live, s)
	}
	for _, s := range live {
		require.True(t, tr.Unsubscribe(s.filter, s.sub))
	}
	require.Zero(t, tr.Len())
	require.Zero(t, nodeCount(tr))
	require.Empty(t, tr.Filters())
}

func TestFilters(t *testing.T) {
	tr := NewTrie[int](0)
	subscribeAll(t, tr, nil, []modelSub{
		{"a/b", 1, 0, 0}, {"a/b", 2, 0, 0}, {"a/#", 1, 0, 0}, {"+/b", 1, 0, 0}, {"#", 3, 0, 0},
		{"/", 1, 0, 0}, {"a//b", 1, 0, 0},
		{"$share/g/a/b", 1, 0, 0}, {"$share/g/a/b", 2, 0, 0}, {"$share/h/a/b", 1, 0, 0}, {"$share/g/#", 1, 0, 0},
	})
	require.Equal(t, []string{
		"#", "$share/g/#", "$share/g/a/b", "$share/h/a/b", "+/b", "/", "a/#", "a//b", "a/b",
	}, tr.Filters())
	require.Equal(t, 11, tr.Len())
}

func TestSharedGroupDelivery(t *testing.T) {
	tr := NewTrie[int](0)
	subscribeAll(t, tr, nil, []modelSub{
		{"$share/g/s/+", 1, 0, 0}, {"$share/g/s/+", 2, 0, 0}, {"$share/g/s/+", 3, 0, 0},
		{"$share/h/s/#", 4, 0, 0}, {"$share/h/s/#", 5, 0, 0},
		{"$share/g/s/x", 6, 0, 0}, // same name, other filter: a group of its own
		{"s/x", 7, 0, 0},
	})
	r := tr.Match([]byte("s/x"))
	require.Equal(t, []Entry[int]{{Sub: 7}}, r.Subs)
	require.Len(t, r.Groups, 3)

	// Each message goes to exactly one member of each group; over 600
	// messages every member of a group receives the same number.
	const messages = 600
	got := map[string]map[int]int{}
	for range messages {
		for _, g := range tr.Match([]byte("s/x")).Groups {
			key := g.Name + " " + g.Filter
			if got[key] == nil {
				got[key] = map[int]int{}
			}
			got[key][g.Pick().Sub]++
		}
	}
	require.Equal(t, map[string]map[int]int{
		"g s/+": {1: messages / 3, 2: messages / 3, 3: messages / 3},
		"h s/#": {4: messages / 2, 5: messages / 2},
		"g s/x": {6: messages},
	}, got)
}

func TestSharedGroupCursorSurvivesCacheRebuild(t *testing.T) {
	tr := NewTrie[int](0)
	subscribeAll(t, tr, nil, []modelSub{{"$share/g/s/+", 1, 0, 0}, {"$share/g/s/+", 2, 0, 0}})
	counts := map[int]int{}
	for i := range 100 {
		r := tr.Match([]byte("s/x"))
		counts[r.Groups[0].Pick().Sub]++
		// A wildcard subscription that matches s/x drops the cached result,
		// so the next Match builds a new Group value.
		_, err := tr.Subscribe("s/#", 100+i, 0, 0)
		require.NoError(t, err)
		require.False(t, cached(tr, "s/x"))
	}
	require.Equal(t, map[int]int{1: 50, 2: 50}, counts)

	// A member joining keeps the cursor too: the next three picks cover all.
	_, err := tr.Subscribe("$share/g/s/+", 3, 0, 0)
	require.NoError(t, err)
	seen := map[int]bool{}
	for range 3 {
		seen[tr.Match([]byte("s/x")).Groups[0].Pick().Sub] = true
	}
	require.Len(t, seen, 3)
}

func TestGroupPickEdgeCases(t *testing.T) {
	var zero Group[int]
	require.Equal(t, Entry[int]{}, zero.Pick(), "no members, no panic")
	single := Group[int]{Members: []Entry[int]{{Sub: 9, QoS: 1}}}
	require.Equal(t, Entry[int]{Sub: 9, QoS: 1}, single.Pick())
	two := Group[int]{Members: []Entry[int]{{Sub: 1}, {Sub: 2}}}
	require.Equal(t, 1, two.Pick().Sub, "a Group built by hand has no cursor")
}

func TestMatchCacheInvalidation(t *testing.T) {
	// Each change must show in the very next Match of a cached topic, and
	// must leave cached topics it cannot affect alone.
	base := []modelSub{{"a/b", 1, 0, 0}, {"a/+", 2, 1, 0}, {"$share/g/a/#", 3, 0, 0}, {"c/d", 4, 0, 0}}
	topics := []string{"a/b", "a/c", "a", "c/d", "$SYS/x"}
	tests := []struct {
		name      string
		change    func(t *testing.T, tr *Trie[int], m *model)
		untouched []string // cached topics the change must not drop
	}{
		{"literal subscribe", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "a/b", 5, 2, 0) },
			[]string{"a/c", "a", "c/d", "$SYS/x"}},
		{"wildcard subscribe", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "a/#", 5, 2, 0) },
			[]string{"c/d", "$SYS/x"}},
		{"leading wildcard spares $ topics", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "#", 5, 0, 0) },
			[]string{"$SYS/x"}},
		{"dollar subscribe", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "$SYS/#", 5, 0, 0) },
			[]string{"a/b", "a/c", "a", "c/d"}},
		{"replace QoS down", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "a/+", 2, 0, 0) },
			[]string{"a", "c/d", "$SYS/x"}},
		{"shared join", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "$share/g/a/#", 5, 0, 0) },
			[]string{"c/d", "$SYS/x"}},
		{"new shared group", func(t *testing.T, tr *Trie[int], m *model) { sub(t, tr, m, "$share/h/c/+", 5, 0, 0) },
			[]string{"a/b", "a/c", "a", "$SYS/x"}},
		{"literal unsubscribe", func(t *testing.T, tr *Trie[int], m *model) { unsub(t, tr, m, "a/b", 1) },
			[]string{"a/c", "a", "c/d", "$SYS/x"}},
		{"wildcard unsubscribe", func(t *testing.T, tr *Trie[int], m *model) { unsub(t, tr, m, "a/+", 2) },
			[]string{"a", "c/d", "$SYS/x"}},
		{"last group member leaves", func(t *testing.T, tr *Trie[int], m *model) { unsub(t, tr, m, "$share/g/a/#", 3) },
			[]string{"c/d", "$SYS/x"}},
		{"unsubscribe of nothing", func(t *testing.T, tr *Trie[int], m *model) {
			require.False(t, tr.Unsubscribe("a/b", 9))
		}, topics},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTrie[int](0)
			m := newModel()
			subscribeAll(t, tr, m, base)
			for _, topic := range topics {
				requireMatch(t, tr, m, topic)
				require.True(t, cached(tr, topic))
			}
			tt.change(t, tr, m)
			for _, topic := range tt.untouched {
				require.True(t, cached(tr, topic), "%s dropped needlessly", topic)
			}
			for _, topic := range topics {
				requireMatch(t, tr, m, topic)
			}
			requireCacheAccounting(t, tr)
		})
	}
}

func sub(t testing.TB, tr *Trie[int], m *model, filter string, s int, qos byte, tag uint8) {
	t.Helper()
	_, err := tr.Subscribe(filter, s, qos, tag)
	require.NoError(t, err)
	m.subscribe(filter, s, qos, tag)
}

func unsub(t testing.TB, tr *Trie[int], m *model, filter string, s int) {
	t.Helper()
	require.True(t, tr.Unsubscribe(filter, s))
	m.unsubscribe(filter, s)
}

func TestMatchCacheBounds(t *testing.T) {
	t.Run("topics", func(t *testing.T) {
		tr := NewTrie[int](8)
		sub(t, tr, newModel(), "#", 1, 0, 0)
		for i := range 1000 {
			require.Len(t, tr.Match(fmt.Appendf(nil, "t/%d", i)).Subs, 1)
		}
		require.Len(t, tr.cache.results, 8)
		requireCacheAccounting(t, tr)
	})
	t.Run("bytes", func(t *testing.T) {
		tr := NewTrie[int](4) // budget 4*cacheBytesPerTopic bytes
		m := newModel()
		// A result bigger than the whole budget is served but not cached.
		for i := range 4 * cacheBytesPerTopic / 8 {
			sub(t, tr, m, "wide", i, 0, 0)
		}
		requireMatch(t, tr, m, "wide")
		require.False(t, cached(tr, "wide"))
		// Long topics evict each other instead of exceeding the budget.
		for i := range 50 {
			topic := fmt.Sprintf("%d/%s", i, strings.Repeat("x", 6000))
			require.True(t, tr.Match([]byte(topic)).Empty())
			require.True(t, cached(tr, topic))
			requireCacheAccounting(t, tr)
		}
		require.LessOrEqual(t, len(tr.cache.results), 2, "two 6 KB topics fill a 16 KiB budget")
	})
	t.Run("disabled", func(t *testing.T) {
		tr := NewTrie[int](-1)
		m := newModel()
		sub(t, tr, m, "a/+", 1, 0, 0)
		requireMatch(t, tr, m, "a/b")
		requireMatch(t, tr, m, "a/b")
		require.False(t, cached(tr, "a/b"))
		require.Nil(t, tr.cache.results)
	})
}

func TestMatchEmptyResult(t *testing.T) {
	tr := NewTrie[int](0)
	first := tr.Match([]byte("nobody/listens"))
	require.NotNil(t, first)
	require.True(t, first.Empty())
	require.Same(t, first, tr.Match([]byte("nobody/else")), "one shared empty result")
	require.Same(t, first, tr.Match(nil))

	var zero Trie[int] // not made by NewTrie: must still not panic or return nil
	require.True(t, zero.Match([]byte("a")).Empty())
}

func TestMatchCacheHitDoesNotAllocate(t *testing.T) {
	tr := NewTrie[int](0)
	subscribeAll(t, tr, nil, []modelSub{{"a/+/c", 1, 0, 0}, {"a/#", 2, 0, 0}, {"$share/g/a/b/c", 3, 0, 0}})
	topic := []byte("a/b/c")
	tr.Match(topic)
	allocs := testing.AllocsPerRun(100, func() {
		if r := tr.Match(topic); len(r.Subs) != 2 {
			t.Fatal("wrong result")
		}
	})
	require.Zero(t, allocs)
}

// randomFilter returns a valid filter over a small alphabet, so random
// filters and topics overlap often.
func randomFilter(rng *rand.Rand, maxLevels int) string {
	n := 1 + rng.IntN(maxLevels)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = []string{"a", "b", "", "$x", "+", "+", "c"}[rng.IntN(7)]
	}
	if rng.IntN(4) == 0 {
		parts[n-1] = "#"
	}
	if n == 1 && parts[0] == "" {
		return "/" // the empty filter is invalid
	}
	return strings.Join(parts, "/")
}

func randomTopic(rng *rand.Rand, maxLevels int) string {
	n := 1 + rng.IntN(maxLevels)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = []string{"a", "b", "", "$x", "c"}[rng.IntN(5)]
	}
	return strings.Join(parts, "/")
}

func TestRandomOperationsAgainstReference(t *testing.T) {
	// Property test: after every random change, Match of topics that were
	// cached agrees with the reference Matches over the model. A small cache
	// keeps eviction in play.
	rng := rand.New(rand.NewPCG(7, 11))
	tr := NewTrie[int](16)
	m := newModel()
	pool := make([]string, 40)
	for i := range pool {
		pool[i] = randomTopic(rng, 4)
	}
	var live []modelKey
	ops := 2000
	if testing.Short() {
		ops = 500
	}
	for range ops {
		switch op := rng.IntN(10); {
		case op < 5 || len(live) == 0:
			filter := randomFilter(rng, 4)
			if rng.IntN(5) == 0 {
				filter = "$share/" + []string{"g", "h"}[rng.IntN(2)] + "/" + filter
			}
			s, qos, tag := rng.IntN(6), byte(rng.IntN(3)), uint8(1)<<rng.IntN(8)
			_, existedInModel := m.subs[modelKey{filter, s}]
			existed, err := tr.Subscribe(filter, s, qos, tag)
			require.NoError(t, err)
			require.Equal(t, existedInModel, existed)
			if !existed {
				live = append(live, modelKey{filter, s})
			}
			m.subscribe(filter, s, qos, tag)
		case op < 8:
			i := rng.IntN(len(live))
			require.True(t, tr.Unsubscribe(live[i].filter, live[i].sub))
			m.unsubscribe(live[i].filter, live[i].sub)
			live = append(live[:i], live[i+1:]...)
		default:
			tr.Match([]byte(randomTopic(rng, 4))) // fill the cache with something else
		}
		for range 4 {
			requireMatch(t, tr, m, pool[rng.IntN(len(pool))])
		}
		require.Equal(t, len(m.subs), tr.Len())
	}
	requireCacheAccounting(t, tr)
}

func TestConcurrentMatchAndSubscribe(t *testing.T) {
	// Readers fill and hit the cache while writers change subscriptions.
	// Invariants checked during the race: a permanent subscriber is always
	// in the result, and a writer's own Match right after its Subscribe or
	// Unsubscribe reflects it. At the end every topic matches the model.
	tr := NewTrie[int](32)
	m := newModel()
	sub(t, tr, m, "x/#", 0, 1, 0)
	sub(t, tr, m, "$share/g/x/#", 0, 0, 0)

	const writers, readers = 2, 4
	iterations := 2000
	if testing.Short() {
		iterations = 300
	}
	topics := []string{"x", "x/a", "x/a/b", "x/b", "x//a", "x/c/c"}
	models := make([]*model, writers)
	var wg sync.WaitGroup
	for w := range writers {
		models[w] = newModel()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			own := models[w]
			s := 1 + w // each writer owns one subscriber id
			for range iterations {
				filter := "x/" + randomFilter(rng, 2)
				if rng.IntN(4) == 0 {
					filter = "$share/g/" + filter
				}
				concrete := strings.NewReplacer("+", "a", "#", "a").Replace(strings.TrimPrefix(filter, "$share/g/"))
				if _, ok := own.subs[modelKey{filter, s}]; ok {
					if !tr.Unsubscribe(filter, s) {
						t.Errorf("unsubscribe %q failed", filter)
						return
					}
					own.unsubscribe(filter, s)
					continue
				}
				if _, err := tr.Subscribe(filter, s, 2, 0); err != nil {
					t.Errorf("subscribe %q: %v", filter, err)
					return
				}
				own.subscribe(filter, s, 2, 0)
				if !receives(tr.Match([]byte(concrete)), s) {
					t.Errorf("Match(%q) right after Subscribe(%q) misses it", concrete, filter)
					return
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range iterations * 2 {
				res := tr.Match([]byte(topics[(i+r)%len(topics)]))
				if !receives(res, 0) {
					t.Errorf("permanent subscriber missing from %v", res)
					return
				}
				for _, g := range res.Groups {
					g.Pick()
				}
			}
		})
	}
	wg.Wait()
	for _, own := range models {
		for k, e := range own.subs {
			m.subs[k] = e
		}
	}
	require.Equal(t, len(m.subs), tr.Len())
	for _, topic := range topics {
		requireMatch(t, tr, m, topic)
	}
	requireCacheAccounting(t, tr)
}

// receives reports whether s is a plain subscriber or a member of a group.
func receives(r *Result[int], s int) bool {
	for _, e := range r.Subs {
		if e.Sub == s {
			return true
		}
	}
	for _, g := range r.Groups {
		for _, e := range g.Members {
			if e.Sub == s {
				return true
			}
		}
	}
	return false
}

// TestOnInterest: the hook sees a filter when its first subscription
// arrives and when its last one goes, shared subscriptions counting toward
// their inner filter; filters present when the hook is installed are
// reported at once.
func TestOnInterest(t *testing.T) {
	tr := NewTrie[int](0)
	_, _ = tr.Subscribe("pre/x", 9, 0, 0)
	var got []string
	tr.OnInterest(func(f string, present bool) {
		if present {
			got = append(got, "+"+f)
		} else {
			got = append(got, "-"+f)
		}
	})
	_, _ = tr.Subscribe("a/+", 1, 0, 0)
	_, _ = tr.Subscribe("a/+", 2, 1, 0)          // second holder: no news
	_, _ = tr.Subscribe("$share/g/a/+", 3, 0, 0) // shared, same inner filter
	_, _ = tr.Subscribe("#", 1, 0, 0)
	tr.Unsubscribe("a/+", 1)
	tr.Unsubscribe("a/+", 2)
	tr.Unsubscribe("$share/g/a/+", 3)
	tr.Unsubscribe("#", 1)
	tr.Unsubscribe("#", 1) // already gone: no news
	want := []string{"+pre/x", "+a/+", "+#", "-a/+", "-#"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("interest events %v, want %v", got, want)
	}
}
