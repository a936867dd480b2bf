package topic

import (
	"fmt"
	"testing"
)

// benchSession stands in for the broker's *session: the trie is keyed by a
// pointer in production.
type benchSession struct{ id int }

func benchSessions(n int) []*benchSession {
	s := make([]*benchSession, n)
	for i := range s {
		s[i] = &benchSession{id: i}
	}
	return s
}

// subscribeMixed subscribes n sessions with a mix of literal and wildcard
// filters resembling a device fleet: most clients watch one device, some
// watch one reading across a site, a few watch a whole site, and a shared
// group spreads per-device work. The benchmark topic matches 6 literal, 20
// "site/7/device/+/temp", 1 "site/7/device/7/#" and 20 "site/7/#"
// subscriptions plus one 10-member group.
func subscribeMixed(b *testing.B, tr *Trie[*benchSession], sessions []*benchSession) {
	for i, s := range sessions {
		j := i / 10
		var filter string
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			filter = fmt.Sprintf("site/%d/device/%d/temp", j%50, j)
		case 6:
			filter = fmt.Sprintf("site/%d/device/+/temp", j%50)
		case 7:
			filter = fmt.Sprintf("site/%d/device/%d/#", j%50, j)
		case 8:
			filter = fmt.Sprintf("site/%d/#", j%50)
		case 9:
			filter = fmt.Sprintf("$share/workers/site/+/device/%d/+", j%100)
		}
		if _, err := tr.Subscribe(filter, s, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	b.Run("literal", func(b *testing.B) {
		tr := NewTrie[*benchSession](0)
		for i, s := range benchSessions(1000) {
			if _, err := tr.Subscribe(fmt.Sprintf("devices/%d/temp", i), s, 0, 0); err != nil {
				b.Fatal(err)
			}
		}
		runMatch(b, tr, []byte("devices/500/temp"), 1)
	})
	b.Run("wildcard", func(b *testing.B) {
		tr := NewTrie[*benchSession](0)
		sessions := benchSessions(4)
		for i, filter := range []string{"devices/+/temp", "devices/#", "+/+/temp", "#"} {
			if _, err := tr.Subscribe(filter, sessions[i], 0, 0); err != nil {
				b.Fatal(err)
			}
		}
		runMatch(b, tr, []byte("devices/500/temp"), 4)
	})
	b.Run("wildcard-10k", func(b *testing.B) {
		tr := NewTrie[*benchSession](0)
		subscribeMixed(b, tr, benchSessions(10_000))
		runMatch(b, tr, []byte("site/7/device/7/temp"), 48)
	})
	b.Run("wildcard-10k-uncached", func(b *testing.B) {
		tr := NewTrie[*benchSession](-1)
		subscribeMixed(b, tr, benchSessions(10_000))
		runMatch(b, tr, []byte("site/7/device/7/temp"), 48)
	})
	b.Run("miss-uncached", func(b *testing.B) {
		tr := NewTrie[*benchSession](-1)
		subscribeMixed(b, tr, benchSessions(10_000))
		// Walks site/+/device/ before it finds no device 150.
		runMatch(b, tr, []byte("site/999/device/150/humidity"), 0)
	})
	b.Run("wildcard-10k-parallel", func(b *testing.B) {
		tr := NewTrie[*benchSession](0)
		subscribeMixed(b, tr, benchSessions(10_000))
		topic := []byte("site/7/device/7/temp")
		tr.Match(topic)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if tr.Match(topic).Empty() {
					b.Error("no recipients")
					return
				}
			}
		})
	})
}

// runMatch measures Match of topic after one warm-up call (so a cached trie
// measures the hit path); want is the number of subscribers plus groups.
func runMatch(b *testing.B, tr *Trie[*benchSession], topic []byte, want int) {
	r := tr.Match(topic)
	if n := len(r.Subs) + len(r.Groups); n != want {
		b.Fatalf("%q: %d recipients, want %d", topic, n, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Match(topic)
	}
}

func BenchmarkSubscribe(b *testing.B) {
	const distinct = 10_000
	filters := make([]string, distinct)
	for i := range filters {
		filters[i] = fmt.Sprintf("site/%d/device/%d/+", i%50, i)
	}
	sessions := benchSessions(distinct)
	tr := NewTrie[*benchSession](0)
	// A warm cache makes Subscribe pay for invalidation as in production.
	for i := range 1000 {
		tr.Match(fmt.Appendf(nil, "site/%d/device/%d/temp", i%50, i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Subscribe then unsubscribe, so the trie's size stays steady and
		// the figure includes pruning.
		if _, err := tr.Subscribe(filters[i], sessions[i], 1, 0); err != nil {
			b.Fatal(err)
		}
		tr.Unsubscribe(filters[i], sessions[i])
		i = (i + 1) % distinct
	}
}

func BenchmarkValidateTopic(b *testing.B) {
	topic := []byte("site/7/device/7/temp")
	b.ReportAllocs()
	for b.Loop() {
		if ValidateTopic(topic) != nil {
			b.Fatal("invalid")
		}
	}
}
