package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

const (
	// MinSecretLen is the shortest secret accepted without
	// KeyringOptions.AllowShortSecret: an HS256 key must be at least as long
	// as the SHA-256 output (RFC 7518 §3.2).
	MinSecretLen = 32
	// maxSecretLen bounds parsing; HMAC hashes longer keys down anyway.
	maxSecretLen = 1024
	// maxKeyIDLen bounds the kid, which travels in every token header.
	maxKeyIDLen = 64

	// SecretFileName is the secret's file in the data directory.
	SecretFileName = "secret"

	// secretPrefix starts the text form of an encoded secret; any other text
	// is taken as a raw Eventhub JWT_SECRET.
	secretPrefix = "pubsub.v1."
)

// keyIDEncoding spells kids in lower-case base32: short, URL- and
// shell-safe, and unambiguous when read aloud.
var keyIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Secret is one HMAC secret of a Keyring. ID is the kid a token's header
// carries so a verifier picks the right secret while several are active.
//
// The key never appears in String, %v, %+v, %#v, %d or slog output; only
// Encode and MarshalText reveal it, for writing it where it is meant to go.
type Secret struct {
	ID  string // kid: 1-64 bytes of [A-Za-z0-9_-]
	Key []byte // HMAC key; at least MinSecretLen bytes unless migrating
}

// GenerateSecret returns a fresh secret: MinSecretLen bytes from crypto/rand
// and a random 8-letter kid.
func GenerateSecret() (Secret, error) {
	key := make([]byte, MinSecretLen)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("keys: generate secret: %w", err)
	}
	var id [5]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Secret{}, fmt.Errorf("keys: generate secret id: %w", err)
	}
	return Secret{ID: keyIDEncoding.EncodeToString(id[:]), Key: key}, nil
}

// ParseSecret reads a secret from its text form, as found in the config
// `secret`, an environment variable or the secret file:
//
//   - "pubsub.v1.<kid>.<key>" with the key in unpadded base64url: the form
//     Encode writes.
//   - anything else: a raw Eventhub JWT_SECRET, whose bytes are the HMAC key
//     exactly as Eventhub uses them, so its existing tokens keep verifying.
//     Its kid is derived from the key (see derivedKeyID), so it is stable
//     across restarts without being stored.
//
// Length is not checked here but by NewKeyring, which refuses a secret
// shorter than MinSecretLen unless migration is allowed; Validate reports
// it too. So every secret ParseSecret returns survives Encode and back.
// Surrounding whitespace is part of a raw secret and is not trimmed.
func ParseSecret(text string) (Secret, error) {
	if text == "" {
		return Secret{}, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	if len(text) > maxSecretLen*2 {
		return Secret{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidSecret, maxSecretLen*2)
	}
	encoded, ok := strings.CutPrefix(text, secretPrefix)
	if !ok {
		s := Secret{Key: []byte(text)}
		s.ID = derivedKeyID(s.Key)
		if err := s.validate(true); err != nil {
			return Secret{}, err
		}
		return s, nil
	}
	id, key64, ok := strings.Cut(encoded, ".")
	if !ok {
		return Secret{}, fmt.Errorf("%w: want %s<kid>.<base64url key>", ErrInvalidSecret, secretPrefix)
	}
	key, err := base64.RawURLEncoding.Strict().DecodeString(key64)
	if err != nil {
		return Secret{}, fmt.Errorf("%w: key is not unpadded base64url", ErrInvalidSecret)
	}
	s := Secret{ID: id, Key: key}
	if err := s.validate(true); err != nil {
		return Secret{}, err
	}
	return s, nil
}

// derivedKeyID names a raw secret by a hash of it. Eight base32 letters (40
// bits) of SHA-256 reveal nothing usable about a strong key, and for a weak
// legacy one no more than any token it signed already does.
func derivedKeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("pubsub key id\x00"))
	h.Write(key)
	return keyIDEncoding.EncodeToString(h.Sum(nil)[:5])
}

// Validate reports whether s can be used by a Keyring. A short key yields an
// error wrapping ErrSecretTooShort, which a caller migrating an Eventhub
// secret may treat as a warning (see KeyringOptions.AllowShortSecret).
func (s Secret) Validate() error { return s.validate(false) }

// validate checks s; allowShort lets a short key through.
func (s Secret) validate(allowShort bool) error {
	if !validKeyID(s.ID) {
		return fmt.Errorf("%w: id must be 1-%d bytes of [A-Za-z0-9_-]", ErrInvalidSecret, maxKeyIDLen)
	}
	switch {
	case len(s.Key) == 0:
		return fmt.Errorf("%w: secret %s has an empty key", ErrInvalidSecret, s.ID)
	case len(s.Key) > maxSecretLen:
		return fmt.Errorf("%w: secret %s is longer than %d bytes", ErrInvalidSecret, s.ID, maxSecretLen)
	case len(s.Key) < MinSecretLen && !allowShort:
		return fmt.Errorf("%w: secret %s has %d bytes; make a new one with `pubsub keygen secret`", ErrSecretTooShort, s.ID, len(s.Key))
	}
	return nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Encode returns the text form ParseSecret reads back: it reveals the key.
func (s Secret) Encode() string {
	return secretPrefix + s.ID + "." + base64.RawURLEncoding.EncodeToString(s.Key)
}

// MarshalText implements encoding.TextMarshaler with Encode, so a secret can
// be written to a config file deliberately.
func (s Secret) MarshalText() ([]byte, error) {
	if err := s.validate(true); err != nil {
		return nil, err
	}
	return []byte(s.Encode()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseSecret, so
// config decoders (JSON, YAML) read a secret field directly.
func (s *Secret) UnmarshalText(text []byte) error {
	parsed, err := ParseSecret(string(text))
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// String names the secret by its kid only.
func (s Secret) String() string { return "secret(" + s.ID + ")" }

// GoString keeps %#v from printing the key.
func (s Secret) GoString() string { return `keys.Secret{ID:"` + s.ID + `", Key:<redacted>}` }

// Format keeps every fmt verb (%x and %d included) from printing the key.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue implements slog.LogValuer: a logged secret shows its kid only.
func (s Secret) LogValue() slog.Value { return slog.GroupValue(slog.String("kid", s.ID)) }

// maxSecretFileLen bounds the read of the secret file.
const maxSecretFileLen = 8 << 10

// LoadOrCreateSecretFile returns the secret stored in dataDir/secret,
// creating the directory (0700) and the file (0600) with a fresh secret on
// first start, in which case created is true. The file is published with a
// hard link from a synced temp file, so a crash never leaves a torn secret
// and two nodes starting on one data dir agree on the winner's secret.
//
// An existing file is never overwritten. It may hold the encoded form or a
// raw secret (a trailing newline and a UTF-8 BOM are ignored; reliability
// case I7); an empty file is an error, not a reason to make a new secret
// (I9). On Unix a file readable or writable by group or others is refused,
// as ssh refuses such private keys: its holder could mint master keys.
func LoadOrCreateSecretFile(dataDir string) (s Secret, created bool, err error) {
	if dataDir == "" {
		return Secret{}, false, fmt.Errorf("%w: no data directory", ErrInvalidSecret)
	}
	if err := os.MkdirAll(dataDir, dirMode); err != nil {
		return Secret{}, false, fmt.Errorf("keys: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, SecretFileName)
	s, err = readSecretFile(path)
	if err == nil || !isNotExist(err) {
		return s, false, err
	}

	fresh, err := GenerateSecret()
	if err != nil {
		return Secret{}, false, err
	}
	tmp, err := writeTemp(dataDir, SecretFileName, []byte(fresh.Encode()+"\n"))
	if err != nil {
		return Secret{}, false, fmt.Errorf("keys: write secret file: %w", err)
	}
	// Link, unlike rename, fails when the target exists: another process
	// that won the race keeps its secret and we read it below.
	linkErr := os.Link(tmp, path)
	_ = os.Remove(tmp)
	switch {
	case linkErr == nil:
		if err := syncDir(dataDir); err != nil {
			return Secret{}, false, fmt.Errorf("keys: sync data directory: %w", err)
		}
		return fresh, true, nil
	case errors.Is(linkErr, os.ErrExist):
		s, err = readSecretFile(path)
		return s, false, err
	default:
		return Secret{}, false, fmt.Errorf("keys: create secret file: %w", linkErr)
	}
}

func readSecretFile(path string) (Secret, error) {
	data, info, err := readFileLimited(path, maxSecretFileLen)
	if err != nil {
		if isNotExist(err) {
			return Secret{}, err
		}
		return Secret{}, fmt.Errorf("keys: read secret file: %w", err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return Secret{}, fmt.Errorf("%w: %s is accessible by group or others (mode %04o); run chmod 600 on it",
			ErrInvalidSecret, path, info.Mode().Perm())
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	data = bytes.TrimRight(data, "\r\n")
	if len(data) == 0 {
		return Secret{}, fmt.Errorf("%w: %s is empty; delete it to have a new secret made", ErrInvalidSecret, path)
	}
	s, err := ParseSecret(string(data))
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
