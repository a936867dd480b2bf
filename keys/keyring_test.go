package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const validHeader = `{"alg":"HS256","typ":"JWT","kid":"k1"}`

func payload(extra string) string {
	p := fmt.Sprintf(`{"sub":"alice","read":["a/#"],"write":["a/#"],"perm":"rw","jti":"t1","exp":%d`, testNow.Add(time.Hour).Unix())
	if extra != "" {
		p += "," + extra
	}
	return p + "}"
}

// flipLastPaddingBit changes the last character of a 32-byte signature to
// one that differs only in the two padding bits: a lenient decoder reads the
// same signature, so only strict decoding stops it (reliability case E3).
func flipLastPaddingBit(t *testing.T, token string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, token[len(token)-1])
	flipped := token[:len(token)-1] + string(alphabet[i^1])
	sig, sig2 := token[strings.LastIndexByte(token, '.')+1:], flipped[strings.LastIndexByte(flipped, '.')+1:]
	a, errA := b64.DecodeString(sig)
	b, errB := b64.DecodeString(sig2)
	if errA != nil || errB != nil || string(a) != string(b) {
		t.Fatalf("test premise: lenient decoding should not see the flip (%v, %v)", errA, errB)
	}
	return flipped
}

// flipLastSignificantBit changes a data bit held by the last character.
func flipLastSignificantBit(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[i^4])
}

func flipChar(token string, i int) string {
	c := token[i]
	r := byte('A')
	if c == 'A' {
		r = 'B'
	}
	return token[:i] + string(r) + token[i+1:]
}

// TestVerifyRejects covers reliability cases E1-E3 and malformed input.
func TestVerifyRejects(t *testing.T) {
	secret := testSecret("k1", 1)
	other := testSecret("k1", 99)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	edToken, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"read": []string{"a/#"}}).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"read": []string{"a/#"}}).SignedString(secret.Key)
	if err != nil {
		t.Fatal(err)
	}
	good := craft(validHeader, payload(""), secret.Key)
	past, future := testNow.Add(-time.Second).Unix(), testNow.Add(time.Minute).Unix()
	noneToken := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(payload(""))) + "."

	tests := []struct {
		name  string
		token string
		opts  KeyringOptions
		want  error
	}{
		// E1
		{"E1 alg none, empty signature", noneToken, KeyringOptions{}, ErrWrongAlgorithm},
		{"E1 alg None", craft(`{"alg":"None"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"E1 alg none with a kid", craft(`{"alg":"none","kid":"k1"}`, payload(""), nil)[:len(craft(`{"alg":"none","kid":"k1"}`, payload(""), nil))-43], KeyringOptions{}, ErrWrongAlgorithm},
		// E2
		{"E2 HS256 keyed with a public key PEM", craft(validHeader, payload(""), pubPEM), KeyringOptions{}, ErrBadSignature},
		{"E2 HS256 keyed with raw public key bytes", craft(`{"alg":"HS256"}`, payload(""), pub), KeyringOptions{}, ErrBadSignature},
		{"E2 RS256 header, HMAC with the PEM", craft(`{"alg":"RS256","typ":"JWT"}`, payload(""), pubPEM), KeyringOptions{}, ErrWrongAlgorithm},
		{"E2 RS256 header, HMAC with the secret", craft(`{"alg":"RS256"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"E2 genuine EdDSA token", edToken, KeyringOptions{}, ErrWrongAlgorithm},
		{"E2 HS512 with the right secret", hs512, KeyringOptions{}, ErrWrongAlgorithm},
		{"alg in lower case", craft(`{"alg":"hs256"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"alg missing", craft(`{"typ":"JWT"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"alg not a string", craft(`{"alg":256}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"ALG key in upper case", craft(`{"ALG":"HS256"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		{"alg none hidden by a later ALG", craft(`{"alg":"none","ALG":"HS256"}`, payload(""), secret.Key), KeyringOptions{}, ErrWrongAlgorithm},
		// E3
		{"E3 exp past", craft(validHeader, fmt.Sprintf(`{"read":["a"],"exp":%d}`, past), secret.Key), KeyringOptions{}, ErrExpired},
		{"E3 exp now", craft(validHeader, fmt.Sprintf(`{"read":["a"],"exp":%d}`, testNow.Unix()), secret.Key), KeyringOptions{}, ErrExpired},
		{"E3 exp past the leeway", craft(validHeader, fmt.Sprintf(`{"read":["a"],"exp":%d}`, testNow.Add(-6*time.Second).Unix()), secret.Key), KeyringOptions{Leeway: MaxLeeway}, ErrExpired},
		{"E3 nbf future", craft(validHeader, fmt.Sprintf(`{"read":["a"],"nbf":%d}`, future), secret.Key), KeyringOptions{}, ErrNotYetValid},
		{"E3 nbf beyond the leeway", craft(validHeader, fmt.Sprintf(`{"read":["a"],"nbf":%d}`, testNow.Add(6*time.Second).Unix()), secret.Key), KeyringOptions{Leeway: MaxLeeway}, ErrNotYetValid},
		{"E3 exp missing with RequireExp", craft(validHeader, `{"read":["a"]}`, secret.Key), KeyringOptions{RequireExp: true}, ErrMissingExp},
		{"E3 last signature char's padding bit flipped", flipLastPaddingBit(t, good), KeyringOptions{}, ErrMalformed},
		{"E3 last signature char flipped", flipLastSignificantBit(good), KeyringOptions{}, ErrBadSignature},
		{"E3 second-to-last signature char flipped", flipChar(good, len(good)-2), KeyringOptions{}, ErrBadSignature},
		{"E3 first signature char flipped", flipChar(good, strings.LastIndexByte(good, '.')+1), KeyringOptions{}, ErrBadSignature},
		{"E3 payload changed after signing", strings.Replace(good, b64.EncodeToString([]byte(payload(""))), b64.EncodeToString([]byte(strings.Replace(payload(""), `"a/#"`, `"#"`, 1))), 1), KeyringOptions{}, ErrBadSignature},
		{"signed with another secret", craft(validHeader, payload(""), other.Key), KeyringOptions{}, ErrBadSignature},
		{"unknown kid", craft(`{"alg":"HS256","kid":"gone"}`, payload(""), secret.Key), KeyringOptions{}, ErrBadSignature},
		{"empty signature", good[:strings.LastIndexByte(good, '.')+1], KeyringOptions{}, ErrBadSignature},
		// Header.
		{"typ not JWT", craft(`{"alg":"HS256","typ":"JWS"}`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"typ not a string", craft(`{"alg":"HS256","typ":5}`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"crit header", craft(`{"alg":"HS256","crit":["b64"],"b64":false}`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"kid not a string", craft(`{"alg":"HS256","kid":1}`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"header an array", craft(`["HS256"]`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"header null", craft(`null`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		{"header not JSON", craft(`{alg:HS256}`, payload(""), secret.Key), KeyringOptions{}, ErrMalformed},
		// Structure and encoding.
		{"empty", "", KeyringOptions{}, ErrMalformed},
		{"one segment", "abc", KeyringOptions{}, ErrMalformed},
		{"two segments", good[:strings.LastIndexByte(good, '.')], KeyringOptions{}, ErrMalformed},
		{"four segments", good + ".x", KeyringOptions{}, ErrMalformed},
		{"padded signature", good + "=", KeyringOptions{}, ErrMalformed},
		{"Bearer prefix left on", "Bearer " + good, KeyringOptions{}, ErrMalformed},
		{"header with standard base64", strings.Replace(good, "eyJ", "eyJ+", 1), KeyringOptions{}, ErrMalformed},
		// Claims.
		{"claims not JSON", craft(validHeader, `{"read":`, secret.Key), KeyringOptions{}, ErrMalformed},
		{"claims an array", craft(validHeader, `[1]`, secret.Key), KeyringOptions{}, ErrMalformed},
		{"exp a string", craft(validHeader, `{"read":["a"],"exp":"soon"}`, secret.Key), KeyringOptions{}, ErrMalformed},
		{"read not an array", craft(validHeader, `{"read":"a/#"}`, secret.Key), KeyringOptions{}, ErrMalformed},
		{"read holds a number", craft(validHeader, `{"read":[1]}`, secret.Key), KeyringOptions{}, ErrMalformed},
		{"unknown perm letter", craft(validHeader, `{"read":["a"],"perm":"rwz"}`, secret.Key), KeyringOptions{}, ErrInvalidClaims},
		{"no read or write", craft(validHeader, `{"perm":"rw"}`, secret.Key), KeyringOptions{}, ErrInvalidClaims},
		{"only invalid filters", craft(validHeader, `{"read":["a#","a/#/b"],"write":["a/../b"]}`, secret.Key), KeyringOptions{}, ErrInvalidClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestKeyring(t, tt.opts, secret)
			claims, err := k.Verify(tt.token)
			if !errors.Is(err, tt.want) || claims != nil {
				t.Fatalf("Verify = %+v, %v; want %v", claims, err, tt.want)
			}
			if strings.Contains(err.Error(), tt.token) && tt.token != "" {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

func TestVerifyAcceptsWithinLeeway(t *testing.T) {
	secret := testSecret("k1", 1)
	k := newTestKeyring(t, KeyringOptions{Leeway: MaxLeeway}, secret)
	for _, p := range []string{
		fmt.Sprintf(`{"read":["a"],"exp":%d}`, testNow.Add(-4*time.Second).Unix()),
		fmt.Sprintf(`{"read":["a"],"nbf":%d}`, testNow.Add(4*time.Second).Unix()),
		fmt.Sprintf(`{"read":["a"],"nbf":%d,"exp":%d}`, testNow.Unix(), testNow.Add(time.Second).Unix()),
	} {
		if _, err := k.Verify(craft(validHeader, p, secret.Key)); err != nil {
			t.Errorf("payload %s: %v", p, err)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := newTestKeyring(t, KeyringOptions{})
	in := Claims{
		Subject:    "alice",
		Read:       []string{"chat/#"},
		Write:      []string{"chat/room1"},
		Perm:       "rwslp",
		ExpiresAt:  jwt.NewNumericDate(testNow.Add(time.Hour)),
		RateLimits: []RateLimit{{Topic: "chat/#", Interval: 10, Max: 5}},
	}
	token, err := k.Sign(in)
	if err != nil {
		t.Fatal(err)
	}
	if in.IssuedAt != nil || in.ID != "" {
		t.Fatal("Sign modified the caller's claims")
	}
	got, err := k.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "alice" || got.Perm != "rwslp" || got.KeyID != "k1" || len(got.ID) != 22 ||
		!got.IssuedAt.Equal(testNow) || !got.ExpiresAt.Equal(testNow.Add(time.Hour)) ||
		len(got.RateLimits) != 1 || got.RateLimits[0] != in.RateLimits[0] {
		t.Fatalf("round trip lost something: %+v", got)
	}
	if !got.CanPublish("chat/room1") || got.CanPublish("chat/room2") || !got.CanSubscribe("chat/+") {
		t.Fatal("verified claims do not authorise as signed")
	}
	// Header carries kid and typ JWT, which Eventhub requires.
	header, _ := b64.DecodeString(token[:strings.IndexByte(token, '.')])
	if !strings.Contains(string(header), `"kid":"k1"`) || !strings.Contains(string(header), `"typ":"JWT"`) {
		t.Fatalf("header %s", header)
	}
	// A second token gets a different jti; a given jti is kept.
	again, _ := k.Sign(in)
	c2, _ := k.Verify(again)
	in.ID = "mine"
	mine, _ := k.Sign(in)
	c3, _ := k.Verify(mine)
	if c2.ID == got.ID || c3.ID != "mine" {
		t.Fatalf("jti: %q %q %q", got.ID, c2.ID, c3.ID)
	}
}

func TestSignRefuses(t *testing.T) {
	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprintf("tenant-%03d/devices/#", i)
	}
	tests := []struct {
		name   string
		opts   KeyringOptions
		claims Claims
		want   error
	}{
		{"unknown letter", KeyringOptions{}, Claims{Read: []string{"a"}, Perm: "rx"}, ErrInvalidClaims},
		{"invalid filter", KeyringOptions{}, Claims{Read: []string{"a/#/b"}, Perm: "r"}, ErrInvalidClaims},
		{"no filters", KeyringOptions{}, Claims{Perm: "rw"}, ErrInvalidClaims},
		{"no exp under RequireExp", KeyringOptions{RequireExp: true}, Claims{Read: []string{"a"}}, ErrMissingExp},
		{"larger than the verify cap", KeyringOptions{}, Claims{Read: many, Perm: "r"}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestKeyring(t, tt.opts)
			if token, err := k.Sign(tt.claims); !errors.Is(err, tt.want) || token != "" {
				t.Fatalf("Sign = %q, %v; want %v", token, err, tt.want)
			}
		})
	}
	// Master keys need no filter.
	k := newTestKeyring(t, KeyringOptions{})
	token, err := k.Sign(Claims{Perm: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := k.Verify(token); err != nil || !c.IsMaster() {
		t.Fatalf("master round trip: %v", err)
	}
}

// Eventhub's own fixtures (olesku/eventhub tests/src/AccessControllerTest.cpp),
// signed with its test secret "eventhub_secret".
const (
	eventhubFixtureSecret = "eventhub_secret"
	// exp 2214694923, sub, read/write test1..3/#, and an unknown createToken claim.
	eventhubTokenWithExp = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIyMTQ2OTQ5MjMsInN1YiI6Im9sZS5za3Vkc3Zpa0BnbWFpbC5jb20iLCJ3cml0ZSI6WyJ0ZXN0MS8jIiwidGVzdDIvIyIsInRlc3QzLyMiXSwicmVhZCI6WyJ0ZXN0MS8jIiwidGVzdDIvIyIsInRlc3QzLyMiXSwiY3JlYXRlVG9rZW4iOlsidGVzdDEiLCJ0ZXN0MiIsInRlc3QzIl19.FSSecEiStcElHu0AqpmcIvfyMElwKZQUkiO5X_r0_3g"
	// No exp; read topic/#, topic2/#; write topic1/#; two rlimit entries.
	eventhubTokenWithRateLimits = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyQGRvbWFpbi5jb20iLCJyZWFkIjpbInRvcGljLyMiLCJ0b3BpYzIvIyJdLCJ3cml0ZSI6WyJ0b3BpYzEvIyJdLCJybGltaXQiOlt7InRvcGljIjoidG9waWMxLyMiLCJpbnRlcnZhbCI6MTAsIm1heCI6MTB9LHsidG9waWMiOiJ0b3BpYzIiLCJpbnRlcnZhbCI6MTAwLCJtYXgiOjEwfV19.i938ZYQL4NR1VUUfrtAwPaivd3cldW6Pegdo9ofpjcE"
	// The first token's claims signed with "Foobar".
	eventhubTokenOtherSecret = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIyMTQ2OTQ5MjMsInN1YiI6Im9sZS5za3Vkc3Zpa0BnbWFpbC5jb20iLCJ3cml0ZSI6WyJ0ZXN0MS8jIiwidGVzdDIvIyIsInRlc3QzLyMiXSwicmVhZCI6WyJ0ZXN0MS8jIiwidGVzdDIvIyIsInRlc3QzLyMiXSwiY3JlYXRlVG9rZW4iOlsidGVzdDEiLCJ0ZXN0MiIsInRlc3QzIl19.DMpX-zaifaTt5YbyTqSPjeJfhi8oMSpKsqh2rWGatGY"
)

func TestEventhubTokens(t *testing.T) {
	secret, err := ParseSecret(eventhubFixtureSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeyring(KeyringOptions{}, secret); !errors.Is(err, ErrSecretTooShort) {
		t.Fatalf("a 15-byte secret without AllowShortSecret: %v", err)
	}
	k := newTestKeyring(t, KeyringOptions{AllowShortSecret: true}, secret)
	if ids := k.ShortSecretIDs(); len(ids) != 1 || ids[0] != secret.ID {
		t.Fatalf("ShortSecretIDs = %v, want [%s]", ids, secret.ID)
	}

	c, err := k.Verify(eventhubTokenWithExp)
	if err != nil {
		t.Fatalf("Eventhub token: %v", err)
	}
	if c.Subject != "ole.skudsvik@gmail.com" || c.KeyID != "" || c.Perms() != PermRead|PermLoad|PermWrite|PermStore {
		t.Fatalf("claims %+v", c)
	}
	// The assertions of Eventhub's own test.
	if !c.CanSubscribe("test1/mychannel") || !c.CanPublish("test1/mychannel") {
		t.Error("test1/mychannel must be allowed")
	}
	if c.CanSubscribe("my/very/private/channel") || c.CanPublish("my/very/private/channel") {
		t.Error("my/very/private/channel must be denied")
	}
	if c.CanPresence("test1/x") {
		t.Error("Eventhub tokens carry no presence right")
	}

	c, err = k.Verify(eventhubTokenWithRateLimits)
	if err != nil {
		t.Fatalf("Eventhub token without exp: %v", err)
	}
	want := []RateLimit{{"topic1/#", 10, 10}, {"topic2", 100, 10}}
	if len(c.RateLimits) != 2 || c.RateLimits[0] != want[0] || c.RateLimits[1] != want[1] {
		t.Errorf("rlimit = %+v", c.RateLimits)
	}
	if !c.CanPublish("topic1/a") || c.CanPublish("topic/a") || !c.CanSubscribe("topic2/+") {
		t.Error("read/write split of the rlimit token is wrong")
	}

	if _, err := k.Verify(eventhubTokenOtherSecret); !errors.Is(err, ErrBadSignature) {
		t.Errorf("token signed with Foobar: %v", err)
	}
	strict := newTestKeyring(t, KeyringOptions{AllowShortSecret: true, RequireExp: true}, secret)
	if _, err := strict.Verify(eventhubTokenWithRateLimits); !errors.Is(err, ErrMissingExp) {
		t.Errorf("RequireExp must refuse the exp-less token: %v", err)
	}
	// Tokens we sign with the raw secret verify the same way (and carry a kid).
	token, err := k.Sign(Claims{Read: []string{"test1/#"}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := k.Verify(token); err != nil || c.KeyID != secret.ID {
		t.Fatalf("own token: %+v %v", c, err)
	}
}

func TestEventhubTokenWithLongRawSecret(t *testing.T) {
	raw := "a-long-eventhub-jwt-secret-of-40-bytes!!"
	secret, err := ParseSecret(raw)
	if err != nil {
		t.Fatal(err)
	}
	k := newTestKeyring(t, KeyringOptions{}, secret) // no migration flag needed
	token := craft(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"u","read":["news/#"],"write":["news/local"]}`, []byte(raw))
	c, err := k.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if !c.CanSubscribe("news/+") || !c.CanPublish("news/local") || c.CanPublish("news/world") {
		t.Fatalf("claims %+v", c)
	}
}

func TestRotation(t *testing.T) {
	oldSecret, newSecret := testSecret("old", 1), testSecret("new", 50)
	k := newTestKeyring(t, KeyringOptions{}, oldSecret)
	claims := Claims{Read: []string{"a/#"}}
	oldToken, err := k.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	// An old token without a kid (as minted before kids existed).
	oldNoKid := craft(`{"alg":"HS256","typ":"JWT"}`, `{"read":["a/#"]}`, oldSecret.Key)

	// Step 1: the new secret goes in front; both verify.
	if err := k.SetSecrets(newSecret, oldSecret); err != nil {
		t.Fatal(err)
	}
	newToken, err := k.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	if k.SigningKeyID() != "new" || strings.Join(k.KeyIDs(), ",") != "new,old" {
		t.Fatalf("signing %s, ids %v", k.SigningKeyID(), k.KeyIDs())
	}
	for name, tok := range map[string]string{"old": oldToken, "old without kid": oldNoKid, "new": newToken} {
		if _, err := k.Verify(tok); err != nil {
			t.Errorf("%s token during rotation: %v", name, err)
		}
	}
	if c, _ := k.Verify(newToken); c.KeyID != "new" {
		t.Errorf("new token signed by %q", c.KeyID)
	}

	// Step 2: the old secret is removed; only new tokens verify.
	if err := k.SetSecrets(newSecret); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"old": oldToken, "old without kid": oldNoKid} {
		if _, err := k.Verify(tok); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s token after rotation: %v", name, err)
		}
	}
	if _, err := k.Verify(newToken); err != nil {
		t.Errorf("new token after rotation: %v", err)
	}
}

// TestRevokedTokenRejected is reliability case E8 at library level.
func TestRevokedTokenRejected(t *testing.T) {
	revs, err := OpenRevocations(t.TempDir() + "/" + RevocationsFileName)
	if err != nil {
		t.Fatal(err)
	}
	k := newTestKeyring(t, KeyringOptions{Revocations: revs})
	token, err := k.Sign(Claims{Read: []string{"a"}, ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if err := revs.Revoke(c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := revs.Unrevoke(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(token); err != nil {
		t.Fatalf("unrevoked token: %v", err)
	}
}

func TestNewKeyringRefuses(t *testing.T) {
	good := testSecret("k1", 1)
	short := Secret{ID: "short", Key: []byte("0123456789")}
	tests := []struct {
		name    string
		opts    KeyringOptions
		secrets []Secret
		want    error
	}{
		{"no secret", KeyringOptions{}, nil, ErrInvalidSecret},
		{"duplicate kid", KeyringOptions{}, []Secret{good, testSecret("k1", 7)}, ErrInvalidSecret},
		{"no kid", KeyringOptions{}, []Secret{{Key: good.Key}}, ErrInvalidSecret},
		{"kid with a slash", KeyringOptions{}, []Secret{{ID: "a/b", Key: good.Key}}, ErrInvalidSecret},
		{"empty key", KeyringOptions{AllowShortSecret: true}, []Secret{{ID: "x"}}, ErrInvalidSecret},
		{"short key", KeyringOptions{}, []Secret{good, short}, ErrSecretTooShort},
		{"31 bytes", KeyringOptions{}, []Secret{{ID: "x", Key: good.Key[:31]}}, ErrSecretTooShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := NewKeyring(tt.opts, tt.secrets...); !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("NewKeyring = %v, %v; want %v", k, err, tt.want)
			}
		})
	}
	for _, leeway := range []time.Duration{-time.Second, MaxLeeway + time.Nanosecond, time.Minute} {
		if _, err := NewKeyring(KeyringOptions{Leeway: leeway}, good); err == nil {
			t.Errorf("leeway %v accepted", leeway)
		}
	}
	k, err := NewKeyring(KeyringOptions{AllowShortSecret: true}, good, short)
	if err != nil || len(k.ShortSecretIDs()) != 1 {
		t.Fatalf("AllowShortSecret: %v", err)
	}
	// The keyring keeps its own copy of the key.
	key := append([]byte(nil), good.Key...)
	k, _ = NewKeyring(KeyringOptions{Now: fixedNow}, Secret{ID: "c", Key: key})
	token, _ := k.Sign(Claims{Read: []string{"a"}})
	key[0] ^= 0xff
	if _, err := k.Verify(token); err != nil {
		t.Fatalf("caller's slice reached the keyring: %v", err)
	}
}

// TestTooLarge is reliability case E4: refused before parsing, without
// allocating.
func TestTooLarge(t *testing.T) {
	k := newTestKeyring(t, KeyringOptions{})
	good, err := k.Sign(Claims{Read: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"100,000 dots":  strings.Repeat(".", 100_000),
		"1 MiB":         good + strings.Repeat("A", 1<<20),
		"one over":      strings.Repeat("a", MaxTokenLen+1),
		"1 MiB of dots": strings.Repeat(".", 1<<20),
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := k.Verify(token); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v", err)
			}
			if allocs := testing.AllocsPerRun(100, func() { _, _ = k.Verify(token) }); allocs != 0 {
				t.Fatalf("%v allocations per rejected token, want 0", allocs)
			}
		})
	}
	// At the cap the token is parsed, still cheaply: a cap-sized token of
	// dots or of garbage must cost far less than the 64 KiB the reliability
	// goal allows.
	for name, token := range map[string]string{
		"dots at the cap":    strings.Repeat(".", MaxTokenLen),
		"garbage at the cap": "eyJ" + strings.Repeat("A", MaxTokenLen-len("eyJ..")) + "..",
		"header at the cap":  b64.EncodeToString([]byte(`{"alg":"HS256","x":"`+strings.Repeat("y", 2900)+`"}`)) + ".e30.",
	} {
		if len(token) > MaxTokenLen {
			t.Fatalf("%s: test token is %d bytes", name, len(token))
		}
		if _, err := k.Verify(token); err == nil {
			t.Fatalf("%s verified", name)
		}
		if perCall := bytesPerCall(func() { _, _ = k.Verify(token) }); perCall > 64<<10 {
			t.Errorf("%s: %d bytes allocated per call", name, perCall)
		}
	}
}

func bytesPerCall(f func()) uint64 {
	const runs = 50
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// TestConcurrentVerifyAndRotate runs Verify against SetSecrets under -race.
func TestConcurrentVerifyAndRotate(t *testing.T) {
	a, b := testSecret("a", 1), testSecret("b", 2)
	k := newTestKeyring(t, KeyringOptions{}, a, b)
	token, err := k.Sign(Claims{Read: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				// "a" is in every set, so the token always verifies.
				if _, err := k.Verify(token); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 200 {
		sets := [][]Secret{{a, b}, {b, a}, {a}}
		if err := k.SetSecrets(sets[i%3]...); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Verify during rotation: %v", err)
	}
}
