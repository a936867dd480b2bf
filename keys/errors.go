package keys

import "errors"

// Verification failures. Each is a distinct sentinel so the broker can log a
// reason (never the token itself) and count rejections by cause. Verify wraps
// them with a short fixed description; test with errors.Is.
var (
	// ErrTooLarge: the token exceeds MaxTokenLen and was refused before any
	// decoding (CVE-2025-30204: splitting a huge token cost O(n) allocations).
	ErrTooLarge = errors.New("keys: token too large")
	// ErrMalformed: not three base64url segments of JSON, non-canonical
	// base64, a bad header (typ, crit) or claims of the wrong JSON type.
	ErrMalformed = errors.New("keys: token malformed")
	// ErrWrongAlgorithm: the header names an algorithm other than HS256,
	// including "none" (RFC 8725 §3.1, §2.1).
	ErrWrongAlgorithm = errors.New("keys: token algorithm not accepted")
	// ErrBadSignature: the HMAC does not verify with any active secret, or the
	// kid names a secret that is not (or no longer) active.
	ErrBadSignature = errors.New("keys: token signature invalid")
	// ErrExpired: exp is at or before now minus the leeway (RFC 7519 §4.1.4).
	ErrExpired = errors.New("keys: token expired")
	// ErrNotYetValid: nbf is after now plus the leeway (RFC 7519 §4.1.5).
	ErrNotYetValid = errors.New("keys: token not valid yet")
	// ErrMissingExp: the token has no exp and the keyring requires one.
	ErrMissingExp = errors.New("keys: token has no expiry")
	// ErrRevoked: the token's jti is on the revocation list.
	ErrRevoked = errors.New("keys: token revoked")
	// ErrInvalidClaims: the claims parse but make no sense: unknown
	// permission letters, or a non-master key with no usable read/write
	// filter (Eventhub refuses such tokens too).
	ErrInvalidClaims = errors.New("keys: token claims invalid")
)

// Configuration and input errors.
var (
	// ErrSecretTooShort: the secret has fewer than MinSecretLen bytes
	// (RFC 7518 §3.2: an HS256 key must be at least as long as the hash).
	ErrSecretTooShort = errors.New("keys: secret shorter than 32 bytes")
	// ErrInvalidSecret: the secret text or secret file cannot be used.
	ErrInvalidSecret = errors.New("keys: invalid secret")
	// ErrInvalidPerm: a permission string contains a letter outside "rwslpem".
	ErrInvalidPerm = errors.New("keys: invalid permission")
	// ErrInvalidChannel: an Emitter-style channel target is not valid.
	ErrInvalidChannel = errors.New("keys: invalid channel")
	// ErrForbidden: a key tried to derive a key it is not entitled to.
	ErrForbidden = errors.New("keys: not permitted")
	// ErrInvalidRevocations: the revocation file or an entry cannot be used.
	ErrInvalidRevocations = errors.New("keys: invalid revocation list")
)
