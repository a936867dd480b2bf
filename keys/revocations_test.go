package keys

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestRevocations(t *testing.T) (*Revocations, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", RevocationsFileName)
	r, err := OpenRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	return r, path
}

func TestOpenRevocationsCreates(t *testing.T) {
	r, path := openTestRevocations(t)
	assertMode(t, filepath.Dir(path), 0o700)
	assertMode(t, path, 0o600)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := decodeRevocations(data)
	if err != nil || len(entries) != 0 || r.Len() != 0 || r.Path() != path {
		t.Fatalf("fresh list: %v %v", entries, err)
	}
}

func TestRevocationsPersistAcrossReopen(t *testing.T) {
	r, path := openTestRevocations(t)
	exp := testNow.Add(time.Hour + 500*time.Millisecond)
	steps := []struct {
		jti   string
		until time.Time
	}{
		{"b", exp},
		{"a", time.Time{}},
		{"c", testNow.Add(-time.Hour)},
		{"b", testNow.Add(time.Minute)}, // earlier than the existing entry: ignored
		{"c", time.Time{}},              // forever wins
	}
	for _, s := range steps {
		if err := r.Revoke(s.jti, s.until); err != nil {
			t.Fatal(err)
		}
	}
	want := []Revocation{
		{"a", time.Time{}},
		{"b", exp.Truncate(time.Second).Add(time.Second)}, // rounded up, never down
		{"c", time.Time{}},
	}
	check := func(r *Revocations) {
		t.Helper()
		got := r.List()
		if len(got) != len(want) {
			t.Fatalf("List = %v", got)
		}
		for i := range want {
			if got[i].ID != want[i].ID || !got[i].Until.Equal(want[i].Until) {
				t.Fatalf("entry %d = %v, want %v", i, got[i], want[i])
			}
			if !r.IsRevoked(want[i].ID) {
				t.Fatalf("%s not revoked", want[i].ID)
			}
		}
		if r.IsRevoked("d") || r.IsRevoked("") {
			t.Fatal("unknown or empty jti revoked")
		}
	}
	check(r)
	reopened, err := OpenRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	check(reopened)
	assertOnlyFiles(t, filepath.Dir(path), RevocationsFileName)
}

func TestRevocationsPruneAndUnrevoke(t *testing.T) {
	r, path := openTestRevocations(t)
	n, err := r.Merge([]Revocation{
		{"expired", testNow.Add(-time.Second)},
		{"at-now", testNow},
		{"later", testNow.Add(time.Hour)},
		{"forever", time.Time{}},
		{"epoch", time.Unix(0, 0)},
		{"later", testNow.Add(2 * time.Hour)},
	})
	if err != nil || n != 6 {
		t.Fatalf("Merge = %d, %v", n, err)
	}
	if n, err := r.Merge([]Revocation{{"later", testNow}}); err != nil || n != 0 {
		t.Fatalf("Merge of nothing new = %d, %v", n, err)
	}
	removed, err := r.Prune(testNow)
	if err != nil || removed != 3 {
		t.Fatalf("Prune = %d, %v", removed, err)
	}
	if err := r.Unrevoke("forever"); err != nil {
		t.Fatal(err)
	}
	if err := r.Unrevoke("never-there"); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	got := reopened.List()
	if len(got) != 1 || got[0].ID != "later" || !got[0].Until.Equal(testNow.Add(2*time.Hour)) {
		t.Fatalf("after prune and unrevoke: %v", got)
	}
	if removed, err := reopened.Prune(testNow); err != nil || removed != 0 {
		t.Fatalf("second Prune = %d, %v", removed, err)
	}
}

func TestRevokeRefusesBadIDs(t *testing.T) {
	r, _ := openTestRevocations(t)
	for _, jti := range []string{"", strings.Repeat("j", maxTokenIDLen+1)} {
		if err := r.Revoke(jti, time.Time{}); !errors.Is(err, ErrInvalidRevocations) {
			t.Errorf("Revoke(%.10q) = %v", jti, err)
		}
	}
	if n, err := r.Merge([]Revocation{{"ok", time.Time{}}, {"", time.Time{}}}); !errors.Is(err, ErrInvalidRevocations) || n != 0 || r.IsRevoked("ok") {
		t.Fatalf("a batch with a bad entry must be refused whole: %d %v", n, err)
	}
}

// TestOpenRevocationsRefusesBadFiles: reliability case F8, and a truncated
// list never silently un-revokes (I9).
func TestOpenRevocationsRefusesBadFiles(t *testing.T) {
	tests := map[string]string{
		"empty":          "",
		"truncated":      `{"version":1,"revoked":[{"jti":"a","until":0}`,
		"future version": `{"version":2,"revoked":[]}`,
		"no version":     `{"revoked":[]}`,
		"unknown field":  `{"version":1,"revoked":[],"extra":1}`,
		"empty jti":      `{"version":1,"revoked":[{"jti":"","until":0}]}`,
		"negative until": `{"version":1,"revoked":[{"jti":"a","until":-1}]}`,
		"until a string": `{"version":1,"revoked":[{"jti":"a","until":"x"}]}`,
		"trailing data":  `{"version":1,"revoked":[]}{}`,
		"an array":       `[]`,
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), RevocationsFileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if r, err := OpenRevocations(path); err == nil {
				t.Fatalf("opened: %v", r.List())
			}
			if got, _ := os.ReadFile(path); string(got) != content {
				t.Fatal("a bad file was overwritten")
			}
		})
	}
	if _, err := OpenRevocations(""); err == nil {
		t.Error("empty path accepted")
	}
	dir := t.TempDir()
	if _, err := OpenRevocations(dir); err == nil {
		t.Error("a directory accepted as the list")
	}
	// A duplicate in the file keeps the longer entry.
	path := filepath.Join(t.TempDir(), RevocationsFileName)
	if err := os.WriteFile(path, []byte(`{"version":1,"revoked":[{"jti":"a","until":5},{"jti":"a","until":0},{"jti":"a","until":9}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRevocations(path)
	if err != nil || !r.List()[0].Until.IsZero() {
		t.Fatalf("duplicate entries: %v %v", r, err)
	}
}

// TestRevocationsWriteIsAtomic: a reader polling the file while revocations
// are written never sees a partial file, and no temp file is left.
func TestRevocationsWriteIsAtomic(t *testing.T) {
	r, path := openTestRevocations(t)
	done := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		defer close(readerErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err != nil {
				readerErr <- err
				return
			}
			if _, err := decodeRevocations(data); err != nil {
				readerErr <- err
				return
			}
		}
	}()
	for i := range 100 {
		if err := r.Revoke("token-"+strings.Repeat("x", i), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-readerErr; err != nil {
		t.Fatalf("reader saw a partial file: %v", err)
	}
	assertOnlyFiles(t, filepath.Dir(path), RevocationsFileName)
	var file revocationsFile
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &file); err != nil || len(file.Revoked) != 100 {
		t.Fatalf("final file: %d entries, %v", len(file.Revoked), err)
	}
}

// TestRevocationsConcurrent exercises lock-free readers against writers
// under -race.
func TestRevocationsConcurrent(t *testing.T) {
	r, _ := openTestRevocations(t)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if err := r.Revoke(string(rune('a'+w))+strings.Repeat("z", i), time.Time{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				_ = r.IsRevoked("a")
				_ = r.Len()
			}
		}()
	}
	wg.Wait()
	if r.Len() != 40 {
		t.Fatalf("Len = %d, want 40", r.Len())
	}
}

func TestNilRevocations(t *testing.T) {
	var r *Revocations
	if r.IsRevoked("x") || r.List() != nil || r.Len() != 0 {
		t.Fatal("a nil list must revoke nothing")
	}
}

func TestIsRevokedDoesNotAllocate(t *testing.T) {
	r, _ := openTestRevocations(t)
	if err := r.Revoke("gone", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = r.IsRevoked("gone") }); allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}
