package keys

import (
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the payload of a channel key. read, write and sub are Eventhub's
// claims, accepted as Eventhub mints them (eventhub.md §4); perm, jti and the
// registered times are pubsub's (DESIGN §5).
type Claims struct {
	// Subject identifies the holder; it becomes a message's origin. It is
	// only a label: it never takes part in authorisation, so a subject such
	// as "#" or "a/#" widens nothing (reliability case E9, CVE-2017-7650).
	Subject string `json:"sub,omitempty"`
	// Read lists MQTT filters the key may subscribe to and load history of.
	Read []string `json:"read,omitempty"`
	// Write lists MQTT filters the key may publish to (and store under).
	Write []string `json:"write,omitempty"`
	// Perm holds permission letters (see Perm). Empty marks an Eventhub
	// token, which carries only read and write: a non-empty Read then grants
	// subscribe and history ("rl") and a non-empty Write grants publish and
	// store ("ws"), which is what Eventhub lets such a token do.
	Perm string `json:"perm,omitempty"`
	// RateLimits is Eventhub's per-token publish limit list; the broker
	// applies it when Subject is set (eventhub.md §4).
	RateLimits []RateLimit `json:"rlimit,omitempty"`

	ExpiresAt *jwt.NumericDate `json:"exp,omitempty"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	// ID (jti) names the token for revocation. Sign fills in a random one.
	ID string `json:"jti,omitempty"`

	// KeyID is the kid header of a verified token: which secret signed it.
	// Empty for tokens without a kid (Eventhub's). It is not a claim.
	KeyID string `json:"-"`
}

// RateLimit is one entry of Eventhub's rlimit claim: at most Max publishes
// per Interval seconds to topics matching Topic; 0 in either disables it.
type RateLimit struct {
	Topic    string `json:"topic"`
	Interval int64  `json:"interval"`
	Max      int64  `json:"max"`
}

// Claims implements jwt.Claims; pubsub uses no iss or aud.
var _ jwt.Claims = (*Claims)(nil)

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }

// GetNotBefore implements jwt.Claims.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore, nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt, nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return "", nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return nil, nil }

// Perms returns the permissions the claims grant. An empty Perm is read the
// Eventhub way (see Claims.Perm); a Perm with an unknown letter grants
// nothing, so a malformed key fails closed.
func (c *Claims) Perms() Perm {
	if c.Perm == "" {
		var p Perm
		if len(c.Read) > 0 {
			p |= PermRead | PermLoad
		}
		if len(c.Write) > 0 {
			p |= PermWrite | PermStore
		}
		return p
	}
	p, _, ok := parsePerm(c.Perm)
	if !ok {
		return 0
	}
	return p
}

// IsMaster reports whether the key holds 'm': it may do anything on any
// topic, including $SYS, and mint keys for any channel.
func (c *Claims) IsMaster() bool { return c.Perms().Has(PermMaster) }

// allows reports whether the key holds need and is not an extend key. A key
// with 'e' can only derive private sub-channel keys: if it could also read
// its parent channel it could read every private channel derived from it
// (Emitter issue #261, reliability case E7). Master overrides.
func (c *Claims) allows(need Perm) (granted, master bool) {
	p := c.Perms()
	if p.Has(PermMaster) {
		return true, true
	}
	return p.Has(need) && !p.Has(PermExtend), false
}

// CanSubscribe reports whether the key may subscribe to filter: it holds 'r'
// and one of Read covers every topic filter can match (segment-exact,
// case-sensitive; a key for "a/b/#" does not cover "a", "a/bc/#", "A/b/#",
// "a/+/#" or "#"). A shared subscription "$share/GROUP/F" is allowed when
// either F or the literal filter is covered. Coverage is per entry: two
// entries that only together cover filter do not allow it.
func (c *Claims) CanSubscribe(filter string) bool {
	granted, master := c.allows(PermRead)
	return granted && (master || readCovers(c.Read, filter))
}

// CanLoad reports whether the key may read stored history for filter:
// CanSubscribe's coverage by Read, and 'l'.
func (c *Claims) CanLoad(filter string) bool {
	granted, master := c.allows(PermLoad)
	return granted && (master || readCovers(c.Read, filter))
}

// CanPresence reports whether the key may query or watch presence on filter:
// CanSubscribe's coverage by Read, and 'p'.
func (c *Claims) CanPresence(filter string) bool {
	granted, master := c.allows(PermPresence)
	return granted && (master || readCovers(c.Read, filter))
}

// CanPublish reports whether the key may publish to topic: it holds 'w' and
// topic, a concrete topic name without wildcards [MQTT-3.3.2-2], is matched
// by one of Write. It does not allocate.
func (c *Claims) CanPublish(topic string) bool {
	granted, master := c.allows(PermWrite)
	return granted && (master || writeCovers(c.Write, topic))
}

// CanStore reports whether a publish to topic may be stored (ttl or retain):
// CanPublish's coverage by Write, and 's'.
func (c *Claims) CanStore(topic string) bool {
	granted, master := c.allows(PermStore)
	return granted && (master || writeCovers(c.Write, topic))
}

// CanExtend reports whether the key may derive a private key for filter: it
// holds 'e' (or 'm') and one of Read or Write covers filter.
func (c *Claims) CanExtend(filter string) bool {
	p := c.Perms()
	if p.Has(PermMaster) {
		return validRequest(filter, true)
	}
	return p.Has(PermExtend) && validRequest(filter, true) &&
		(anyCovers(c.Read, filter) || anyCovers(c.Write, filter))
}

// Extend derives the claims of a private key for filter (Emitter's
// "keygen with an extend key", emitter.md §3): the child may read filter if
// the parent's Read covers it and write it if the parent's Write covers it,
// gets the requested permissions that the parent also holds minus 'e' and
// 'm', keeps the parent's subject, and never outlives the parent: a zero or
// later expiresAt is capped at the parent's exp. The caller signs the result.
func (c *Claims) Extend(filter string, requested Perm, expiresAt time.Time) (Claims, error) {
	if !c.CanExtend(filter) {
		return Claims{}, fmt.Errorf("%w: key cannot extend to this channel", ErrForbidden)
	}
	parent := c.Perms()
	if parent.Has(PermMaster) {
		parent = PermAll
	}
	child := Claims{
		Subject: c.Subject,
		Perm:    (parent & requested &^ (PermExtend | PermMaster)).String(),
	}
	if c.IsMaster() || anyCovers(c.Read, filter) {
		child.Read = []string{filter}
	}
	if c.IsMaster() || anyCovers(c.Write, filter) {
		child.Write = []string{filter}
	}
	if child.Perm == "" {
		return Claims{}, fmt.Errorf("%w: no requested permission is held by the key", ErrForbidden)
	}
	switch {
	case c.ExpiresAt != nil && (expiresAt.IsZero() || expiresAt.After(c.ExpiresAt.Time)):
		child.ExpiresAt = jwt.NewNumericDate(c.ExpiresAt.Time)
	case !expiresAt.IsZero():
		child.ExpiresAt = jwt.NewNumericDate(expiresAt)
	}
	return child, nil
}

// readCovers is the read-side coverage test: filter is valid and covered by
// an entry, or is a shared subscription whose inner filter is.
func readCovers(allowed []string, filter string) bool {
	if !validRequest(filter, true) {
		return false
	}
	if anyCovers(allowed, filter) {
		return true
	}
	inner, ok := sharedFilter(filter)
	return ok && anyCovers(allowed, inner)
}

// writeCovers is the write-side test: topic is concrete and matched.
func writeCovers(allowed []string, topic string) bool {
	return validRequest(topic, false) && anyCovers(allowed, topic)
}

func anyCovers(allowed []string, requested string) bool {
	for _, a := range allowed {
		if covers(a, requested) {
			return true
		}
	}
	return false
}

// sharedFilter returns F from "$share/GROUP/F" (MQTT 5 §4.8.2, also used by
// Emitter). Joining a share group on F delivers a subset of what subscribing
// F does, so a key that may read F may join any group on it.
func sharedFilter(filter string) (string, bool) {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return "", false
	}
	group, inner, ok := strings.Cut(rest, "/")
	if !ok || group == "" || inner == "" || strings.ContainsAny(group, "+#") {
		return "", false
	}
	return inner, true
}

// check validates claims for Sign (strict: every filter must be valid) or
// for Verify (lenient like Eventhub: invalid read/write entries are dropped
// in place). Either way unknown permission letters are refused, and a
// non-master key must keep at least one filter, since it could do nothing.
func (c *Claims) check(strict bool) error {
	p, bad, ok := parsePerm(c.Perm)
	if !ok {
		return fmt.Errorf("%w: unknown permission letter %q", ErrInvalidClaims, bad)
	}
	var err error
	if c.Read, err = checkFilters(c.Read, strict); err != nil {
		return err
	}
	if c.Write, err = checkFilters(c.Write, strict); err != nil {
		return err
	}
	if !p.Has(PermMaster) && len(c.Read) == 0 && len(c.Write) == 0 {
		return fmt.Errorf("%w: no valid read or write filter", ErrInvalidClaims)
	}
	return nil
}

// checkFilters validates filters. Strict mode only reads them, because Sign
// gets the caller's slices; lenient mode compacts in place, which is safe
// because Verify owns the freshly decoded slices.
func checkFilters(filters []string, strict bool) ([]string, error) {
	if strict {
		for i, f := range filters {
			if !validAllowed(f) {
				return filters, fmt.Errorf("%w: entry %d is not a valid topic filter", ErrInvalidClaims, i)
			}
		}
		return filters, nil
	}
	kept := filters[:0]
	for _, f := range filters {
		if validAllowed(f) {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	return kept, nil
}
