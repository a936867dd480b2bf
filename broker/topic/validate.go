package topic

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// MaxLevels caps the number of levels in a topic or filter. Deep filters
	// made the matcher of other brokers recurse without bound
	// (mosquitto CVE-2019-11779); 200 is mosquitto's limit.
	MaxLevels = 200

	// MaxLength is the longest topic or filter in bytes: MQTT strings carry a
	// 16-bit length prefix [MQTT-1.5.3], [MQTT-4.7.3-3].
	MaxLength = 65535

	// sharePrefix starts a shared subscription filter "$share/GROUP/FILTER"
	// (MQTT 5 §4.8.2, also Emitter's share groups).
	sharePrefix = "$share/"
)

var (
	// ErrInvalidFilter is wrapped by every error about a malformed topic filter.
	ErrInvalidFilter = errors.New("topic: invalid filter")
	// ErrInvalidTopic is wrapped by every error about a malformed topic name.
	ErrInvalidTopic = errors.New("topic: invalid topic")
	// ErrInvalidQoS is returned by Trie.Subscribe for a QoS above 2 [MQTT-3.8.3-4].
	ErrInvalidQoS = errors.New("topic: invalid QoS")
)

// ValidateFilter checks an MQTT topic filter [MQTT-4.7.1]: non-empty, '#'
// only alone as the last level, '+' only alone in a level, at most MaxLevels
// levels, at most MaxLength bytes, no U+0000. "$share/GROUP/FILTER" is
// accepted when GROUP is non-empty without '/', '+', '#' and FILTER is valid.
//
// Well-formed UTF-8 [MQTT-1.5.3-1] is checked by the wire codecs that decode
// the string, not here, so that the publish hot path scans each topic once.
// Errors wrap ErrInvalidFilter and name the offending level, never echo the
// (possibly 64 KiB) filter.
func ValidateFilter(filter string) error {
	if len(filter) == 0 {
		return fmt.Errorf("%w: empty filter", ErrInvalidFilter) // [MQTT-4.7.3-1]
	}
	if len(filter) > MaxLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidFilter, MaxLength) // [MQTT-4.7.3-3]
	}
	if !strings.HasPrefix(filter, sharePrefix) {
		return validatePlainFilter(filter)
	}
	group, inner, ok := SplitShared(filter)
	switch {
	case !ok:
		return fmt.Errorf("%w: shared subscription must be $share/GROUP/FILTER", ErrInvalidFilter)
	case group == "":
		return fmt.Errorf("%w: empty share group name", ErrInvalidFilter) // [MQTT-4.8.2-1]
	case strings.ContainsAny(group, "+#"):
		return fmt.Errorf("%w: share group name contains a wildcard", ErrInvalidFilter) // [MQTT-4.8.2-2]
	case strings.IndexByte(group, 0) >= 0:
		return fmt.Errorf("%w: share group name contains U+0000", ErrInvalidFilter) // [MQTT-4.7.3-2]
	case inner == "":
		return fmt.Errorf("%w: empty filter after share group", ErrInvalidFilter)
	}
	return validatePlainFilter(inner)
}

// validatePlainFilter validates a non-empty filter without the $share prefix
// in a single pass.
func validatePlainFilter(filter string) error {
	levels, levelStart := 1, 0
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case 0:
			return fmt.Errorf("%w: contains U+0000", ErrInvalidFilter) // [MQTT-4.7.3-2]
		case '/':
			levels++
			if levels > MaxLevels {
				return fmt.Errorf("%w: more than %d levels", ErrInvalidFilter, MaxLevels)
			}
			levelStart = i + 1
		case '+':
			// [MQTT-4.7.1-3] '+' must occupy an entire level.
			if i != levelStart || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("%w: '+' not alone in level %d", ErrInvalidFilter, levels)
			}
		case '#':
			// [MQTT-4.7.1-2] '#' must be alone in its level and be the last character.
			if i != levelStart || i != len(filter)-1 {
				return fmt.Errorf("%w: '#' not alone in the last level (level %d)", ErrInvalidFilter, levels)
			}
		}
	}
	return nil
}

// ValidateTopic checks a concrete topic name for publishing: non-empty
// [MQTT-4.7.3-1], no '+' or '#' [MQTT-3.3.2-2], at most MaxLevels levels, at
// most MaxLength bytes, no U+0000 [MQTT-4.7.3-2]. Errors wrap ErrInvalidTopic.
func ValidateTopic(topic []byte) error {
	if len(topic) == 0 {
		return fmt.Errorf("%w: empty topic", ErrInvalidTopic)
	}
	if len(topic) > MaxLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopic, MaxLength)
	}
	levels := 1
	for _, c := range topic {
		switch c {
		case 0:
			return fmt.Errorf("%w: contains U+0000", ErrInvalidTopic)
		case '+', '#':
			return fmt.Errorf("%w: wildcard %q in topic name", ErrInvalidTopic, c)
		case '/':
			levels++
			if levels > MaxLevels {
				return fmt.Errorf("%w: more than %d levels", ErrInvalidTopic, MaxLevels)
			}
		}
	}
	return nil
}

// SplitShared splits "$share/GROUP/FILTER" into its group name and inner
// filter. For anything else it returns ok=false and inner=filter, so callers
// can always route on inner. It does not validate: "$share//a" gives an empty
// group with ok=true, which ValidateFilter rejects.
func SplitShared(filter string) (group, inner string, ok bool) {
	rest, found := strings.CutPrefix(filter, sharePrefix)
	if !found {
		return "", filter, false
	}
	group, inner, found = strings.Cut(rest, "/")
	if !found {
		return "", filter, false
	}
	return group, inner, true
}
