package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// MaxTokenLen caps a token before any decoding: a channel key is a few
	// hundred bytes, and golang-jwt's splitting cost O(n) allocations on
	// crafted input (CVE-2025-30204, reliability case E4).
	MaxTokenLen = 4096
	// MaxLeeway bounds the clock skew tolerated on exp and nbf.
	MaxLeeway = 5 * time.Second

	// algorithm is the only accepted "alg" (DESIGN §5; Eventhub accepts
	// only HS256 too). An exact list is what defeats alg "none" and the
	// public-key-as-HMAC-secret confusion (RFC 8725 §2.1, §3.1).
	algorithm = "HS256"
)

// validMethods is passed to golang-jwt on top of the header pre-check.
var validMethods = []string{algorithm}

// KeyringOptions tune verification. The zero value is Eventhub's behaviour:
// no leeway, exp optional, 32-byte secrets required.
type KeyringOptions struct {
	// RequireExp refuses tokens without exp (ErrMissingExp), and makes Sign
	// refuse to mint one. Off by default because Eventhub accepts them.
	RequireExp bool
	// Leeway is the clock skew allowed on exp and nbf, 0 to MaxLeeway.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AllowShortSecret admits secrets shorter than MinSecretLen, for an
	// existing Eventhub JWT_SECRET kept during migration. The caller should
	// warn about each of ShortSecretIDs.
	AllowShortSecret bool
	// Revocations, when set, is consulted by Verify (ErrRevoked).
	Revocations *Revocations
}

// Keyring signs and verifies channel keys with a set of active secrets. The
// first secret signs; every one of them verifies, so a secret is rotated
// without downtime by adding the new one first, waiting for old tokens to
// expire or be re-issued, then removing the old one (SetSecrets).
//
// A Keyring is safe for concurrent use.
type Keyring struct {
	opts    KeyringOptions
	parser  *jwt.Parser
	secrets atomic.Pointer[secretSet]
}

// secretSet is an immutable snapshot of the active secrets, swapped whole by
// SetSecrets so Verify never takes a lock.
type secretSet struct {
	signing Secret
	byID    map[string][]byte
	all     jwt.VerificationKeySet
	ids     []string
	short   []string
}

// NewKeyring returns a keyring over secrets, the first of which signs.
func NewKeyring(opts KeyringOptions, secrets ...Secret) (*Keyring, error) {
	if opts.Leeway < 0 || opts.Leeway > MaxLeeway {
		return nil, fmt.Errorf("keys: leeway %v outside 0..%v", opts.Leeway, MaxLeeway)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	parserOpts := []jwt.ParserOption{
		jwt.WithValidMethods(validMethods),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		// Canonical base64 only: otherwise flipping the last character of a
		// signature can change only its padding bits and still verify
		// (reliability case E3).
		jwt.WithStrictDecoding(),
	}
	if opts.RequireExp {
		parserOpts = append(parserOpts, jwt.WithExpirationRequired())
	}
	k := &Keyring{opts: opts, parser: jwt.NewParser(parserOpts...)}
	if err := k.SetSecrets(secrets...); err != nil {
		return nil, err
	}
	return k, nil
}

// SetSecrets replaces the active secrets atomically; the first one signs
// from now on. Tokens whose kid is no longer present stop verifying.
func (k *Keyring) SetSecrets(secrets ...Secret) error {
	if len(secrets) == 0 {
		return fmt.Errorf("%w: a keyring needs at least one secret", ErrInvalidSecret)
	}
	set := &secretSet{byID: make(map[string][]byte, len(secrets))}
	for _, s := range secrets {
		if err := s.validate(k.opts.AllowShortSecret); err != nil {
			return err
		}
		if _, dup := set.byID[s.ID]; dup {
			return fmt.Errorf("%w: two secrets share the id %s", ErrInvalidSecret, s.ID)
		}
		key := bytes.Clone(s.Key) // the caller may reuse its slice
		set.byID[s.ID] = key
		set.all.Keys = append(set.all.Keys, key)
		set.ids = append(set.ids, s.ID)
		if len(key) < MinSecretLen {
			set.short = append(set.short, s.ID)
		}
	}
	set.signing = Secret{ID: secrets[0].ID, Key: set.byID[secrets[0].ID]}
	k.secrets.Store(set)
	return nil
}

// KeyIDs returns the kids of the active secrets, the signing one first.
func (k *Keyring) KeyIDs() []string { return slices.Clone(k.secrets.Load().ids) }

// SigningKeyID returns the kid Sign puts in new tokens.
func (k *Keyring) SigningKeyID() string { return k.secrets.Load().signing.ID }

// ShortSecretIDs returns the kids of active secrets shorter than
// MinSecretLen (admitted by AllowShortSecret), for the caller to warn about.
func (k *Keyring) ShortSecretIDs() []string { return slices.Clone(k.secrets.Load().short) }

// Sign mints a token for c with the signing secret: header kid set, iat set
// to now when nil, and a random jti when c.ID is empty. Claims must be
// valid: known permission letters, valid filters, and at least one filter
// unless the key is master.
func (k *Keyring) Sign(c Claims) (string, error) {
	if err := c.check(true); err != nil {
		return "", err
	}
	if k.opts.RequireExp && c.ExpiresAt == nil {
		return "", fmt.Errorf("%w: this keyring requires exp", ErrMissingExp)
	}
	if c.IssuedAt == nil {
		c.IssuedAt = jwt.NewNumericDate(k.opts.Now())
	}
	if c.ID == "" {
		id, err := newTokenID()
		if err != nil {
			return "", err
		}
		c.ID = id
	}
	set := k.secrets.Load()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, &c)
	tok.Header["kid"] = set.signing.ID
	signed, err := tok.SignedString(set.signing.Key)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	if len(signed) > MaxTokenLen {
		return "", fmt.Errorf("%w: %d bytes would not verify; use fewer or shorter filters", ErrTooLarge, len(signed))
	}
	return signed, nil
}

// newTokenID returns a random jti: 128 bits, unpadded base64url.
func newTokenID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("keys: generate jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Verify checks token and returns its claims. In order: the length cap
// (before any decoding), the header (alg exactly HS256, typ JWT if present,
// no crit), the signature (the kid picks the secret; without a kid each
// active secret is tried, each compare constant-time via hmac.Equal), exp
// and nbf when present (exp required under RequireExp), the claims
// (unknown permission letters refused; invalid filters dropped as Eventhub
// does, and a non-master key left without any refused), then revocation.
//
// Errors wrap one of ErrTooLarge, ErrMalformed, ErrWrongAlgorithm,
// ErrBadSignature, ErrExpired, ErrNotYetValid, ErrMissingExp,
// ErrInvalidClaims or ErrRevoked, and never contain the token.
func (k *Keyring) Verify(token string) (*Claims, error) {
	if len(token) > MaxTokenLen {
		return nil, ErrTooLarge
	}
	kid, err := checkHeader(token)
	if err != nil {
		return nil, err
	}
	set := k.secrets.Load()
	var key any = set.all
	if kid != "" {
		secret, ok := set.byID[kid]
		if !ok {
			return nil, fmt.Errorf("%w: unknown key id", ErrBadSignature)
		}
		key = secret
	}
	claims := new(Claims)
	_, err = k.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil })
	if err != nil {
		return nil, verifyError(err)
	}
	if err := claims.check(false); err != nil {
		return nil, err
	}
	if k.opts.Revocations.IsRevoked(claims.ID) {
		return nil, ErrRevoked
	}
	claims.KeyID = kid
	return claims, nil
}

// checkHeader decodes the JOSE header ahead of golang-jwt, to report a
// wrong algorithm as such and to read the kid. Keys are matched exactly, as
// golang-jwt does (encoding/json would match struct fields ignoring case).
func checkHeader(token string) (kid string, err error) {
	seg, _, ok := strings.Cut(token, ".")
	if !ok {
		return "", fmt.Errorf("%w: not a JWT", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return "", fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw, &header); err != nil || header == nil {
		return "", fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	var alg string
	if json.Unmarshal(header["alg"], &alg) != nil || alg != algorithm {
		return "", ErrWrongAlgorithm
	}
	if _, ok := header["crit"]; ok {
		// RFC 7515 §4.1.11: extensions we do not implement must be refused.
		return "", fmt.Errorf("%w: unsupported critical header", ErrMalformed)
	}
	if v, ok := header["typ"]; ok {
		// Eventhub refuses a typ other than JWT (eventhub.md §4);
		// RFC 7519 §5.1 also allows the media type form.
		var typ string
		if json.Unmarshal(v, &typ) != nil || !(strings.EqualFold(typ, "JWT") || strings.EqualFold(typ, "application/jwt")) {
			return "", fmt.Errorf("%w: typ is not JWT", ErrMalformed)
		}
	}
	if v, ok := header["kid"]; ok {
		if json.Unmarshal(v, &kid) != nil {
			return "", fmt.Errorf("%w: kid is not a string", ErrMalformed)
		}
	}
	return kid, nil
}

// verifyError maps golang-jwt's joined errors to this package's sentinels,
// dropping its text (which may quote parts of the token).
func verifyError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: bad encoding or claim types", ErrMalformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrBadSignature
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrMissingExp
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: unverifiable", ErrMalformed)
	}
	return fmt.Errorf("%w: rejected", ErrMalformed)
}
