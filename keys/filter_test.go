package keys

import (
	"errors"
	"strings"
	"testing"
)

// refMatch is a deliberately naive MQTT matcher (split, compare), the
// oracle for covers: '+' one level, '#' the rest including the parent,
// wildcards at the first level never match '$' topics [MQTT-4.7.2-1].
func refMatch(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(t) || (level != "+" && level != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

// witnesses enumerates concrete topics requested can match, drawing every
// wildcard level from alphabet; a '#' at level i stands for 0 up to
// depth-i+1 levels. If some topic matched by requested escapes a filter of
// depth levels, one of these does, provided alphabet holds that filter's
// literals plus a fresh level, "" and a '$' level: beyond its depth or
// outside its literals, the filter cannot tell levels apart.
func witnesses(requested string, alphabet []string, depth int, yield func(string) bool) bool {
	levels := strings.Split(requested, "/")
	var walk func(i int, prefix []string) bool
	walk = func(i int, prefix []string) bool {
		if i == len(levels) {
			topic := strings.Join(prefix, "/")
			if len(prefix) == 0 || !refMatch(requested, topic) {
				return true // not a topic, or excluded by the '$' rule
			}
			return yield(topic)
		}
		switch levels[i] {
		case "+":
			for _, a := range alphabet {
				if !walk(i+1, append(prefix[:len(prefix):len(prefix)], a)) {
					return false
				}
			}
			return true
		case "#":
			var extend func(seq []string, left int) bool
			extend = func(seq []string, left int) bool {
				if !walk(i+1, seq) {
					return false
				}
				if left == 0 {
					return true
				}
				for _, a := range alphabet {
					if !extend(append(seq[:len(seq):len(seq)], a), left-1) {
						return false
					}
				}
				return true
			}
			return extend(prefix, max(depth-len(prefix), 0)+1)
		default:
			return walk(i+1, append(prefix[:len(prefix):len(prefix)], levels[i]))
		}
	}
	return walk(0, nil)
}

// refCovers decides coverage by brute force over witnesses.
func refCovers(allowed, requested string) bool {
	alphabet := []string{"zz", "", "$zz"}
	seen := map[string]bool{"zz": true, "": true, "$zz": true}
	levels := strings.Split(allowed, "/")
	for _, l := range levels {
		if l != "+" && l != "#" && !seen[l] {
			seen[l] = true
			alphabet = append(alphabet, l)
		}
	}
	return witnesses(requested, alphabet, len(levels), func(topic string) bool {
		return refMatch(allowed, topic)
	})
}

func TestCovers(t *testing.T) {
	tests := []struct {
		allowed, requested string
		want               bool
	}{
		// A key for the Emitter channel a/b/ (reliability case E5).
		{"a/b/#", "a/b/#", true},
		{"a/b/#", "a/b", true}, // '#' includes the parent
		{"a/b/#", "a/b/", true},
		{"a/b/#", "a/b/c", true},
		{"a/b/#", "a/b/+", true},
		{"a/b/#", "a/b/+/#", true},
		{"a/b/#", "a/b/c/d/e", true},
		{"a/b/#", "a", false},
		{"a/b/#", "a/#", false},
		{"a/b/#", "a/bc/#", false},
		{"a/b/#", "a/bc", false},
		{"a/b/#", "A/b/#", false},
		{"a/b/#", "a/B", false},
		{"a/b/#", "a/+/#", false},
		{"a/b/#", "a/+", false},
		{"a/b/#", "+/b/#", false},
		{"a/b/#", "#", false},
		{"a/b/#", "+", false},
		// The reverse directions.
		{"a/#", "a/b/#", true},
		{"a/+/#", "a/b/#", true},
		{"#", "a/b/#", true},
		{"a/bc/#", "a/b/#", false},
		{"a/b", "a/b/#", false},
		// Single-level wildcards.
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/+/c", true},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/#", false},
		{"a/+/c", "a/+/#", false},
		{"a/+/c", "a/b/c/d", false},
		{"a/+/c", "a/b", false},
		{"a/+/c", "a/+/+", false},
		{"a/+", "a/#", false}, // Eventhub let this through; pubsub does not
		{"a/+", "a", false},
		{"+", "#", false},
		{"+", "a", true},
		{"+", "+", true},
		{"+", "a/b", false},
		{"+/+", "+/#", false},
		// A topic has at least one level, so "+/#" is as wide as "#".
		{"+/#", "#", true},
		{"+/#", "+", true},
		{"+/#", "a/b", true},
		{"a/+/#", "a/#", false}, // a/# matches a, a/+/# does not
		{"a/#", "a/+/#", true},
		// '$' topics are not reached by leading wildcards [MQTT-4.7.2-1].
		{"#", "$SYS/x", false},
		{"#", "$SYS/#", false},
		{"#", "$SYS", false},
		{"+/#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"#", "+/x", true},
		{"#", "#", true},
		{"$SYS/#", "$SYS/stats/n1", true},
		{"$SYS/#", "$SYS/#", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "#", false},
		{"$SYS/#", "+/stats", false},
		{"a/$x/#", "a/$x/b", true}, // only the first level is special
		{"a/#", "a/$x", true},
		// Literal keys.
		{"a", "a", true},
		{"a", "a/", false},
		{"a", "a/#", false},
		{"a", "+", false},
		{"a", "#", false},
		{"", "", true}, // an empty level is a level
		// Invalid allowed filters never widen anything.
		{"a/#/b", "a/x/b", false},
		{"a/#/b", "a/#", false},
		{"a#", "a/b", false},
		{"a/+b", "a/xb", false},
	}
	for _, tt := range tests {
		t.Run(tt.allowed+" ⊇ "+tt.requested, func(t *testing.T) {
			if got := covers(tt.allowed, tt.requested); got != tt.want {
				t.Errorf("covers(%q, %q) = %v, want %v", tt.allowed, tt.requested, got, tt.want)
			}
			if validAllowed(tt.allowed) && validRequest(tt.requested, true) && tt.requested != "" {
				if ref := refCovers(tt.allowed, tt.requested); ref != tt.want {
					t.Errorf("brute force says %v for %q ⊇ %q; the table is wrong", ref, tt.allowed, tt.requested)
				}
			}
		})
	}
}

// TestEventhubTopicMatching ports Eventhub's TopicTest isFilterMatched
// tables (tests/src/TopicTest.cpp): a key whose read or write entry is the
// filter must authorise exactly the topics Eventhub matched. Rows whose
// "topic" is itself a filter check the subset test.
func TestEventhubTopicMatching(t *testing.T) {
	shouldMatch := [][2]string{
		{"temperature/kitchen/sensor1", "temperature/kitchen/sensor1"},
		{"temperature/+/sensor1", "temperature/kitchen/sensor1"},
		{"temperature/#", "temperature/kitchen/sensor1"},
		{"temperature/kitchen/#", "temperature/kitchen/sensor1"},
		{"temperature/kitchen/#", "temperature/kitchen"},
		{"#", "temperature/kitchen/sensor1"},
		{"#", "foo/bar/baz"},
		{"#", "foo"},
		{"v1/+/events/+/supporters/baz", "v1/foo/events/bar/supporters/baz"},
		{"v1/+/events/+/supporters/+", "v1/foo/events/bar/supporters/baz"},
		{"+", "foobar"},
		{"v1/+/#", "v1/baz/foo/bar"},
	}
	shouldNotMatch := [][2]string{
		{"temperature/kitchen/sensor1", "temperature/kitchen/sensor2"},
		{"temperature/+/sensor1", "temperature/livingroom/#"},
		{"somethingelse/+/sensor1", "temperature/livingroom/#"},
		{"somethingelse/#", "temperature/livingroom/#"},
		{"test/channel", "test/channel1"},
		{"test", "test1"},
		{"test1/test", "test1/test2"},
		{"test1/test2", "test1/test"},
		{"test1/test222222222", "test1/test"},
		{"test1/foobar", "test1/foo"},
		{"test1/foo", "test1/foobar"},
		{"test1/+/test", "test1/test"},
		{"+", "foobar/baz"},
	}
	for _, tc := range shouldMatch {
		c := Claims{Read: []string{tc[0]}, Write: []string{tc[0]}}
		if !c.CanSubscribe(tc[1]) || !c.CanPublish(tc[1]) {
			t.Errorf("key for %q must allow %q", tc[0], tc[1])
		}
	}
	for _, tc := range shouldNotMatch {
		c := Claims{Read: []string{tc[0]}, Write: []string{tc[0]}}
		if c.CanSubscribe(tc[1]) || c.CanPublish(tc[1]) {
			t.Errorf("key for %q must not allow %q", tc[0], tc[1])
		}
	}
}

func TestValidRequest(t *testing.T) {
	tests := []struct {
		s             string
		topic, filter bool
	}{
		{"a", true, true},
		{"a/b/c", true, true},
		{"/", true, true},
		{"a//b", true, true},
		{"$SYS/x", true, true},
		{"#", false, true},
		{"+", false, true},
		{"a/+/b", false, true},
		{"a/#", false, true},
		{"+/#", false, true},
		{"", false, false},
		{"a/#/b", false, false}, // [MQTT-4.7.1-2]
		{"a#", false, false},
		{"a/b#", false, false},
		{"#+", false, false},
		{"a/+b", false, false}, // [MQTT-4.7.1-3]
		{"test/+/te+st", false, false},
		{"a/\x00/b", false, false}, // [MQTT-4.7.3-2]
		{"a/b/../x", false, false}, // E5: dot levels never authorised
		{"a/./b", false, false},
		{"..", false, false},
		{"a/..b/c", true, true}, // only whole "." and ".." levels
		{strings.Repeat("a", maxTopicLen), true, true},
		{strings.Repeat("a", maxTopicLen+1), false, false},
	}
	for _, tt := range tests {
		if got := validRequest(tt.s, false); got != tt.topic {
			t.Errorf("validRequest(%.20q, topic) = %v, want %v", tt.s, got, tt.topic)
		}
		if got := validRequest(tt.s, true); got != tt.filter {
			t.Errorf("validRequest(%.20q, filter) = %v, want %v", tt.s, got, tt.filter)
		}
	}
}

func TestChannelFilter(t *testing.T) {
	tests := []struct {
		channel string
		want    string // "" means ErrInvalidChannel
	}{
		{"a/", "a/#"},
		{"a/b/", "a/b/#"},
		{"a/#/", "a/#"},
		{"#/", "#"},
		{"a/+/c/", "a/+/c/#"},
		{"$share/g/a/", "$share/g/a/#"},
		{"sensors/t-1_x:y.z/", "sensors/t-1_x:y.z/#"},
		{strings.Repeat("a/", MaxChannelLevels), strings.Repeat("a/", MaxChannelLevels) + "#"},
		{strings.Repeat("a/", MaxChannelLevels-1) + "#/", strings.Repeat("a/", MaxChannelLevels-1) + "#"},
		{strings.Repeat("a/", MaxChannelLevels+1), ""},
		{"a/b", ""},   // no trailing slash
		{"a/#", ""},   // wildcard target must be "a/#/"
		{"", ""},      //
		{"/", ""},     // empty level
		{"/a/", ""},   //
		{"a//b/", ""}, //
		{"a/#/b/", ""},
		{"a/b#/", ""},
		{"a/+b/", ""},
		{"a/*/", ""}, // Emitter's '*' never matched anything
		{"a/b/../x/", ""},
		{"a/./", ""},
		{"a b/", ""},
		{"a/b/?ttl=5", ""},
		{"a/é/", ""},
		{"a/%2F/", ""},
		{"a/\x00/", ""},
	}
	for _, tt := range tests {
		got, err := ChannelFilter(tt.channel)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidChannel) {
				t.Errorf("ChannelFilter(%.30q) = %q, %v; want ErrInvalidChannel", tt.channel, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ChannelFilter(%.30q) = %q, %v; want %q", tt.channel, got, err, tt.want)
		}
		if !validAllowed(got) {
			t.Errorf("ChannelFilter(%.30q) = %q is not a valid filter", tt.channel, got)
		}
	}
}
