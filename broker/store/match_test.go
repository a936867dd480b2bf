package store

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+", "a/", true}, // '+' matches the empty level
		{"+/+", "/", true},
		{"+", "a", true},
		{"+", "/a", false},
		{"a/#", "a", true}, // [MQTT-4.7.1-2] '#' includes the parent
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/b/#", "a/b", true},
		{"a/+/#", "a", false},
		{"a/+/#", "a/b", true},
		{"#", "a/b", true},
		{"#", "/", true},
		{"#", "$SYS/x", false},   // [MQTT-4.7.2-1]
		{"+/x", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/$b", "a/$b", true},
		{"a/+", "a/$b", true}, // only a leading '$' is special
		{"/a", "/a", true},
		{"/+", "/a", true},
		{"A/b", "a/b", false}, // case-sensitive
	}
	for _, tc := range tests {
		t.Run(tc.filter+" "+tc.topic, func(t *testing.T) {
			require.NoError(t, validateFilter(tc.filter))
			require.Equal(t, tc.want, match(tc.filter, tc.topic))
			require.Equal(t, tc.want, referenceMatch(tc.filter, tc.topic))
		})
	}
}

func TestValidateFilter(t *testing.T) {
	for _, f := range []string{"#", "+", "a", "/", "a/#", "+/+/#", "a//b", "$SYS/#", "é/+"} {
		require.NoError(t, validateFilter(f), f)
	}
	for _, f := range []string{"", "a#", "#a", "a/#/b", "a/b#", "+a", "a+/b", "a/+b", "#/", "\x00", "\xff",
		strings.Repeat("a", MaxTopicLen+1)} {
		require.ErrorIs(t, validateFilter(f), ErrInvalidFilter, "%q", f)
	}
}

// referenceMatch is the textbook level-by-level definition, used to check
// the allocation-free matcher.
func referenceMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || (f != "+" && f != ts[i]) {
			return false
		}
	}
	return len(fs) == len(ts)
}

func FuzzMatch(f *testing.F) {
	f.Add("a/#", "a")
	f.Add("+/+", "/")
	f.Add("#", "$SYS/x")
	f.Add("a/+/c", "a/b/c")
	f.Add("a//#", "a//b")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if validateFilter(filter) != nil || validateTopic(topic) != nil {
			return
		}
		if got, want := match(filter, topic), referenceMatch(filter, topic); got != want {
			t.Fatalf("match(%q, %q) = %v, reference %v", filter, topic, got, want)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !match("sensors/+/temperature/#", "sensors/device-123/temperature/celsius") {
			b.Fatal("no match")
		}
	}
}
