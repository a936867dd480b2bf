package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file holds a small MQTT topic matcher so the store does not depend on
// broker/topic; the two are meant to be folded together.

// validateFilter accepts an MQTT topic filter [MQTT-4.7.1]: '+' and '#' only
// as whole levels, '#' only last, no U+0000, 1..65535 bytes of UTF-8.
func validateFilter(f string) error {
	if f == "" || len(f) > MaxTopicLen {
		return fmt.Errorf("%w: length %d", ErrInvalidFilter, len(f))
	}
	if !utf8.ValidString(f) || containsNUL(f) {
		return fmt.Errorf("%w: %q is not NUL-free UTF-8", ErrInvalidFilter, f)
	}
	start := 0
	for i := 0; i <= len(f); i++ {
		if i < len(f) && f[i] != '/' {
			continue
		}
		level := f[start:i]
		if strings.ContainsAny(level, "+#") && len(level) != 1 {
			return fmt.Errorf("%w: %q: wildcard inside level %q", ErrInvalidFilter, f, level) // [MQTT-4.7.1-2] [MQTT-4.7.1-3]
		}
		if level == "#" && i != len(f) {
			return fmt.Errorf("%w: %q: '#' not last", ErrInvalidFilter, f) // [MQTT-4.7.1-2]
		}
		start = i + 1
	}
	return nil
}

// match reports whether topic matches a valid filter. '+' matches one level,
// '#' the remaining levels including none ("a/#" matches "a") [MQTT-4.7.1-2],
// and a leading wildcard does not match a topic starting with '$' [MQTT-4.7.2-1].
func match(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := cutLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// Topic ended; only a trailing "#" can still match ("a/#" vs "a").
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// cutLevel splits s at its first '/'; more reports whether a '/' was found.
func cutLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// literalFirstLevel returns the filter's first level and true when it has no
// wildcard, which lets a provider scan only that level's messages.
func literalFirstLevel(filter string) (string, bool) {
	level, _, _ := cutLevel(filter)
	if level == "+" || level == "#" {
		return "", false
	}
	return level, true
}

// firstLevel is a concrete topic's first level.
func firstLevel(topic string) string {
	level, _, _ := cutLevel(topic)
	return level
}

// hasWildcard reports whether a valid filter contains '+' or '#'.
func hasWildcard(filter string) bool {
	return strings.ContainsAny(filter, "+#")
}
