package topic

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// matchMatrix is reliability case B6 (mosquitto 03-pattern-matching.py) plus
// the Eventhub TopicTest tables and the empty-level corner cases.
var matchMatrix = []struct {
	filter, topic string
	want          bool
}{
	// B6
	{"#", "$SYS/x", false},
	{"+/x", "$SYS/x", false},
	{"$SYS/#", "$SYS/x", true},
	{"foo/+/#", "foo/bar", true},
	{"sport/#", "sport", true},
	{"a/+", "a", false},
	{"+", "/x", false},
	{"/+", "/x", true},
	{"#", "a/b/c", true},
	// mosquitto pattern matching
	{"#", "test/topic", true},
	{"#", "/test/topic", true},
	{"foo/#", "foo/bar/baz", true},
	{"foo/+/baz", "foo/bar/baz", true},
	{"foo/+/baz/#", "foo/bar/baz", true},
	{"A/B/+/#", "A/B/B/C", true},
	{"foo/#", "fo2/bar/baz", false},
	{"foo/+/baz", "foo/bar/bar", false},
	{"foo/+/#", "fo2/bar/baz", false},
	{"#", "$SYS", false},
	{"+", "$SYS", false},
	{"#", "$", false},
	{"$SYS/+", "$SYS/x", true},
	{"$SYS", "$SYS", true},
	{"+/+", "$SYS/x", false},
	{"$SYS/x", "$SYS/x", true},
	// Eventhub TopicTest
	{"temperature/kitchen/#", "temperature/kitchen", true},
	{"test1/+/test", "test1/test", false},
	{"+", "foobar/baz", false},
	{"test/+/#", "test/a/b/c", true},
	{"v1/+/events/+/x", "v1/a/events/b/x", true},
	// empty levels are real levels
	{"+/+", "/x", true},
	{"+", "/", false},
	{"+/+", "/", true},
	{"#", "/", true},
	{"/#", "/", true},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"a/b", "a//b", false},
	{"a/+", "a/", true},
	{"a/#", "a/", true},
	{"a", "a/", false},
	{"a/", "a", false},
	{"a/+/+", "a/", false},
	{"+/#", "/", true},
	// levels and case are exact
	{"a/b", "a/b/c", false},
	{"a/b/c", "a/b", false},
	{"a/b/c/#", "a/b", false},
	{"+/+/+", "a/b", false},
	{"A/b", "a/b", false},
	{"ab", "a", false},
	{"a", "ab", false},
}

func TestMatchesMatrix(t *testing.T) {
	for _, tt := range matchMatrix {
		t.Run(tt.filter+" vs "+tt.topic, func(t *testing.T) {
			require.NoError(t, ValidateFilter(tt.filter))
			require.NoError(t, ValidateTopic([]byte(tt.topic)))
			require.Equal(t, tt.want, refMatch(tt.filter, tt.topic), "reference")
			require.Equal(t, tt.want, Matches(tt.filter, []byte(tt.topic)), "Matches")
			require.Equal(t, tt.want, matchFilter(tt.filter, tt.topic), "matchFilter on a string")

			// The trie must give the same answer, plain and shared, on a
			// cache miss and then on a hit.
			tr := NewTrie[int](0)
			_, err := tr.Subscribe(tt.filter, 1, 1, 0)
			require.NoError(t, err)
			_, err = tr.Subscribe("$share/g/"+tt.filter, 2, 1, 0)
			require.NoError(t, err)
			require.Equal(t, tt.want, Matches("$share/g/"+tt.filter, []byte(tt.topic)), "Matches shared")
			for _, pass := range []string{"miss", "hit"} {
				r := tr.Match([]byte(tt.topic))
				if tt.want {
					require.Equal(t, []Entry[int]{{Sub: 1, QoS: 1}}, r.Subs, pass)
					require.Len(t, r.Groups, 1, pass)
					require.Equal(t, "g", r.Groups[0].Name, pass)
					require.Equal(t, tt.filter, r.Groups[0].Filter, pass)
				} else {
					require.True(t, r.Empty(), pass)
				}
			}
			require.True(t, cached(tr, tt.topic))
		})
	}
}
