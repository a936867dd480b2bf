package keys

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkVerify(b *testing.B) {
	secrets := []Secret{testSecret("k1", 1), testSecret("k2", 2), testSecret("k3", 3)}
	k := newTestKeyring(b, KeyringOptions{}, secrets...)
	claims := Claims{Subject: "alice", Read: []string{"chat/#"}, Write: []string{"chat/room1"}, Perm: "rwslp",
		ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour))}
	withKid, err := k.Sign(claims)
	if err != nil {
		b.Fatal(err)
	}
	// Eventhub style: no kid, signed by the last of three secrets.
	noKid := craft(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"alice","read":["chat/#"],"write":["chat/room1"]}`, secrets[2].Key)
	cases := []struct {
		name, token string
		ok          bool
	}{
		{"kid", withKid, true},
		{"no-kid-3-secrets", noKid, true},
		{"bad-signature", withKid[:len(withKid)-2] + "AA", false},
		{"too-large", strings.Repeat(".", 100_000), false},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Verify(bc.token); (err == nil) != bc.ok {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	k := newTestKeyring(b, KeyringOptions{})
	claims := Claims{Subject: "alice", Read: []string{"chat/#"}, Write: []string{"chat/room1"}, Perm: "rwslp"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(claims); err != nil {
			b.Fatal(err)
		}
	}
}

var benchClaims = Claims{
	Read:  []string{"tenant/a/#", "tenant/b/+/status", "shared/#"},
	Write: []string{"tenant/a/in/#", "tenant/b/+/cmd", "devices/+/telemetry/#"},
	Perm:  "rwslp",
}

func BenchmarkCanPublish(b *testing.B) {
	cases := map[string]string{
		"last-entry": "devices/d42/telemetry/temp/c",
		"denied":     "devices/d42/other/temp",
	}
	for name, topic := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchClaims.CanPublish(topic)
			}
		})
	}
}

func BenchmarkCanSubscribe(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchClaims.CanSubscribe("tenant/b/+/status")
	}
}

func BenchmarkIsRevoked(b *testing.B) {
	r, err := OpenRevocations(b.TempDir() + "/" + RevocationsFileName)
	if err != nil {
		b.Fatal(err)
	}
	list := make([]Revocation, 10_000)
	for i := range list {
		list[i] = Revocation{ID: strings.Repeat("x", i%40) + string(rune('a'+i%26)) + string(rune(i))}
	}
	if _, err := r.Merge(list); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.IsRevoked("not-revoked-jti-0123456789")
	}
}

// TestAuthorisationDoesNotAllocate pins the hot-path rule that the
// per-message checks never allocate (DESIGN §3).
func TestAuthorisationDoesNotAllocate(t *testing.T) {
	checks := map[string]func(){
		"CanPublish":         func() { benchClaims.CanPublish("devices/d42/telemetry/temp/c") },
		"CanPublish denied":  func() { benchClaims.CanPublish("devices/d42/other") },
		"CanSubscribe":       func() { benchClaims.CanSubscribe("tenant/b/+/status") },
		"CanSubscribe share": func() { benchClaims.CanSubscribe("$share/g/tenant/a/x") },
		"CanStore":           func() { benchClaims.CanStore("tenant/a/in/x") },
		"CanLoad":            func() { benchClaims.CanLoad("shared/#") },
		"Perms eventhub":     func() { (&Claims{Read: []string{"a"}}).Perms() },
		"Perms bad":          func() { (&Claims{Perm: "rwz"}).Perms() },
	}
	for name, f := range checks {
		if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
			t.Errorf("%s: %v allocs", name, allocs)
		}
	}
}
