package topic

// Matches reports whether the concrete topic matches filter. It is the
// reference semantics the Trie implements (the fuzz tests hold the two to
// each other) and it decides which cached results a subscription change
// invalidates:
//   - '+' matches exactly one level, including an empty one [MQTT-4.7.1-3];
//   - '#' matches all remaining levels including none, so "a/#" matches "a"
//     [MQTT-4.7.1-2] (§4.7.1.2: "sport/#" also matches "sport");
//   - a topic starting with '$' is not matched by a filter whose first level
//     is '+' or '#' [MQTT-4.7.2-1];
//   - empty levels are real levels: "+" does not match "/x", "/+" does.
//
// A "$share/GROUP/FILTER" filter matches what FILTER matches, as it does in
// the Trie. Matches does not validate; an invalid filter gives an unspecified
// answer, never a panic. It does not allocate.
func Matches(filter string, topic []byte) bool {
	_, inner, _ := SplitShared(filter)
	return matchFilter(inner, topic)
}

// matchFilter is Matches without the share prefix, for both topic types so
// the cache can test its string keys without converting them.
func matchFilter[T string | []byte](filter string, topic T) bool {
	if len(topic) > 0 && topic[0] == '$' {
		if first, _, _ := cutLevel(filter); first == "+" || first == "#" {
			return false // [MQTT-4.7.2-1]
		}
	}
	for {
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := cutLevel(topic)
		if fl != "+" && !levelEqual(fl, tl) {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			// The topic ended but the filter goes on: only a final "#"
			// still matches, because it also matches the parent level.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// cutLevel splits s at its first '/': the first level, the rest after the
// separator, and whether there was a separator (more levels follow, possibly
// an empty one: "a/" has the levels "a" and "").
func cutLevel[T string | []byte](s T) (level, rest T, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, s[len(s):], false
}

// levelEqual compares a filter level with a topic level of either type
// without converting (a generic string(b) conversion may allocate).
func levelEqual[T string | []byte](a string, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
