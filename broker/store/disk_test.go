package store

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

const memDir = "/data"

func openDiskT(t testing.TB, opts Options) *diskStore {
	t.Helper()
	s, err := OpenDisk(opts)
	require.NoError(t, err)
	return s.(*diskStore)
}

// fullCopy clones a crashable MemFS exactly, unsynced data included.
func fullCopy(fs *vfs.MemFS) *vfs.MemFS {
	return fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
}

func readMemFile(t testing.TB, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	return b
}

func writeMemFile(t testing.TB, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	require.NoError(t, err)
	// A clone: with pebble's invariants (on under -race) MemFS scribbles
	// over the buffer passed to Write.
	_, err = f.Write(append([]byte(nil), b...))
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// snapshotDir returns name -> contents of every file in dir (one level).
func snapshotDir(t testing.TB, fs vfs.FS, dir string) map[string]string {
	t.Helper()
	names, err := fs.List(dir)
	require.NoError(t, err)
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = string(readMemFile(t, fs, fs.PathJoin(dir, n)))
	}
	return out
}

func filesWithSuffix(t testing.TB, fs vfs.FS, dir, suffix string) []string {
	t.Helper()
	names, err := fs.List(dir)
	require.NoError(t, err)
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			out = append(out, fs.PathJoin(dir, n))
		}
	}
	sort.Strings(out)
	return out
}

func TestDiskPersistence(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	opts := Options{Dir: memDir, FS: fs, Now: clock.Now}
	s := openDiskT(t, opts)
	e := epoch.UnixMilli()
	require.NoError(t, s.Append([]Message{msg(e, 0, "a/b", "h1"), msg(e+1, 0, "c", "h2")}))
	require.NoError(t, s.SetRetained(msg(e, 5, "a/b", "r1")))
	require.NoError(t, s.KVSet("k", []byte("v"), time.Hour))
	_, err := s.QueueAppend("client", msg(e, 6, "a/b", "q1"), 10)
	require.NoError(t, err)
	_, err = s.QueueAppend("client", msg(e, 7, "a/b", "q2"), 10)
	require.NoError(t, err)
	before := s.Stats()
	require.NoError(t, s.Close())

	s = openDiskT(t, opts)
	defer s.Close()
	require.Equal(t, before, s.Stats(), "counters rebuilt on open")
	got, err := s.Query(context.Background(), Query{Filter: "#"})
	require.NoError(t, err)
	require.Equal(t, []string{"h1", "h2"}, payloads(got))
	ret, err := s.Retained("#")
	require.NoError(t, err)
	require.Equal(t, []string{"r1"}, payloads(ret))
	v, ok, err := s.KVGet("k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", string(v))
	// The queue continues after the entries that survived, in order.
	_, err = s.QueueAppend("client", msg(e, 8, "a/b", "q3"), 10)
	require.NoError(t, err)
	q, err := s.QueuePeek("client", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"q1", "q2", "q3"}, payloads(q))
	// TTL survives the restart.
	clock.Advance(time.Hour)
	_, ok, err = s.KVGet("k")
	require.NoError(t, err)
	require.False(t, ok)
}

// TestDiskDamagedRecord is F4 at the value level: a record whose checksum
// fails is skipped, counted once and logged once with its key.
func TestDiskDamagedRecord(t *testing.T) {
	e := epoch.UnixMilli()
	tests := []struct {
		name  string
		key   func() []byte
		check func(t *testing.T, s *diskStore)
	}{
		{"history record",
			func() []byte { return messageKey(nil, "a", MakeID(e+1, 0, 0)) },
			func(t *testing.T, s *diskStore) {
				for _, f := range []string{"a/b", "a/#", "#"} {
					got, err := s.Query(context.Background(), Query{Filter: f})
					require.NoError(t, err)
					require.Equal(t, []string{"h0", "h2"}, payloads(got), f)
				}
			}},
		{"global index entry",
			func() []byte { return indexKey(nil, MakeID(e+2, 0, 0)) },
			func(t *testing.T, s *diskStore) {
				got, err := s.Query(context.Background(), Query{Filter: "#"})
				require.NoError(t, err)
				require.Equal(t, []string{"h0", "h1"}, payloads(got))
			}},
		{"retained",
			func() []byte { return retainedKey(nil, "a/b") },
			func(t *testing.T, s *diskStore) {
				got, err := s.Retained("#")
				require.NoError(t, err)
				require.Empty(t, got)
			}},
		{"kv",
			func() []byte { return kvKey(nil, "k") },
			func(t *testing.T, s *diskStore) {
				_, ok, err := s.KVGet("k")
				require.NoError(t, err)
				require.False(t, ok)
			}},
		{"queue entry",
			func() []byte { return queueKey(nil, "c", 0) },
			func(t *testing.T, s *diskStore) {
				got, err := s.QueuePeek("c", 0)
				require.NoError(t, err)
				require.Equal(t, []string{"q1"}, payloads(got))
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &damageLog{}
			s := openDiskT(t, Options{Dir: memDir, FS: vfs.NewMem(), Now: newClock().Now, Logger: slog.New(log)})
			defer s.Close()
			for i := range 3 {
				require.NoError(t, s.Append([]Message{msg(e+int64(i), 0, "a/b", fmt.Sprint("h", i))}))
			}
			require.NoError(t, s.SetRetained(msg(e, 9, "a/b", "r")))
			require.NoError(t, s.KVSet("k", []byte("v"), 0))
			for i := range 2 {
				_, err := s.QueueAppend("c", msg(e, uint32(20+i), "a/b", fmt.Sprint("q", i)), 5)
				require.NoError(t, err)
			}

			key := tc.key()
			v, closer, err := s.db.Get(key)
			require.NoError(t, err, "fixture key %q", key)
			flipped := append([]byte(nil), v...)
			require.NoError(t, closer.Close())
			flipped[len(flipped)/2] ^= 0x10
			require.NoError(t, s.db.Set(key, flipped, nil))

			for range 3 { // reading it again neither recounts nor relogs
				tc.check(t, s)
			}
			require.Equal(t, int64(1), s.Stats().Damaged)
			require.Equal(t, 1, log.count("store: damaged record skipped"))
		})
	}
}

// TestDiskRecordUnderWrongKey: a valid record copied under another ID's key
// (misdirected write) is not served as that ID.
func TestDiskRecordUnderWrongKey(t *testing.T) {
	s := openDiskT(t, Options{Dir: memDir, FS: vfs.NewMem(), Now: newClock().Now})
	defer s.Close()
	e := epoch.UnixMilli()
	require.NoError(t, s.Append([]Message{msg(e, 0, "a", "x"), msg(e, 1, "a", "y")}))
	v, closer, err := s.db.Get(messageKey(nil, "a", MakeID(e, 0, 0)))
	require.NoError(t, err)
	require.NoError(t, s.db.Set(messageKey(nil, "a", MakeID(e, 0, 1)), append([]byte(nil), v...), nil))
	require.NoError(t, closer.Close())
	got, err := s.Query(context.Background(), Query{Filter: "a"})
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, payloads(got))
	require.Equal(t, int64(1), s.Stats().Damaged)
}

// writeFixture fills a crashable MemFS with a closed store of batches
// (payloads "b<batch>-<i>") and returns the FS and every stored message.
func writeFixture(t *testing.T, batches, perBatch int, flush bool) (*vfs.MemFS, map[ID]string) {
	t.Helper()
	fs := vfs.NewCrashableMem()
	s := openDiskT(t, Options{Dir: memDir, FS: fs, Now: newClock().Now})
	written := make(map[ID]string)
	e := epoch.UnixMilli()
	for b := range batches {
		var batch []Message
		for i := range perBatch {
			m := msg(e+int64(b), uint32(i), fmt.Sprintf("t/%d", i%3), fmt.Sprintf("b%d-%d", b, i))
			written[m.ID] = string(m.Payload)
			batch = append(batch, m)
		}
		require.NoError(t, s.Append(batch))
	}
	if flush {
		require.NoError(t, s.db.Flush())
	}
	require.NoError(t, s.Close())
	return fs, written
}

// checkServesOnlyTruth opens fs and, if it opens, checks every message served
// is one that was written, byte for byte. It returns the served IDs, or nil
// with opened=false if the store refused to open (a clear error).
func checkServesOnlyTruth(t *testing.T, fs vfs.FS, written map[ID]string) (served map[ID]bool, opened bool) {
	t.Helper()
	served, opened, _ = checkServes(t, fs, written)
	return served, opened
}

// checkServes is checkServesOnlyTruth that also says whether the loss of
// anything was reported: a query error or a Damaged count.
func checkServes(t *testing.T, fs vfs.FS, written map[ID]string) (served map[ID]bool, opened, reported bool) {
	t.Helper()
	st, err := OpenDisk(Options{Dir: memDir, FS: fs, Now: newClock().Now})
	if err != nil {
		require.NotEmpty(t, err.Error())
		return nil, false, true
	}
	defer st.Close()
	served = make(map[ID]bool)
	for _, f := range []string{"#", "t/0", "t/+"} {
		got, err := st.Query(context.Background(), Query{Filter: f})
		if err != nil {
			reported = true
			continue // a read error is reported, not served
		}
		for _, m := range got {
			want, ok := written[m.ID]
			require.True(t, ok, "served an id never written: %v", m.ID)
			require.Equal(t, want, string(m.Payload), "served damaged payload for %v", m.ID)
			served[m.ID] = true
		}
	}
	return served, true, reported || st.Stats().Damaged > 0
}

// TestDiskTruncatedLog is F3: the write-ahead log cut at every byte offset of
// its last record. The store opens, keeps every earlier batch, and the last
// batch is all there or not at all (batches are atomic).
func TestDiskTruncatedLog(t *testing.T) {
	const batches, perBatch = 4, 5
	fs, written := writeFixture(t, batches, perBatch, false)
	logs := filesWithSuffix(t, fs, memDir, ".log")
	require.NotEmpty(t, logs)
	wal := logs[len(logs)-1]
	full := readMemFile(t, fs, wal)

	// The last record is the last batch: find where it starts by cutting
	// until that batch disappears.
	lastStart := len(full)
	for cut := len(full) - 1; cut > 0; cut-- {
		clone := fullCopy(fs)
		writeMemFile(t, clone, wal, full[:cut])
		served, opened := checkServesOnlyTruth(t, clone, written)
		require.True(t, opened, "truncated log must open (cut at %d)", cut)
		lastBatch := 0
		for id := range served {
			if id.Millis() == epoch.UnixMilli()+batches-1 {
				lastBatch++
			}
		}
		require.Contains(t, []int{0, perBatch}, lastBatch, "last batch partially applied at cut %d", cut)
		if lastBatch == perBatch {
			continue
		}
		require.Len(t, served, (batches-1)*perBatch, "earlier batches intact at cut %d", cut)
		if lastStart == len(full) {
			lastStart = cut
		}
		if cut < lastStart-64 { // well before the last record: done
			break
		}
	}
	require.Less(t, lastStart, len(full), "some cut removed the last batch")
}

// TestDiskDamagedFiles covers F3/F4 on pebble's own files (tables, log,
// manifest): truncated or with one bit flipped, the store either refuses to
// open with an error or opens and serves only true records. It never panics.
func TestDiskDamagedFiles(t *testing.T) {
	fs, written := writeFixture(t, 6, 20, true)
	names, err := fs.List(memDir)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(42, 42))
	samples := 40
	if testing.Short() {
		samples = 8
	}
	outcomes := map[string]int{}
	for _, name := range names {
		if name == markerName || strings.HasPrefix(name, "LOCK") {
			continue
		}
		path := fs.PathJoin(memDir, name)
		orig := readMemFile(t, fs, path)
		if len(orig) == 0 {
			continue
		}
		mutations := []struct {
			kind string
			data []byte
		}{
			{"empty", nil},
			{"half", orig[:len(orig)/2]},
			{"last byte cut", orig[:len(orig)-1]},
		}
		for range samples {
			flipped := append([]byte(nil), orig...)
			flipped[rng.IntN(len(flipped))] ^= 1 << rng.IntN(8)
			mutations = append(mutations, struct {
				kind string
				data []byte
			}{"bit flip", flipped})
		}
		for _, mu := range mutations {
			clone := fullCopy(fs)
			writeMemFile(t, clone, path, mu.data)
			served, opened, reported := checkServes(t, clone, written)
			lost := opened && len(served) < len(written)
			outcomes[fmt.Sprintf("%s opened=%v lost=%v reported=%v", mu.kind, opened, lost, reported)]++
			if lost && !reported {
				t.Errorf("%s of %s: %d of %d messages lost silently", mu.kind, name, len(written)-len(served), len(written))
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	require.NotEmpty(t, outcomes)
}

// TestDiskPowerLoss is F5: after a simulated power loss (only synced data
// survives) every write that returned with Sync=always is intact.
func TestDiskPowerLoss(t *testing.T) {
	fs := vfs.NewCrashableMem()
	clock := newClock()
	s := openDiskT(t, Options{Dir: memDir, FS: fs, Now: clock.Now})
	defer s.Close()
	gen := NewIDGenerator(1, clock.Now)
	acked := make(map[ID]string)
	rng := rand.New(rand.NewPCG(7, 7))
	cycles := 30
	if testing.Short() {
		cycles = 5
	}
	for cycle := range cycles {
		var batch []Message
		for i := range 1 + rng.IntN(20) {
			m := Message{ID: gen.Next(), Topic: fmt.Sprintf("p/%d", i%4), Payload: []byte(fmt.Sprint(cycle, "-", i))}
			batch = append(batch, m)
		}
		require.NoError(t, s.Append(batch))
		for _, m := range batch {
			acked[m.ID] = string(m.Payload)
		}
		require.NoError(t, s.KVSet(fmt.Sprint("k", cycle), []byte("v"), 0))
		_, err := s.QueueAppend("sess", batch[0], 1000)
		require.NoError(t, err)

		crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // exactly the synced state
		after, err := OpenDisk(Options{Dir: memDir, FS: crashed, Now: clock.Now})
		require.NoError(t, err, "cycle %d", cycle)
		got, err := after.Query(context.Background(), Query{Filter: "#"})
		require.NoError(t, err)
		require.Len(t, got, len(acked), "cycle %d: every acked message survives", cycle)
		for _, m := range got {
			require.Equal(t, acked[m.ID], string(m.Payload))
		}
		_, ok, err := after.KVGet(fmt.Sprint("k", cycle))
		require.NoError(t, err)
		require.True(t, ok)
		q, err := after.QueuePeek("sess", 0)
		require.NoError(t, err)
		require.Len(t, q, cycle+1)
		require.NoError(t, after.Close())
	}
}

// TestDiskSyncInterval: with a sync interval writes reach stable storage by
// the background syncer, without another write, and Close syncs the rest.
func TestDiskSyncInterval(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openDiskT(t, Options{Dir: memDir, FS: fs, Now: newClock().Now, Sync: 5 * time.Millisecond})
	e := epoch.UnixMilli()
	require.NoError(t, s.Append([]Message{msg(e, 0, "t", "x")}))
	survives := func() bool {
		crashed := fs.CrashClone(vfs.CrashCloneCfg{})
		after, err := OpenDisk(Options{Dir: memDir, FS: crashed})
		require.NoError(t, err)
		defer after.Close()
		got, err := after.Query(context.Background(), Query{Filter: "t"})
		require.NoError(t, err)
		return len(got) == 1
	}
	eventually(t, 5*time.Second, survives, "background sync")

	require.NoError(t, s.Append([]Message{msg(e, 1, "t", "y")}))
	require.NoError(t, s.Close())
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	after := openDiskT(t, Options{Dir: memDir, FS: crashed})
	defer after.Close()
	got, err := after.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Equal(t, []string{"x", "y"}, payloads(got), "Close syncs the last interval")
}

// TestDiskIncompatibleDir is F8: foreign, empty-marker and newer-format
// directories are refused with a clear error and left byte-for-byte alone.
func TestDiskIncompatibleDir(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
	}{
		{"foreign file", map[string]string{"notes.txt": "my data"}},
		{"foreign pebble-looking files", map[string]string{"000001.log": "x", "OPTIONS-000003": "y"}},
		{"empty marker", map[string]string{markerName: "", "000001.log": "x"}},
		{"garbage marker", map[string]string{markerName: "\x00\x01\x02"}},
		{"other product marker", map[string]string{markerName: "other-store 1\n"}},
		{"future version", map[string]string{markerName: "pubsub-store 2\n", "000002.log": "future"}},
		{"marker without database", map[string]string{markerName: "pubsub-store 1\n", "stray": "s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			require.NoError(t, fs.MkdirAll(memDir, 0o700))
			for n, c := range tc.files {
				writeMemFile(t, fs, fs.PathJoin(memDir, n), []byte(c))
			}
			before := snapshotDir(t, fs, memDir)
			_, err := OpenDisk(Options{Dir: memDir, FS: fs})
			require.Error(t, err)
			require.Contains(t, err.Error(), memDir, "the error names the directory")
			require.ErrorIs(t, err, ErrIncompatible)
			require.Equal(t, before, snapshotDir(t, fs, memDir), "nothing overwritten")
		})
	}

	t.Run("marker only is a fresh store", func(t *testing.T) {
		fs := vfs.NewMem()
		require.NoError(t, fs.MkdirAll(memDir, 0o700))
		writeMemFile(t, fs, fs.PathJoin(memDir, markerName), []byte("pubsub-store 1\n"))
		s := openDiskT(t, Options{Dir: memDir, FS: fs})
		require.NoError(t, s.Close())
	})
	t.Run("Dir is a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
		_, err := OpenDisk(Options{Dir: path})
		require.Error(t, err)
	})
	t.Run("no Dir", func(t *testing.T) {
		_, err := OpenDisk(Options{})
		require.ErrorIs(t, err, ErrInvalid)
	})
}

// TestDiskFileModes is F9 on the real file system: 0700 directories, 0600 files.
func TestDiskFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "store")
	s := openDiskT(t, Options{Dir: dir, Now: newClock().Now})
	e := epoch.UnixMilli()
	require.NoError(t, s.Append([]Message{msg(e, 0, "t", "x")}))
	require.NoError(t, s.KVSet("k", []byte("secret"), 0))
	require.NoError(t, s.db.Flush()) // make pebble write a table too

	_, err := OpenDisk(Options{Dir: dir})
	require.Error(t, err, "a second open of a live store is refused by its lock")
	require.NoError(t, s.Close())

	var files int
	err = filepath.WalkDir(filepath.Dir(dir), func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		if d.IsDir() {
			require.Equal(t, dirMode, info.Mode().Perm(), path)
		} else {
			files++
			require.Equal(t, fileMode, info.Mode().Perm(), path)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, files, 3)

	s = openDiskT(t, Options{Dir: dir, Now: newClock().Now}) // reopens what it wrote
	defer s.Close()
	got, err := s.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, payloads(got))
}

// TestDiskWALBitFlip pins what pebble's log recovery does with a flipped bit
// in the write-ahead log (data not yet flushed to tables): before the log's
// last 32 KiB block the corruption is proven by later records and OpenDisk
// refuses with an error; inside the last block it cannot be told from a torn
// write, and recovery stops at the last intact batch before it. Either way
// nothing damaged is served.
func TestDiskWALBitFlip(t *testing.T) {
	const walBlock = 32 << 10
	fs, written := writeFixture(t, 60, 50, false)
	logs := filesWithSuffix(t, fs, memDir, ".log")
	wal := logs[len(logs)-1]
	orig := readMemFile(t, fs, wal)
	require.Greater(t, len(orig), 2*walBlock, "fixture spans several log blocks")
	lastBlock := len(orig) / walBlock * walBlock
	rng := rand.New(rand.NewPCG(3, 3))
	samples := 20
	if testing.Short() {
		samples = 4
	}
	for range samples {
		flipped := append([]byte(nil), orig...)
		pos := rng.IntN(len(flipped))
		flipped[pos] ^= 1 << rng.IntN(8)
		clone := fullCopy(fs)
		writeMemFile(t, clone, wal, flipped)
		served, opened := checkServesOnlyTruth(t, clone, written)
		if pos < lastBlock {
			require.False(t, opened, "flip at %d (before the last block) must be refused", pos)
			continue
		}
		require.True(t, opened, "flip at %d in the last block reads as a torn tail", pos)
		// Recovery keeps a prefix of the batches: every batch before the
		// flip is whole, nothing after it is served.
		for id := range written {
			if id.Millis() < epoch.UnixMilli()+int64(len(served)/50) {
				require.True(t, served[id], "batch prefix intact")
			}
		}
	}
}
