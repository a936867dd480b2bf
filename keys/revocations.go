package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// RevocationsFileName is the list's file in the data directory.
	RevocationsFileName = "revoked.json"
	// maxTokenIDLen bounds a jti on the list. Sign makes 22-byte ones.
	maxTokenIDLen = 256
	// maxRevocationsFileLen bounds the read of the file (about 100k entries
	// of the longest jti); a bigger file is refused rather than loaded.
	maxRevocationsFileLen = 32 << 20
	// revocationsVersion is the file format version.
	revocationsVersion = 1
)

// Revocation is one revoked token.
type Revocation struct {
	ID    string    // the token's jti
	Until time.Time // when to forget it (the token's exp); zero means never
}

// Revocations is the list of revoked token ids, kept in memory for
// IsRevoked and persisted to a JSON file on every change. Readers never
// block: the map is replaced, not modified (copy on write), because
// revocations are rare and lookups happen on every connect.
//
// A Revocations is safe for concurrent use. A nil *Revocations revokes
// nothing, so a Keyring without one needs no special case.
type Revocations struct {
	path    string
	mu      sync.Mutex // serialises writers and the file; readers use entries
	entries atomic.Pointer[map[string]time.Time]
}

// revocationsFile is the on-disk form; until is Unix seconds, 0 = forever.
type revocationsFile struct {
	Version int              `json:"version"`
	Revoked []revocationJSON `json:"revoked"`
}

type revocationJSON struct {
	ID    string `json:"jti"`
	Until int64  `json:"until"`
}

// OpenRevocations loads the list at path (conventionally
// DATA_DIR/RevocationsFileName), creating the directory (0700) and an empty
// file (0600) when missing, so an unwritable data dir fails at start rather
// than at the first revocation. A file that does not parse is an error and
// is left untouched (reliability case F8).
func OpenRevocations(path string) (*Revocations, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no path", ErrInvalidRevocations)
	}
	r := &Revocations{path: path}
	data, _, err := readFileLimited(path, maxRevocationsFileLen)
	switch {
	case err == nil:
		entries, err := decodeRevocations(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r.entries.Store(&entries)
		return r, nil
	case !isNotExist(err):
		return nil, fmt.Errorf("keys: read revocation list: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("keys: create revocation list directory: %w", err)
	}
	empty := map[string]time.Time{}
	if err := r.persist(empty); err != nil {
		return nil, err
	}
	r.entries.Store(&empty)
	return r, nil
}

// IsRevoked reports whether jti is on the list. It takes no lock and does
// not allocate. An empty jti is never revoked: such a token cannot be
// revoked individually (rotate the secret instead).
func (r *Revocations) IsRevoked(jti string) bool {
	if r == nil || jti == "" {
		return false
	}
	_, ok := (*r.entries.Load())[jti]
	return ok
}

// Revoke adds jti to the list until the given time (the token's exp; zero
// for a token without exp, kept forever). Revoking an id again keeps the
// later of the two times. The revocation is in force in this process as soon
// as Revoke is called, even when it returns an error: the error then means
// the file was not updated and the entry will not survive a restart.
func (r *Revocations) Revoke(jti string, until time.Time) error {
	_, err := r.Merge([]Revocation{{ID: jti, Until: until}})
	return err
}

// Merge adds several revocations with one file write, as when a node learns
// the cluster's list; it returns how many entries were new or extended.
// Entries are validated first: one bad entry rejects the whole batch.
func (r *Revocations) Merge(list []Revocation) (int, error) {
	for _, rev := range list {
		if err := checkTokenID(rev.ID); err != nil {
			return 0, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	current := *r.entries.Load()
	var next map[string]time.Time
	changed := 0
	for _, rev := range list {
		until := ceilSecond(rev.Until)
		if old, ok := current[rev.ID]; ok && !laterUntil(until, old) {
			continue
		}
		if next == nil {
			next = maps.Clone(current)
		}
		next[rev.ID] = until
		current = next
		changed++
	}
	if changed == 0 {
		return 0, nil
	}
	r.entries.Store(&next)
	return changed, r.persist(next)
}

// Unrevoke removes jti from the list (Emitter's keyban with banned:false).
func (r *Revocations) Unrevoke(jti string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	current := *r.entries.Load()
	if _, ok := current[jti]; !ok {
		return nil
	}
	next := maps.Clone(current)
	delete(next, jti)
	r.entries.Store(&next)
	return r.persist(next)
}

// List returns the revocations sorted by id.
func (r *Revocations) List() []Revocation {
	if r == nil {
		return nil
	}
	current := *r.entries.Load()
	list := make([]Revocation, 0, len(current))
	for id, until := range current {
		list = append(list, Revocation{ID: id, Until: until})
	}
	slices.SortFunc(list, func(a, b Revocation) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// Len returns the number of revoked ids.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	return len(*r.entries.Load())
}

// Prune drops entries whose Until is at or before now: their tokens have
// expired, so exp alone refuses them. It returns how many were dropped.
func (r *Revocations) Prune(now time.Time) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	current := *r.entries.Load()
	next := make(map[string]time.Time, len(current))
	for id, until := range current {
		if until.IsZero() || until.After(now) {
			next[id] = until
		}
	}
	removed := len(current) - len(next)
	if removed == 0 {
		return 0, nil
	}
	r.entries.Store(&next)
	return removed, r.persist(next)
}

// Path returns the file the list is kept in.
func (r *Revocations) Path() string { return r.path }

// persist writes entries to the file atomically. Caller holds r.mu (or owns
// r exclusively, as OpenRevocations does).
func (r *Revocations) persist(entries map[string]time.Time) error {
	data, err := encodeRevocations(entries)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.path, data); err != nil {
		return fmt.Errorf("keys: write revocation list: %w", err)
	}
	return nil
}

func encodeRevocations(entries map[string]time.Time) ([]byte, error) {
	file := revocationsFile{Version: revocationsVersion, Revoked: make([]revocationJSON, 0, len(entries))}
	for id, until := range entries {
		var unix int64 // 0 = forever
		if !until.IsZero() {
			// An until at or before the epoch is long past; 0 would read
			// back as forever, so store the earliest past second instead.
			unix = max(until.Unix(), 1)
		}
		file.Revoked = append(file.Revoked, revocationJSON{ID: id, Until: unix})
	}
	slices.SortFunc(file.Revoked, func(a, b revocationJSON) int { return strings.Compare(a.ID, b.ID) })
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys: encode revocation list: %w", err)
	}
	return append(data, '\n'), nil
}

// decodeRevocations parses the file. Unknown fields and versions are
// refused, so a file from a newer release is not half-read and rewritten.
func decodeRevocations(data []byte) (map[string]time.Time, error) {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, []byte("\ufeff"))))
	dec.DisallowUnknownFields()
	var file revocationsFile
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRevocations, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidRevocations)
	}
	if file.Version != revocationsVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrInvalidRevocations, file.Version, revocationsVersion)
	}
	entries := make(map[string]time.Time, len(file.Revoked))
	for i, rev := range file.Revoked {
		if err := checkTokenID(rev.ID); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if rev.Until < 0 {
			return nil, fmt.Errorf("%w: entry %d has a negative until", ErrInvalidRevocations, i)
		}
		var until time.Time
		if rev.Until > 0 {
			until = time.Unix(rev.Until, 0).UTC()
		}
		if old, ok := entries[rev.ID]; !ok || laterUntil(until, old) {
			entries[rev.ID] = until
		}
	}
	return entries, nil
}

func checkTokenID(jti string) error {
	if jti == "" || len(jti) > maxTokenIDLen {
		return fmt.Errorf("%w: a jti must have 1-%d bytes", ErrInvalidRevocations, maxTokenIDLen)
	}
	return nil
}

// laterUntil reports whether a keeps an entry longer than b (zero = never
// forget, the longest).
func laterUntil(a, b time.Time) bool {
	switch {
	case b.IsZero():
		return false
	case a.IsZero():
		return true
	}
	return a.After(b)
}

// ceilSecond rounds up to the whole second the file stores, so an entry is
// never forgotten before its token expires.
func ceilSecond(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	if t.Truncate(time.Second).Equal(t) {
		return t.UTC()
	}
	return t.Truncate(time.Second).Add(time.Second).UTC()
}
