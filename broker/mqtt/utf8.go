package mqtt

import (
	"bytes"
	"unicode/utf8"
)

// ValidUTF8 reports whether b is a valid MQTT UTF-8 string: well-formed UTF-8
// without surrogates (U+D800..U+DFFF) or overlong forms [MQTT-1.5.3-1], and
// no U+0000 [MQTT-1.5.3-2]. Supplementary-plane characters such as U+2A6D4
// (F0 AA 9B 94) are valid. The control and non-character code points the spec
// says SHOULD NOT appear are accepted, as a server MAY accept them. It does
// not allocate.
func ValidUTF8(b []byte) bool {
	// utf8.Valid already rejects surrogates and overlong forms, and both it
	// and IndexByte have vectorised fast paths for the usual ASCII topic.
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// checkTopicName validates a PUBLISH (or will) topic name: at least one
// character [MQTT-4.7.3-1], valid MQTT UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.3-2],
// and no wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1]. '$' topics are valid here;
// the broker decides who may publish to them [MQTT-4.7.2-1].
func checkTopicName(t []byte) error {
	if len(t) == 0 {
		return errEmptyTopic
	}
	// One table load per byte: this runs on every PUBLISH.
	for i, c := range t {
		if topicByte[c] == topicByteOK {
			continue
		}
		switch {
		case c >= utf8.RuneSelf:
			// A wildcard or NUL byte can never be part of a multi-byte
			// sequence, so the remaining scan can stay bytewise.
			if !utf8.Valid(t[i:]) {
				return errInvalidUTF8
			}
			return checkTopicASCII(t[i:])
		case c == 0:
			return errInvalidUTF8
		default: // '+' or '#'
			return errTopicWildcard
		}
	}
	return nil
}

const (
	topicByteOK = iota
	topicByteSpecial
)

// topicByte classifies bytes for checkTopicName: NUL, '+', '#' and every
// non-ASCII byte need a closer look.
var topicByte = func() (table [256]uint8) {
	table[0], table['+'], table['#'] = topicByteSpecial, topicByteSpecial, topicByteSpecial
	for c := utf8.RuneSelf; c < 256; c++ {
		table[c] = topicByteSpecial
	}
	return table
}()

func checkTopicASCII(t []byte) error {
	for _, c := range t {
		switch c {
		case 0:
			return errInvalidUTF8
		case '+', '#':
			return errTopicWildcard
		}
	}
	return nil
}
