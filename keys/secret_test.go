package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestGenerateSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Key) != MinSecretLen || len(a.ID) != 8 || a.Validate() != nil {
		t.Fatalf("secret %v has %d bytes", a, len(a.Key))
	}
	if a.ID == b.ID || bytes.Equal(a.Key, b.Key) {
		t.Fatal("two generated secrets are equal")
	}
	back, err := ParseSecret(a.Encode())
	if err != nil || back.ID != a.ID || !bytes.Equal(back.Key, a.Key) {
		t.Fatalf("encoded round trip: %v %v", back, err)
	}
}

func TestParseSecret(t *testing.T) {
	key32 := bytes.Repeat([]byte{7}, 32)
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name    string
		text    string
		wantID  string // "" means: derived from the raw text
		wantKey []byte
		want    error
	}{
		{"encoded", "pubsub.v1.abc." + enc(key32), "abc", key32, nil},
		{"encoded long", "pubsub.v1.A-z_9." + enc(bytes.Repeat([]byte{1}, 64)), "A-z_9", bytes.Repeat([]byte{1}, 64), nil},
		{"encoded short", "pubsub.v1.abc." + enc(key32[:16]), "abc", key32[:16], nil}, // NewKeyring refuses it
		{"encoded padded", "pubsub.v1.abc." + base64.URLEncoding.EncodeToString(key32[:31]), "", nil, ErrInvalidSecret},
		{"encoded std alphabet", "pubsub.v1.abc.+/" + enc(key32)[2:], "", nil, ErrInvalidSecret},
		{"encoded no key", "pubsub.v1.abc", "", nil, ErrInvalidSecret},
		{"encoded empty kid", "pubsub.v1.." + enc(key32), "", nil, ErrInvalidSecret},
		{"encoded bad kid", "pubsub.v1.a b." + enc(key32), "", nil, ErrInvalidSecret},
		{"empty", "", "", nil, ErrInvalidSecret},
		{"raw Eventhub secret", "eventhub_secret", "", []byte("eventhub_secret"), nil},
		{"raw keeps whitespace", " padded secret \n", "", []byte(" padded secret \n"), nil},
		{"raw too long", strings.Repeat("x", 3000), "", nil, ErrInvalidSecret},
		{"raw just too long", strings.Repeat("x", maxSecretLen+1), "", nil, ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSecret(tt.text)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("ParseSecret = %v, %v; want %v", s, err, tt.want)
				}
				if len(tt.text) > 12 && strings.Contains(err.Error(), tt.text[len(tt.text)-12:]) {
					t.Fatalf("error %q quotes the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantID := tt.wantID
			if wantID == "" {
				wantID = derivedKeyID([]byte(tt.text))
			}
			if s.ID != wantID || !bytes.Equal(s.Key, tt.wantKey) {
				t.Fatalf("got %s %q", s.ID, s.Key)
			}
		})
	}
	// A raw secret's kid is stable and differs between secrets.
	a, _ := ParseSecret("eventhub_secret")
	b, _ := ParseSecret("eventhub_secret")
	c, _ := ParseSecret("another_secret")
	if a.ID != b.ID || a.ID == c.ID || !validKeyID(a.ID) {
		t.Fatalf("derived ids %q %q %q", a.ID, b.ID, c.ID)
	}
	if !errors.Is(a.Validate(), ErrSecretTooShort) {
		t.Fatal("a short raw secret must report ErrSecretTooShort from Validate")
	}
}

// TestSecretNeverPrinted: no fmt verb, slog handler or error shows the key.
func TestSecretNeverPrinted(t *testing.T) {
	s := testSecret("kid1", 0x41) // key bytes are printable: "ABCD..."
	forms := []string{string(s.Key), fmt.Sprintf("%x", s.Key), fmt.Sprintf("%X", s.Key),
		base64.RawURLEncoding.EncodeToString(s.Key), fmt.Sprint([]byte(s.Key)), fmt.Sprintf("%d", s.Key[:4])[1:8]}
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		fmt.Fprintf(&out, verb+"\n", s)
		fmt.Fprintf(&out, verb+"\n", &s)
		fmt.Fprintf(&out, verb+"\n", []Secret{s})
		fmt.Fprintf(&out, verb+"\n", struct{ S Secret }{s})
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "secret", s)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "secret", s)
	for _, form := range forms {
		if strings.Contains(out.String(), form) {
			t.Fatalf("key leaked as %q in:\n%s", form, out.String())
		}
	}
	if !strings.Contains(out.String(), "kid1") {
		t.Fatal("the kid should still identify the secret")
	}
}

func TestSecretTextRoundTrip(t *testing.T) {
	type config struct {
		Secret Secret `json:"secret"`
	}
	in := config{Secret: testSecret("cfg", 3)}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out config
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.Secret.ID != "cfg" || !bytes.Equal(out.Secret.Key, in.Secret.Key) {
		t.Fatalf("round trip: %v", out.Secret)
	}
	// A raw Eventhub secret in a config file.
	if err := json.Unmarshal([]byte(`{"secret":"eventhub_secret"}`), &out); err != nil || string(out.Secret.Key) != "eventhub_secret" {
		t.Fatalf("raw secret in config: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"secret":""}`), &out); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("empty secret in config: %v", err)
	}
}

func TestLoadOrCreateSecretFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node1")
	s, created, err := LoadOrCreateSecretFile(dir)
	if err != nil || !created {
		t.Fatalf("first start: %v, created=%v", err, created)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
	assertMode(t, filepath.Join(dir, SecretFileName), 0o600)
	assertOnlyFiles(t, dir, SecretFileName)

	again, created, err := LoadOrCreateSecretFile(dir)
	if err != nil || created || again.ID != s.ID || !bytes.Equal(again.Key, s.Key) {
		t.Fatalf("second start: %v %v created=%v", again, err, created)
	}
}

func TestLoadSecretFileContents(t *testing.T) {
	encoded := testSecret("file", 9).Encode()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantKey string // "" means an error is expected
	}{
		{"encoded with newline", encoded + "\n", 0o600, string(testSecret("file", 9).Key)},
		{"encoded with CRLF and BOM", "\ufeff" + encoded + "\r\n", 0o600, string(testSecret("file", 9).Key)},
		{"raw Eventhub secret", "a raw secret that is long enough!!\n", 0o600, "a raw secret that is long enough!!"},
		{"empty", "", 0o600, ""},
		{"only a newline", "\n", 0o600, ""},
		{"readable by others", encoded, 0o644, ""},
		{"writable by group", encoded, 0o620, ""},
		{"too big", strings.Repeat("x", maxSecretFileLen+1), 0o600, ""},
		{"garbage encoded", "pubsub.v1.x.!!!", 0o600, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SecretFileName)
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // beat the umask
				t.Fatal(err)
			}
			s, created, err := LoadOrCreateSecretFile(dir)
			if created {
				t.Fatal("an existing file must never be replaced")
			}
			if tt.wantKey == "" {
				if err == nil {
					t.Fatalf("accepted: %v", s)
				}
				if got, _ := os.ReadFile(path); string(got) != tt.content {
					t.Fatal("the file was modified")
				}
				return
			}
			if err != nil || string(s.Key) != tt.wantKey {
				t.Fatalf("got %q, %v", s.Key, err)
			}
		})
	}
	if _, _, err := LoadOrCreateSecretFile(""); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("empty data dir: %v", err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, SecretFileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSecretFile(dir); err == nil {
		t.Error("a directory named secret was accepted")
	}
}

// TestSecretFileCreationRace: nodes starting together on one data dir end
// up with one secret.
func TestSecretFileCreationRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	secrets := make([]Secret, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			secrets[i], created[i], errs[i] = LoadOrCreateSecretFile(dir)
		}()
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if created[i] {
			creators++
		}
		if secrets[i].ID != secrets[0].ID || !bytes.Equal(secrets[i].Key, secrets[0].Key) {
			t.Fatalf("goroutine %d got a different secret", i)
		}
	}
	if creators != 1 {
		t.Fatalf("%d creators, want 1", creators)
	}
	assertOnlyFiles(t, dir, SecretFileName)
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %04o, want %04o", path, got, want)
	}
}

// assertOnlyFiles checks no temp file was left behind.
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func TestShortEncodedSecretRefusedByKeyring(t *testing.T) {
	s, err := ParseSecret("pubsub.v1.tiny." + base64.RawURLEncoding.EncodeToString([]byte("0123456789")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeyring(KeyringOptions{}, s); !errors.Is(err, ErrSecretTooShort) {
		t.Fatalf("NewKeyring: %v", err)
	}
	if !errors.Is(s.Validate(), ErrSecretTooShort) {
		t.Fatal("Validate must report the short key")
	}
}
