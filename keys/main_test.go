package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Tests run concurrent Verify/SetSecrets and Revoke/IsRevoked; make sure
	// none of them leaves a goroutine behind.
	goleak.VerifyTestMain(m)
}

// testNow is a fixed clock so exp/nbf tests never depend on wall time.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// testSecret is a deterministic 32-byte secret with the given kid.
func testSecret(id string, fill byte) Secret {
	key := make([]byte, MinSecretLen)
	for i := range key {
		key[i] = fill + byte(i)
	}
	return Secret{ID: id, Key: key}
}

func newTestKeyring(t testing.TB, opts KeyringOptions, secrets ...Secret) *Keyring {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	if len(secrets) == 0 {
		secrets = []Secret{testSecret("k1", 1)}
	}
	k, err := NewKeyring(opts, secrets...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

var b64 = base64.RawURLEncoding

// craft builds a token from raw header and payload JSON, HMAC-SHA256-signed
// with key, whatever the header claims: the way an attacker would.
func craft(header, payload string, key []byte) string {
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + b64.EncodeToString(mac.Sum(nil))
}
