package main

// The disk store with the built binary (issue 4 acceptance): a node killed
// with SIGKILL in the middle of a QoS 1 stream keeps every message it
// acknowledged with storage.sync "always", and loses no more than the
// documented window with an interval; a node whose store files were
// truncated or bit-flipped while it was stopped starts and reports the
// damage, or refuses with a clear error, and never serves a damaged record
// (docs/storage.md, "Durability" and "Damage and recovery").

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub/pubsub/client"
)

// storageNode is a `pubsub serve --storage disk` process the test may kill.
type storageNode struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{}
	err    error // the process's exit, once exited is closed
}

// startStorageNode starts a node on dataDir with the disk store and the
// config file at configPath ("" for none) and waits for /healthz.
func startStorageNode(t *testing.T, dataDir, configPath string) *storageNode {
	t.Helper()
	addr := freePort(t)
	args := []string{"serve", "--listen", addr, "--data-dir", dataDir, "--no-auth", "--storage", "disk", "--log-format", "json"}
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	n := &storageNode{cmd: exec.Command(binary, args...), addr: addr, stderr: &syncBuffer{}, exited: make(chan struct{})}
	n.cmd.Stderr = n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(n.kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not become healthy: %v\n%s", err, n.stderr)
		}
		select {
		case <-n.exited:
			t.Fatalf("node exited early: %v\n%s", n.err, n.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill ends the node with SIGKILL, as a crash would, and waits for it. It
// may be called from any goroutine, any number of times.
func (n *storageNode) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop shuts the node down cleanly (SIGTERM), which closes its store.
func (n *storageNode) stop(t *testing.T) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("node did not stop on SIGTERM\n%s", n.stderr)
	}
	if n.err != nil {
		t.Fatalf("node exit: %v\n%s", n.err, n.stderr)
	}
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pubsub.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// seqPayload is message seq's payload: its number, then filler derived
// from it, so a replayed message can be checked whole.
func seqPayload(seq, size int) []byte {
	head := strconv.Itoa(seq) + ":"
	b := []byte(head)
	fill := byte('a' + seq%26)
	for len(b) < size {
		b = append(b, fill)
	}
	return b
}

// parseSeqPayload returns the sequence number of an intact payload.
func parseSeqPayload(p []byte, size int) (int, bool) {
	head, _, ok := strings.Cut(string(p), ":")
	if !ok {
		return 0, false
	}
	seq, err := strconv.Atoi(head)
	if err != nil || seq < 0 {
		return 0, false
	}
	return seq, string(p) == string(seqPayload(seq, size))
}

// publishRun is what a publisher saw before its node died.
type publishRun struct {
	acked      []bool // acked[seq]: PUBACK received
	ackedCount int
	rate       float64 // acknowledged messages per second up to the kill
}

// publishUntilKilled publishes seq 0..total-1 as QoS 1 messages from a
// few concurrent publishers and SIGKILLs the node once killAfter PUBACKs
// arrived. It records every PUBACK the client received.
func publishUntilKilled(t *testing.T, n *storageNode, topic string, total, killAfter, size int) publishRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Server: n.addr, ClientID: "crash-publisher"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acked := make([]atomic.Bool, total)
	var next, count atomic.Int64
	var killOnce sync.Once
	var killedAfter time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	// Several publishers keep PUBLISHes in flight on the one connection,
	// so the stream is limited by the node, not by round trips.
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1) - 1)
				if seq >= total {
					return
				}
				if err := c.Publish(ctx, topic, seqPayload(seq, size), 1, false); err != nil {
					return // the node is gone
				}
				acked[seq].Store(true)
				if count.Add(1) == int64(killAfter) {
					killOnce.Do(func() {
						killedAfter = time.Since(start)
						n.kill()
					})
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-n.exited:
	default:
		t.Fatalf("the node was not killed: only %d of %d messages acknowledged", count.Load(), total)
	}
	run := publishRun{acked: make([]bool, total), rate: float64(killAfter) / killedAfter.Seconds()}
	for i := range acked {
		if acked[i].Load() {
			run.acked[i] = true
			run.ackedCount++
		}
	}
	return run
}

// replayed subscribes with filter (which asks for history) and returns the
// replayed messages' sequence numbers, checking that each is intact. The
// node sends history before the SUBACK, so it is all buffered once
// Subscribe returns.
func replayed(t *testing.T, addr, filter string, size int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Server: addr, Buffer: 20000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: filter}); err != nil {
		t.Fatal(err)
	}
	var seqs []int
	for {
		select {
		case m, open := <-c.Messages():
			if !open {
				t.Fatalf("connection lost during the replay: %v", c.Err())
			}
			seq, ok := parseSeqPayload(m.Payload, size)
			if !ok {
				t.Fatalf("a damaged message was served: %.40q…", m.Payload)
			}
			seqs = append(seqs, seq)
		default:
			return seqs
		}
	}
}

// TestStorageCrashKeepsAcknowledged is the crash test: 10,000 QoS 1
// messages with a ttl, the node SIGKILLed after about 3,000 PUBACKs and
// restarted on the same data dir, then every acknowledged message looked
// for with last=10000.
func TestStorageCrashKeepsAcknowledged(t *testing.T) {
	const (
		total     = 10000
		killAfter = 3000
		size      = 100
		topic     = "crash/t/?ttl=3600"
		replay    = "crash/t/?last=10000"
	)
	tests := []struct {
		name string
		sync string
		// window is the loss the documentation allows: nothing with
		// "always"; the interval plus one fsync otherwise.
		window time.Duration
	}{
		{"sync always", "always", 0},
		{"sync 100ms", "100ms", 100*time.Millisecond + 50*time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			config := writeConfig(t, "storage:\n  sync: "+tc.sync+"\n")
			n := startStorageNode(t, dir, config)
			run := publishUntilKilled(t, n, topic, total, killAfter, size)

			n = startStorageNode(t, dir, config)
			got := replayed(t, n.addr, replay, size)
			present := make([]bool, total)
			for _, seq := range got {
				if seq >= total {
					t.Fatalf("replayed seq %d was never published", seq)
				}
				if present[seq] {
					t.Fatalf("seq %d replayed twice", seq)
				}
				present[seq] = true
			}
			var lost []int
			for seq, ok := range run.acked {
				if ok && !present[seq] {
					lost = append(lost, seq)
				}
			}
			allowed := int(run.rate*tc.window.Seconds()*1.2) + 10 // 20% and 10 messages of margin
			if tc.window == 0 {
				allowed = 0
			}
			t.Logf("%s: %d acknowledged (%.0f msg/s before the kill), %d replayed, %d acknowledged but lost (allowed %d)",
				tc.name, run.ackedCount, run.rate, len(got), len(lost), allowed)
			if len(lost) > allowed {
				t.Fatalf("%d acknowledged messages lost, more than %d allowed; first: %v", len(lost), allowed, lost[:min(len(lost), 10)])
			}
		})
	}
}

// damageFile changes one store file of a stopped node.
type damageFile func(t *testing.T, storeDir string)

// flipByte flips one bit of the byte at offset at of the file.
func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// storeFiles lists the non-empty files of dir with suffix, by name.
func storeFiles(t *testing.T, dir, suffix string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), suffix) && info.Size() > 0 {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// TestStorageDamagedFiles corrupts files of a stopped node's
// data_dir/store and starts the binary on it. Whatever the damage, no
// damaged record is served. Outcomes follow the store's rules
// (docs/storage.md): a table block that fails its checksum is reported
// and its records are not served; a log cut inside its last record
// recovers to the last complete write; a damaged manifest or marker makes
// the node refuse to start with one line that names the store and the way
// out. A bit flipped in the newest log reads as a torn write: recovery
// keeps the writes before it, and the node may start without a report
// (pebble cannot tell the two apart there); the test accepts that or a
// refusal, and logs which.
func TestStorageDamagedFiles(t *testing.T) {
	const (
		topic  = "damage/t/?ttl=3600"
		replay = "damage/t/?last=10000"
	)
	tests := []struct {
		name     string
		messages int
		size     int
		damage   damageFile
		refused  bool   // the node must not start
		mayStart bool   // or it may start and serve a prefix
		report   string // stderr must say this
		prefix   bool   // what is served is a prefix of what was published
	}{
		{
			name: "table with a flipped bit", messages: 2500, size: 4000,
			damage: func(t *testing.T, dir string) {
				tables := storeFiles(t, dir, ".sst")
				if len(tables) == 0 {
					t.Fatal("no table was written; publish more")
				}
				largest := tables[0]
				for _, p := range tables {
					if fileSize(t, p) > fileSize(t, largest) {
						largest = p
					}
				}
				flipByte(t, largest, fileSize(t, largest)/3)
			},
			report: "damaged record skipped",
		},
		{
			name: "last log cut inside a record", messages: 50, size: 4000,
			damage: func(t *testing.T, dir string) {
				logs := storeFiles(t, dir, ".log")
				last := logs[len(logs)-1]
				if err := os.Truncate(last, fileSize(t, last)*6/10); err != nil {
					t.Fatal(err)
				}
			},
			prefix: true,
		},
		{
			name: "log with a flipped bit", messages: 50, size: 4000,
			damage: func(t *testing.T, dir string) {
				logs := storeFiles(t, dir, ".log")
				last := logs[len(logs)-1]
				flipByte(t, last, fileSize(t, last)/2)
			},
			refused: true, mayStart: true, prefix: true,
		},
		{
			name: "manifest cut in half", messages: 50, size: 4000,
			damage: func(t *testing.T, dir string) {
				manifests := storeFiles(t, dir, "")
				manifests = slices.DeleteFunc(manifests, func(p string) bool { return !strings.HasPrefix(filepath.Base(p), "MANIFEST-") })
				if len(manifests) == 0 {
					t.Fatal("no manifest")
				}
				m := manifests[len(manifests)-1]
				if err := os.Truncate(m, fileSize(t, m)/2); err != nil {
					t.Fatal(err)
				}
			},
			refused: true,
		},
		{
			name: "marker emptied", messages: 5, size: 100,
			damage: func(t *testing.T, dir string) {
				if err := os.Truncate(filepath.Join(dir, "PUBSUB-STORE"), 0); err != nil {
					t.Fatal(err)
				}
			},
			refused: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := startStorageNode(t, dir, "")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Options{Server: n.addr})
			if err != nil {
				t.Fatal(err)
			}
			for seq := range tc.messages {
				if err := c.Publish(ctx, topic, seqPayload(seq, tc.size), 1, false); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			n.stop(t)
			tc.damage(t, filepath.Join(dir, "store"))

			if tc.refused {
				if refusedToStart(t, dir, tc.mayStart) {
					return
				}
				t.Logf("the node started on the damaged store")
			}
			n = startStorageNode(t, dir, "")
			got := replayed(t, n.addr, replay, tc.size) // fails on a damaged record
			t.Logf("%d of %d messages served", len(got), tc.messages)
			if tc.prefix {
				if len(got) == 0 || len(got) > tc.messages {
					t.Fatalf("served %d messages, want a non-empty prefix of %d", len(got), tc.messages)
				}
				for i, seq := range got {
					if seq != i {
						t.Fatalf("served %v…, not a prefix of what was published", got[:min(len(got), i+1)])
					}
				}
			}
			if tc.report != "" {
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(n.stderr.String(), tc.report) {
					if time.Now().After(deadline) {
						t.Fatalf("the node did not report the damage (%q)\n%s", tc.report, n.stderr)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			resp, err := http.Get("http://" + n.addr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("healthz %d after damage", resp.StatusCode)
			}
		})
	}
}

// refusedToStart runs the node on a damaged data dir and reports whether it
// refused, with one last line that names the store and points to the docs.
// Unless mayStart, starting fails the test.
func refusedToStart(t *testing.T, dir string, mayStart bool) bool {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--listen", addr, "--data-dir", dir, "--no-auth", "--storage", "disk", "--log-format", "json")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			if waitErr == nil {
				t.Fatalf("the node exited 0 on a damaged store\n%s", stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			for _, want := range []string{"disk store", "docs/storage.md"} {
				if !strings.Contains(last, want) {
					t.Errorf("the refusal should say %q: %s", want, last)
				}
			}
			t.Logf("refused: %s", last)
			return true
		case <-time.After(20 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if !mayStart {
				t.Fatalf("the node started on a damaged store\n%s", stderr)
			}
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node neither started nor refused\n%s", stderr)
		}
	}
}

// TestStoragePubTTLSubLastBinary drives history through the binary's own
// client commands: pub --ttl stores, sub --last replays after a restart.
func TestStoragePubTTLSubLastBinary(t *testing.T) {
	dir := t.TempDir()
	n := startStorageNode(t, dir, "")
	for i := 1; i <= 3; i++ {
		_, stderr, code := run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-q", "1", "--ttl", "1h", "hist/bin", fmt.Sprintf("m%d", i))
		if code != 0 {
			t.Fatalf("pub: %d %s", code, stderr)
		}
	}
	n.stop(t)
	n = startStorageNode(t, dir, "")
	out, stderr, code := run(t, 10*time.Second, "", binary, "sub", "-s", n.addr, "--last", "2", "-C", "2", "-W", "5s", "hist/bin")
	if code != 0 {
		t.Fatalf("sub: %d %s", code, stderr)
	}
	if want := "hist/bin m2\nhist/bin m3\n"; out != want {
		t.Fatalf("sub --last 2 printed %q, want %q", out, want)
	}
}
