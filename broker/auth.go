package broker

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// Access control (DESIGN §5, docs/keys.md). A key can arrive three ways on
// MQTT: the CONNECT password (for the whole connection), the first level of
// an Emitter-dialect topic (for that one request), and nothing at all, in
// which case nothing is allowed unless the node runs with no_auth.

// setupKeys loads the secrets and revocation list before anything is bound.
// Secret sources, first match wins: config `secret` (PUBSUB_SECRET), then
// Eventhub's JWT_SECRET (keys.eventhub_secret, allowed short for migration),
// then DATA_DIR/secret, created on first start.
func (s *Server) setupKeys() error {
	var secrets []keys.Secret
	allowShort := false
	switch {
	case s.cfg.Secret != "":
		sec, err := keys.ParseSecret(s.cfg.Secret)
		if err != nil {
			return &ConfigError{Key: "secret", Err: err}
		}
		secrets = append(secrets, sec)
	case s.cfg.Keys.EventhubSecret != "":
		sec, err := keys.ParseSecret(s.cfg.Keys.EventhubSecret)
		if err != nil {
			return &ConfigError{Key: "keys.eventhub_secret", Err: err}
		}
		secrets = append(secrets, sec)
		allowShort = true
	default:
		sec, created, err := keys.LoadOrCreateSecretFile(s.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("data dir secret: %w", err)
		}
		secrets = append(secrets, sec)
		s.secretCreated = created
	}
	for i, text := range s.cfg.Keys.Secrets {
		sec, err := keys.ParseSecret(text)
		if err != nil {
			return &ConfigError{Key: fmt.Sprintf("keys.secrets[%d]", i), Err: err}
		}
		secrets = append(secrets, sec)
	}
	rev, err := keys.OpenRevocations(filepath.Join(s.cfg.DataDir, keys.RevocationsFileName))
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	ring, err := keys.NewKeyring(keys.KeyringOptions{
		RequireExp:       s.cfg.Keys.RequireExp,
		Leeway:           5 * time.Second,
		AllowShortSecret: allowShort,
		Revocations:      rev,
	}, secrets...)
	if err != nil {
		if errors.Is(err, keys.ErrSecretTooShort) {
			return &ConfigError{Key: "secret", Err: fmt.Errorf("%w: make one with 'pubsub keygen secret'", err)}
		}
		return err
	}
	for _, id := range ring.ShortSecretIDs() {
		s.log.Warn("the Eventhub JWT_SECRET is shorter than 32 bytes; it is accepted for migration only. "+
			"Rotate without breaking clients: add a strong secret first (secret: <pubsub keygen secret>, keys.secrets: [old]), "+
			"re-issue keys, then drop the old one", "kid", id)
	}
	s.keyring, s.revocations = ring, rev
	return nil
}

// Keyring is the node's keyring (for keygen and tests).
func (s *Server) Keyring() *keys.Keyring { return s.keyring }

// FreshMasterKey mints a master key when this start created the node's
// secret, so `pubsub serve` can print it once; "" otherwise.
func (s *Server) FreshMasterKey() (string, error) {
	if !s.secretCreated {
		return "", nil
	}
	c := keys.Claims{Subject: "master", Perm: keys.PermMaster.String(), Read: []string{"#"}, Write: []string{"#"}}
	if s.cfg.Keys.RequireExp {
		c.ExpiresAt = jwtTime(time.Now().Add(365 * 24 * time.Hour))
	}
	return s.keyring.Sign(c)
}

// verifyKey checks a key presented by c, caching good ones per connection:
// verifying a JWT costs tens of microseconds, checking expiry and the
// revocation list on a cached one costs nanoseconds.
func (c *conn) verifyKey(token string) (*keys.Claims, error) {
	if cl, ok := c.keyCache[token]; ok {
		if err := c.srv.stillValid(cl); err != nil {
			delete(c.keyCache, token)
			return nil, err
		}
		return cl, nil
	}
	cl, err := c.srv.keyring.Verify(token)
	if err != nil {
		return nil, err
	}
	if c.keyCache == nil || len(c.keyCache) >= 16 {
		c.keyCache = make(map[string]*keys.Claims, 4)
	}
	c.keyCache[token] = cl
	return cl, nil
}

// stillValid re-checks the parts of a verified key that change with time.
func (s *Server) stillValid(cl *keys.Claims) error {
	if cl.ExpiresAt != nil && time.Now().After(cl.ExpiresAt.Time.Add(5*time.Second)) {
		return keys.ErrExpired
	}
	if cl.ID != "" && s.revocations.IsRevoked(cl.ID) {
		return keys.ErrRevoked
	}
	return nil
}

// bytesView reads b as a string without copying, for calls that neither keep
// nor modify it (the key checks), so authorising a PUBLISH does not allocate.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// canPublish reports whether claims allow publishing to topic.
func (s *Server) canPublish(cl *keys.Claims, t []byte) bool {
	if s.cfg.NoAuth {
		return true
	}
	return cl != nil && cl.CanPublish(bytesView(t))
}

// canSubscribe reports whether claims allow subscribing to filter; a shared
// subscription is judged by its inner filter.
func (s *Server) canSubscribe(cl *keys.Claims, filter string) bool {
	if s.cfg.NoAuth {
		return true
	}
	if cl == nil {
		return false
	}
	if _, inner, ok := topic.SplitShared(filter); ok {
		filter = inner
	}
	return cl.CanSubscribe(filter)
}

// keyRef remembers which key granted an Emitter-dialect subscription, so it
// can end when that key expires or is revoked (E8).
type keyRef struct {
	jti     string
	expires time.Time // zero: never
}

func refOf(cl *keys.Claims) keyRef {
	if cl == nil {
		return keyRef{}
	}
	r := keyRef{jti: cl.ID}
	if cl.ExpiresAt != nil {
		r.expires = cl.ExpiresAt.Time
	}
	return r
}

// Revoke revokes a key id node-wide: it is persisted, and connections and
// subscriptions that rest on it end at once (E8).
func (s *Server) Revoke(jti string, until time.Time) error {
	if err := s.revocations.Revoke(jti, until); err != nil {
		return err
	}
	s.enforceKeys()
	s.spreadRevocation(jti, until, true)
	return nil
}

// Unrevoke lifts a revocation node-wide and, in a cluster, everywhere.
func (s *Server) Unrevoke(jti string) error {
	if err := s.revocations.Unrevoke(jti); err != nil {
		return err
	}
	s.spreadRevocation(jti, time.Time{}, false)
	return nil
}

// enforceKeys ends connections whose CONNECT key expired or was revoked and
// subscriptions whose key did. It runs every second and after a revocation.
func (s *Server) enforceKeys() {
	now := time.Now()
	s.conns.Range(func(k, _ any) bool {
		c := k.(*conn)
		if cl := c.claims.Load(); cl != nil && s.stillValid(cl) != nil {
			c.closeAs(reasonKeyExpired)
		}
		return true
	})
	s.presence.dropExpired(now, s.revocations.IsRevoked)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.dropExpiredSubs(now)
	}
}

// dropExpiredSubs removes subscriptions granted by a key that has expired or
// been revoked since.
func (sess *session) dropExpiredSubs(now time.Time) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if len(sess.keyed) == 0 {
		return
	}
	for f, ref := range sess.keyed {
		expired := !ref.expires.IsZero() && now.After(ref.expires.Add(5*time.Second))
		if expired || (ref.jti != "" && sess.srv.revocations.IsRevoked(ref.jti)) {
			delete(sess.keyed, f)
			delete(sess.subs, f)
			sess.srv.trie.Unsubscribe(f, sess)
			sess.srv.presence.notify(sess.conn.Load(), f, presenceUnsubscribe)
		}
	}
}

// restrictTo narrows a persistent session that a new connection resumes to
// what that connection's key allows (E10): the session outlives the key it
// was built under, and resuming it must not give the new connection more
// than its own key grants. Subscriptions the key does not cover are
// dropped, except those made with an Emitter topic key, which carry their
// own key and end with it (dropExpiredSubs). Messages waiting for the
// client (queued or unacknowledged) go too unless a kept subscription
// matches their topic: they were routed under the old key.
// The caller holds srv.mu; takes sess.mu (lock order in LOCKS.md).
func (sess *session) restrictTo(cl *keys.Claims) {
	s := sess.srv
	if s.cfg.NoAuth {
		return
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	droppedSubs := 0
	for f := range sess.subs {
		if _, keyed := sess.keyed[f]; keyed || s.canSubscribe(cl, f) {
			continue
		}
		delete(sess.subs, f)
		s.trie.Unsubscribe(f, sess)
		s.presence.notify(sess.conn.Load(), f, presenceUnsubscribe)
		droppedSubs++
	}
	if droppedSubs == 0 {
		// Every message waiting was routed through a subscription that
		// is still allowed.
		return
	}
	readable := func(m *outbound) bool {
		if m.released {
			return true // only PUBREL is left to send: no message
		}
		t := outboundTopic(m.pkt)
		// Emitter-dialect deliveries carry the channel's trailing '/'.
		trimmed := t
		if n := len(t); n > 1 && t[n-1] == '/' {
			trimmed = t[:n-1]
		}
		for f := range sess.subs {
			if topic.Matches(f, t) || topic.Matches(f, trimmed) {
				return true
			}
		}
		return false
	}
	before := len(sess.inflight) + len(sess.queue)
	sess.inflight = slices.DeleteFunc(sess.inflight, func(m *outbound) bool { return !readable(m) })
	sess.queue = slices.DeleteFunc(sess.queue, func(m *outbound) bool { return !readable(m) })
	s.log.Info("resumed session narrowed to the new connection's key", "client_id", sess.id,
		"subscriptions_dropped", droppedSubs, "messages_dropped", before-len(sess.inflight)-len(sess.queue))
}

// outboundTopic returns the topic of an encoded PUBLISH; nil if pkt is not
// one. The packet id may still be 0 (queued), so DecodePublish won't do.
func outboundTopic(pkt []byte) []byte {
	h, err := mqtt.ParseFixedHeader(pkt, 0)
	if err != nil || len(pkt) < h.Size+2 {
		return nil
	}
	start := h.Size + 2
	end := start + (int(pkt[h.Size])<<8 | int(pkt[h.Size+1]))
	if end > len(pkt) {
		return nil
	}
	return pkt[start:end]
}

// revokedKeyClaims reads the claims of a token Keyring.Verify refused with
// ErrRevoked. Revocation is Verify's last check, after the signature and
// the times, so the token is known genuine and its claims can be read
// without verifying them again.
func revokedKeyClaims(token string) (*keys.Claims, error) {
	var cl keys.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

// keyEnforcer runs enforceKeys every second: one goroutine per node, not a
// timer per connection.
func (s *Server) keyEnforcer() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case now := <-t.C:
			s.enforceKeys()
			if now.Sub(lastPrune) >= time.Hour {
				// A revoked key that has expired anyway needs no entry: keep
				// revoked.json from growing without bound.
				if n, err := s.revocations.Prune(now); err != nil {
					s.log.Warn("revocation list not pruned", "err", err)
				} else if n > 0 {
					s.log.Info("pruned expired revocations", "removed", n)
				}
				lastPrune = now
			}
		case <-s.done:
			return
		}
	}
}

// newConnID makes the 26-character id the Emitter `me` request returns and
// extend keys build private channels from.
func newConnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

func jwtTime(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }
