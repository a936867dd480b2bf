package keys

import (
	"fmt"
	"strings"
)

// Limits on topics, filters and Emitter channel targets.
const (
	// maxTopicLen is the MQTT UTF-8 string limit [MQTT-1.5.3]: a longer
	// topic cannot arrive on the wire, so it is never authorised.
	maxTopicLen = 65535
	// MaxChannelLevels is Emitter's keygen limit on channel depth; deeper
	// targets are refused with its ">23 parts" error (emitter.md §10).
	MaxChannelLevels = 23
)

// cutLevel splits s at the first '/': the level before it, the remainder
// after it, and whether there was a '/' at all (so "a/" has a second, empty
// level while "a" has none). It never allocates. A plain loop beats
// strings.IndexByte here: levels are short and the call overhead dominated
// the authorisation profile.
func cutLevel(s string) (level, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// isDollar reports whether a first level starts with '$'. Wildcards at the
// first level never match such topics [MQTT-4.7.2-1], so "#" in a key does
// not reach "$SYS/..." — only a literal "$SYS" filter (or master) does.
func isDollar(level string) bool { return len(level) > 0 && level[0] == '$' }

// isDotLevel reports a level of "." or "..". MQTT gives them no meaning, but
// a topic travels through URL paths (SSE) and bridges where a proxy may
// normalise "a/b/../x" to "a/x"; the string authorised and the string routed
// would then differ. Such levels are never authorised (reliability case E5).
func isDotLevel(level string) bool { return level == "." || level == ".." }

// validRequest reports whether s is a topic (wildcards=false) or a filter
// (wildcards=true) that a key may be asked about: 1..65535 bytes, no U+0000
// [MQTT-4.7.3-1, MQTT-4.7.3-2], '+' and '#' only as whole levels and '#' only
// last [MQTT-4.7.1-2, MQTT-4.7.1-3], no "." or ".." level. It does not check
// UTF-8; the protocol decoders do that before a topic reaches a key.
func validRequest(s string, wildcards bool) bool {
	if len(s) == 0 || len(s) > maxTopicLen {
		return false
	}
	start := 0 // first byte of the current level
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			default:
				continue
			case 0:
				return false
			case '+', '#':
				if !wildcards {
					return false // [MQTT-3.3.2-2] a topic name has no wildcards
				}
				next := i + 1
				if i != start || (next < len(s) && s[next] != '/') || (s[i] == '#' && next != len(s)) {
					return false
				}
				continue
			case '/':
			}
		}
		if n := i - start; n > 0 && n <= 2 && s[start] == '.' && s[i-1] == '.' {
			return false // a "." or ".." level
		}
		start = i + 1
	}
	return true
}

// covers reports whether every topic that requested can match is also
// matched by allowed: a segment-exact, case-sensitive subset test between
// two MQTT filters (a topic is a filter without wildcards). requested must
// satisfy validRequest; an allowed filter that is not valid covers nothing
// it would not cover literally, and a '#' that is not its last level covers
// nothing at all. It never allocates.
func covers(allowed, requested string) bool {
	a, r := allowed, requested
	for first := true; ; first = false {
		al, aRest, aMore := cutLevel(a)
		rl, rRest, rMore := cutLevel(r)
		switch al {
		case "#":
			if aMore {
				return false // not a valid filter [MQTT-4.7.1-2]
			}
			// '#' takes the rest, including the parent level; at the first
			// level it must not reach '$' topics, and a requested '+' or '#'
			// there matches none either.
			return !first || !isDollar(rl)
		case "+":
			if rl == "#" {
				// A filter's '#' matches zero or more levels, which '+' (one
				// level) cannot. Except at the first level: a topic has at
				// least one level [MQTT-4.7.3-1], so "+/#" covers "#".
				return first && aMore && aRest == "#"
			}
			if first && rl != "+" && isDollar(rl) {
				return false // [MQTT-4.7.2-1]
			}
		default:
			if al != rl {
				return false // literal levels compare byte for byte
			}
		}
		switch {
		case !rMore:
			// Every topic requested matches ends here; allowed still matches
			// it only if all it has left is '#', which matches the parent.
			return !aMore || aRest == "#"
		case !aMore:
			return false // requested goes deeper than allowed
		}
		a, r = aRest, rRest
	}
}

// validAllowed reports whether f can serve as a read or write entry of a
// key: a valid MQTT filter (topics are filters too) without dot levels.
func validAllowed(f string) bool { return validRequest(f, true) }

// ChannelFilter converts an Emitter channel target, as given to keygen, into
// the MQTT filter a key's read and write claims hold: "a/b/" becomes "a/b/#"
// (Emitter matches channels by prefix, so a key for a/b/ covers its
// sub-channels) and the wildcard target "a/#/" becomes "a/#".
//
// The target must end with '/', have at most MaxChannelLevels levels, no
// empty level, and only Emitter's segment bytes ('$', '-' to ':', 'A' to
// 'z'); '+' may stand alone as a level and '#' only as the last one
// (emitter.md §2, §3). Options ("?ttl=") are not part of a target.
func ChannelFilter(channel string) (string, error) {
	body, ok := strings.CutSuffix(channel, "/")
	if !ok {
		return "", fmt.Errorf("%w: channel must end with '/' (or '/#/' for a wildcard)", ErrInvalidChannel)
	}
	levels := 0
	for rest, more := body, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		levels++
		if levels > MaxChannelLevels {
			return "", fmt.Errorf("%w: more than %d levels", ErrInvalidChannel, MaxChannelLevels)
		}
		switch {
		case level == "":
			return "", fmt.Errorf("%w: empty level at position %d", ErrInvalidChannel, levels)
		case level == "+":
		case level == "#":
			if more {
				return "", fmt.Errorf("%w: '#' must be the last level", ErrInvalidChannel)
			}
			return body, nil
		case isDotLevel(level):
			return "", fmt.Errorf("%w: level %d is %q", ErrInvalidChannel, levels, level)
		default:
			for i := range len(level) {
				if !isChannelByte(level[i]) {
					return "", fmt.Errorf("%w: byte %q not allowed in level %d", ErrInvalidChannel, level[i], levels)
				}
			}
		}
	}
	return channel + "#", nil
}

// isChannelByte is Emitter's segment alphabet: '$' (0x24), 0x2D-0x3A
// ("-./0-9:") and 0x41-0x7A ("A-Z[\]^_`a-z").
func isChannelByte(b byte) bool {
	return b == '$' || (b >= 0x2D && b <= 0x3A) || (b >= 0x41 && b <= 0x7A)
}
