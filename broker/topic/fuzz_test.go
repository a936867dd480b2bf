package topic

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// maxFuzzFilters bounds the filters one FuzzMatch input subscribes, so an
// execution stays fast whatever the input length.
const maxFuzzFilters = 32

// FuzzMatch subscribes a set of newline-separated filters (plain and shared,
// overlapping subscribers) and checks Match against the reference matcher
// over the model: on the cache miss, on the hit, and after unsubscribing
// half of them. Validation must agree with the reference validator.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchMatrix {
		f.Add(tt.filter, tt.topic)
	}
	f.Add("a/#\na/b\n+/b\n#\n$share/g/a/+\n$share/g/a/+\n$share/h/#", "a/b")
	f.Add("#\n+\n+/+\n/+\n$SYS/#\n$share/g/#", "$SYS/x")
	f.Add("a//b\na/+/b\n+/+/+\na/#", "a//b")
	f.Add("a/#/b\na#\na/+b\n#/a\n$share//a\n$share/g", "a/b")
	f.Add("sport/#\nsport/+\nsport", "sport")
	f.Add("x\nx/\nx/+\nx/#", "x/")
	f.Fuzz(func(t *testing.T, filters, topic string) {
		tr := NewTrie[int](4) // tiny, so eviction runs too
		m := newModel()
		lines := strings.Split(filters, "\n")
		if len(lines) > maxFuzzFilters {
			lines = lines[:maxFuzzFilters]
		}
		var subscribed []modelKey
		for i, filter := range lines {
			s, qos, tag := i%5, byte(i%3), uint8(1)<<(i%8)
			_, err := tr.Subscribe(filter, s, qos, tag)
			if valid := refValidFilter(filter); valid != (err == nil) {
				t.Fatalf("Subscribe(%q) error %v, reference valid=%v", filter, err, valid)
			}
			if err != nil {
				continue
			}
			m.subscribe(filter, s, qos, tag)
			subscribed = append(subscribed, modelKey{filter, s})
			if got, want := Matches(filter, []byte(topic)), refMatch(filter, topic); got != want {
				t.Fatalf("Matches(%q, %q) = %v, reference %v", filter, topic, got, want)
			}
		}
		requireMatch(t, tr, m, topic)
		requireMatch(t, tr, m, topic) // cache hit
		for i, k := range subscribed {
			if i%2 == 0 && tr.Unsubscribe(k.filter, k.sub) {
				m.unsubscribe(k.filter, k.sub)
			}
		}
		requireMatch(t, tr, m, topic)
		if tr.Len() != len(m.subs) {
			t.Fatalf("Len %d, model %d", tr.Len(), len(m.subs))
		}
	})
}

// FuzzValidateFilter checks ValidateFilter against the reference validator,
// and that every valid filter round-trips through the trie.
func FuzzValidateFilter(f *testing.F) {
	for _, seed := range []string{
		"a", "a/b", "#", "+", "a/#", "a/+/c", "+/+/#", "a//b", "/", "$SYS/#", "日本/+",
		"$share/g/a/+", "$share/g/#", "$share", "a/$share/g",
		"", "a/#/b", "a#", "a/+b", "#/a", "##", "#+", "+a", "a/\x00",
		"$share/g", "$share/g/", "$share//a", "$share/+/a", "$share/g#/a",
		strings.Repeat("/", 250), levels(MaxLevels), levels(MaxLevels + 1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		err := ValidateFilter(filter)
		if valid := refValidFilter(filter); valid != (err == nil) {
			t.Fatalf("ValidateFilter(%q) = %v, reference valid=%v", filter, err, valid)
		}
		tr := NewTrie[int](0)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidFilter)
			if _, serr := tr.Subscribe(filter, 1, 0, 0); serr == nil {
				t.Fatalf("Subscribe accepted invalid %q", filter)
			}
			return
		}
		_, err = tr.Subscribe(filter, 1, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []string{filter}, tr.Filters())
		require.True(t, tr.Unsubscribe(filter, 1))
		require.Zero(t, nodeCount(tr))
	})
}

// FuzzValidateTopic checks ValidateTopic against the reference validator.
func FuzzValidateTopic(f *testing.F) {
	for _, seed := range []string{
		"a", "a/b", "/", "a//b/", "$SYS/x", "$share/g/a", "日本",
		"", "+", "a/+", "#", "a/#", "a+b", "a\x00", strings.Repeat("/", 250),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, topic []byte) {
		err := ValidateTopic(topic)
		if valid := refValidTopic(string(topic)); valid != (err == nil) {
			t.Fatalf("ValidateTopic(%q) = %v, reference valid=%v", topic, err, valid)
		}
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidTopic)
		}
	})
}
