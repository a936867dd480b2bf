package broker

import (
	"errors"
	"strconv"
	"strings"
)

// Topic dialects (DESIGN §4). One topic model serves every protocol; this
// file reads the two extras a topic string can carry:
//
//   - an options level: a final level "?k=v&k=v" on any topic or filter
//     (ttl, last, me, from, until). It is never part of the routed topic.
//   - the Emitter dialect: a first level that is a channel key
//     ("KEY/a/b/?last=5") or "emitter" (an API request). The key authorises
//     that one request; the channel ends with '/', which is dropped for
//     routing; a subscription to "a/b/" means "a/b/#"; and messages are
//     delivered to such subscribers with the trailing '/' and without the key.

// topicOptions are the options a topic's options level carries.
type topicOptions struct {
	ttl      int64 // seconds; 0 = not stored
	last     int   // messages to replay on subscribe
	from     int64 // unix seconds, 0 = unbounded
	until    int64
	noEcho   bool // me=0: not delivered back to the publisher's connection
	hasLast  bool
	hasRange bool
}

// parsedTopic is a PUBLISH topic or SUBSCRIBE filter read by parseTopic.
type parsedTopic struct {
	key     string // channel key from the first level, "" if none
	api     string // "keygen", "keyban", ... for emitter/<op>/ requests
	route   string // the topic or filter the trie sees
	emitter bool   // Emitter dialect: deliver with a trailing '/'
	opts    topicOptions
}

// Emitter's per-topic errors (emitter.md §10), answered with status 400.
var (
	errEmitterChannel = errors.New("the channel must end with '/' (Emitter dialect)")
	errBadOptions     = errors.New("bad options level: want ?key=value&key=value")
)

// parseTopic reads raw per DESIGN §4. isFilter selects subscribe semantics
// (Emitter's "a/b/" becomes "a/b/#").
func parseTopic(raw string, isFilter bool) (parsedTopic, error) {
	var p parsedTopic
	base := raw
	if i := strings.LastIndex(raw, "/?"); i >= 0 && !strings.Contains(raw[i+2:], "/") {
		opts, err := parseOptions(raw[i+2:])
		if err != nil {
			return p, err
		}
		p.opts = opts
		base = raw[:i+1] // keep the '/' that ended the channel
	} else if strings.HasPrefix(raw, "?") {
		return p, errBadOptions
	}

	first, rest, hasRest := strings.Cut(base, "/")
	switch {
	case first == "emitter" && hasRest:
		p.emitter = true
		op, tail, _ := strings.Cut(rest, "/")
		p.api = op
		p.route = "emitter/" + op
		if tail != "" && tail != "/" {
			// Emitter answers 404 for a request with more than one level.
			p.api = op + "/" + tail
		}
		return p, nil
	case hasRest && looksLikeKey(first):
		p.key = first
		p.emitter = true
		route, err := emitterChannel(rest, isFilter)
		if err != nil {
			return p, err
		}
		p.route = route
		return p, nil
	}
	// Plain MQTT: an options level leaves the '/' that preceded it.
	if base != raw {
		base = strings.TrimSuffix(base, "/")
	}
	p.route = base
	return p, nil
}

// emitterChannel turns an Emitter channel into the routed topic or filter:
// "a/b/" -> "a/b" (publish) or "a/b/#" (subscribe); "a/#/" -> "a/#".
func emitterChannel(ch string, isFilter bool) (string, error) {
	if !strings.HasSuffix(ch, "/") || ch == "/" {
		return "", errEmitterChannel
	}
	trimmed := ch[:len(ch)-1]
	for _, level := range strings.Split(trimmed, "/") {
		if level == "" {
			return "", errors.New("empty level in channel " + strconv.Quote(ch))
		}
	}
	if !isFilter {
		return trimmed, nil
	}
	if trimmed == "#" || strings.HasSuffix(trimmed, "/#") {
		return trimmed, nil
	}
	return trimmed + "/#", nil
}

// looksLikeKey reports whether a first level is a channel key: a JWT, three
// base64url parts joined by '.'. No MQTT topic level in real use has that
// shape, and Emitter SDKs put the key exactly there.
func looksLikeKey(s string) bool {
	if len(s) < 20 || strings.Count(s, ".") != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Emitter accepts option dates only in [2018, 2066] (emitter.md §2).
const (
	minOptionTime = 1514764800
	maxOptionTime = 3029529600
)

func parseOptions(s string) (topicOptions, error) {
	o := topicOptions{}
	if s == "" {
		return o, nil
	}
	for _, pair := range strings.Split(s, "&") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" || v == "" {
			return o, errBadOptions
		}
		n, err := strconv.ParseInt(v, 10, 64)
		switch k {
		case "ttl":
			if err != nil || n < 0 {
				return o, errors.New("ttl must be a number of seconds >= 0")
			}
			o.ttl = n
		case "last":
			if err != nil || n < 0 || n > 1<<20 {
				return o, errors.New("last must be a number >= 0")
			}
			o.last, o.hasLast = int(n), true
		case "me":
			o.noEcho = v == "0"
		case "from", "until":
			if err != nil {
				return o, errors.New(k + " must be a unix time in seconds")
			}
			if n < minOptionTime || n > maxOptionTime {
				continue // Emitter ignores out-of-range dates
			}
			o.hasRange = true
			if k == "from" {
				o.from = n
			} else {
				o.until = n
			}
		}
		// Unknown options (the SDKs send req=) are ignored, as Emitter does.
	}
	return o, nil
}
