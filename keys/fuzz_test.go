package keys

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

var verifySentinels = []error{ErrTooLarge, ErrMalformed, ErrWrongAlgorithm, ErrBadSignature,
	ErrExpired, ErrNotYetValid, ErrMissingExp, ErrInvalidClaims, ErrRevoked}

// FuzzVerify: arbitrary tokens never panic, every refusal carries one of the
// sentinels, and whatever verifies is a token a legitimate signer made:
// within the cap, with claims that pass the checks.
func FuzzVerify(f *testing.F) {
	secret := testSecret("k1", 1)
	legacy, err := ParseSecret(eventhubFixtureSecret)
	if err != nil {
		f.Fatal(err)
	}
	k, err := NewKeyring(KeyringOptions{Now: fixedNow, AllowShortSecret: true, Leeway: time.Second}, secret, legacy)
	if err != nil {
		f.Fatal(err)
	}
	signed, err := k.Sign(Claims{Subject: "s", Read: []string{"a/#"}, Write: []string{"a/b"}, Perm: "rwsl"})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		signed,
		eventhubTokenWithExp,
		eventhubTokenWithRateLimits,
		eventhubTokenOtherSecret,
		craft(validHeader, payload(""), secret.Key),
		craft(`{"alg":"HS256"}`, `{"read":["a"],"perm":"m"}`, secret.Key),
		craft(`{"alg":"HS256","kid":"k1","typ":"jwt"}`, `{"read":["a#","b"],"exp":1}`, secret.Key),
		"eyJhbGciOiJub25lIn0.eyJyZWFkIjpbImEiXX0.",
		"", ".", "..", "...", "a.b.c", "eyJ.eyJ.eyJ",
		strings.Repeat(".", 100),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := k.Verify(token)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			for _, s := range verifySentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		if len(token) > MaxTokenLen {
			t.Fatal("a token over the cap verified")
		}
		if err := c.check(true); err != nil {
			t.Fatalf("verified claims fail the signing check: %v", err)
		}
		if !c.IsMaster() && len(c.Read)+len(c.Write) == 0 {
			t.Fatal("a key without filters verified")
		}
	})
}

// FuzzCovers: the level-walking subset test agrees with brute force over
// witness topics, in both directions.
func FuzzCovers(f *testing.F) {
	seeds := [][2]string{
		{"a/b/#", "a/b/c"}, {"a/b/#", "a/bc/#"}, {"a/+/c", "a/#"}, {"+/#", "#"},
		{"#", "$SYS/x"}, {"$SYS/#", "$SYS"}, {"a/#", "a"}, {"a/+", "a/#"},
		{"+/+", "+/#"}, {"a//b", "a/+/b"}, {"", "+"}, {"a/+/#", "a/#"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, allowed, requested string) {
		// Keep the brute force small: few, short levels.
		if len(allowed) > 24 || len(requested) > 24 ||
			strings.Count(allowed, "/") > 4 || strings.Count(requested, "/") > 4 ||
			!validAllowed(allowed) || !validRequest(requested, true) {
			return
		}
		got := covers(allowed, requested)
		if want := refCovers(allowed, requested); got != want {
			t.Fatalf("covers(%q, %q) = %v, brute force says %v", allowed, requested, got, want)
		}
		if validRequest(requested, false) && got != refMatch(allowed, requested) {
			t.Fatalf("covers(%q, topic %q) = %v disagrees with matching", allowed, requested, got)
		}
	})
}

func FuzzParsePerm(f *testing.F) {
	for _, s := range []string{"", "r", "rwslpem", "rwx", "RW", "é", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, letters string) {
		p, err := ParsePerm(letters)
		if err != nil {
			if !errors.Is(err, ErrInvalidPerm) || p != 0 {
				t.Fatalf("ParsePerm(%q) = %v, %v", letters, p, err)
			}
			return
		}
		if p&^PermAll != 0 {
			t.Fatalf("bits outside PermAll: %#x", uint16(p))
		}
		if back, err := ParsePerm(p.String()); err != nil || back != p {
			t.Fatalf("round trip of %q: %v %v", letters, back, err)
		}
	})
}

func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"", "eventhub_secret", testSecret("k", 1).Encode(), "pubsub.v1.", "pubsub.v1.a.", "pubsub.v1..AAAA", "pubsub.v1.a.===="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSecret(text)
		if err != nil {
			if !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if err := s.validate(true); err != nil {
			t.Fatalf("parsed secret is invalid: %v", err)
		}
		if errors.Is(s.Validate(), ErrSecretTooShort) != (len(s.Key) < MinSecretLen) {
			t.Fatal("Validate disagrees with the key length")
		}
		var back Secret
		encoded, err := s.MarshalText()
		if err == nil {
			err = back.UnmarshalText(encoded)
		}
		if err != nil || back.ID != s.ID || string(back.Key) != string(s.Key) {
			t.Fatalf("text round trip: %v", err)
		}
	})
}

func FuzzChannelFilter(f *testing.F) {
	for _, s := range []string{"a/", "a/b/", "a/#/", "#/", "a/+/c/", "", "/", "a//", "a/#/b/", "a/../"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, channel string) {
		filter, err := ChannelFilter(channel)
		if err != nil {
			if !errors.Is(err, ErrInvalidChannel) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !validAllowed(filter) || !strings.HasSuffix(filter, "#") {
			t.Fatalf("ChannelFilter(%q) = %q", channel, filter)
		}
		// The key for a channel covers the channel's own topic.
		if topic := strings.TrimSuffix(channel, "/"); validRequest(topic, true) && !covers(filter, topic) {
			t.Fatalf("filter %q does not cover its channel %q", filter, channel)
		}
	})
}

func FuzzDecodeRevocations(f *testing.F) {
	seed, err := encodeRevocations(map[string]time.Time{"a": {}, "b": time.Unix(1767225600, 0)})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(seed), "", "{}", `{"version":1,"revoked":null}`, `{"version":1,"revoked":[{"jti":"x","until":1e30}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeRevocations(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidRevocations) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		encoded, err := encodeRevocations(entries)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRevocations(encoded)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !maps.EqualFunc(entries, again, func(a, b time.Time) bool { return a.Equal(b) }) {
			t.Fatal(fmt.Sprintf("round trip changed the list: %v -> %v", entries, again))
		}
	})
}
