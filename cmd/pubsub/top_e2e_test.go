package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTopInTmux is the acceptance test of `pubsub top`: the real binary in
// a real terminal (tmux), against a node with authentication on, reading
// $SYS/stats with the master key the node printed, while `pubsub pub`
// sends traffic. It passes when the node's row shows messages coming in,
// a key press reaches the program, and q ends it with exit status 0.
func TestTopInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux missing in CI: .ci/run installs it")
		}
		t.Skip("tmux not installed")
	}
	const (
		nodeName = "top-e2e"
		interval = "250ms"
	)
	// Inherited by the node: snapshots four times a second, so rates show
	// up quickly.
	t.Setenv("PUBSUB_STATS_INTERVAL", interval)
	n := startNodeWith(t, t.TempDir(), "--node-name", nodeName)
	var masterKey string
	waitFor(t, 10*time.Second, func() bool {
		masterKey = masterKeyFromBanner(n.stderr.String())
		return masterKey != ""
	})

	pub := exec.Command(binary, "pub", "-s", n.addr, "-k", masterKey, "--count", "100000", "--interval", "1ms", "load/top", "tick")
	pub.Stderr = os.Stderr
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	waitInBackground(t, pub)

	dir := t.TempDir()
	exitFile := filepath.Join(dir, "exit")
	stderrFile := filepath.Join(dir, "stderr")
	// A private tmux server (-L), never the user's, without their config.
	tmux := func(args ...string) (string, error) {
		cmd := exec.Command("tmux", append([]string{"-L", fmt.Sprintf("pubsub-e2e-top-%d", os.Getpid()), "-f", "/dev/null"}, args...)...)
		if os.Getenv("TERM") == "" {
			cmd.Env = append(os.Environ(), "TERM=xterm")
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { _, _ = tmux("kill-server") })
	topCmd := fmt.Sprintf("%s top --server %s --key %s --interval %s 2>%s; echo EXIT=$? >%s",
		quoteForShell(binary), quoteForShell(n.addr), quoteForShell(masterKey), interval, quoteForShell(stderrFile), quoteForShell(exitFile))
	if out, err := tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "40", topCmd); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	var pane string
	capture := func() string {
		pane, _ = tmux("capture-pane", "-p", "-t", "top")
		return pane
	}
	defer func() {
		if t.Failed() {
			stderr, _ := os.ReadFile(stderrFile)
			t.Logf("last screen:\n%s\ntop's stderr: %s", pane, stderr)
		}
	}()

	waitFor(t, 15*time.Second, func() bool {
		rate, ok := messagesInPerSecond(capture(), nodeName)
		return ok && rate > 0
	})
	if !strings.Contains(pane, "connected") {
		t.Errorf("header does not show the connection:\n%s", pane)
	}

	// One key at a time: keys typed together arrive as one multi-rune
	// key message.
	if out, err := tmux("send-keys", "-t", "top", "?"); err != nil {
		t.Fatalf("send-keys ?: %v: %s", err, out)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(capture(), "scroll down") })

	if out, err := tmux("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("send-keys q: %v: %s", err, out)
	}
	var status string
	waitFor(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(exitFile)
		status = string(b)
		return err == nil && strings.HasSuffix(status, "\n")
	})
	if status != "EXIT=0\n" {
		stderr, _ := os.ReadFile(stderrFile)
		t.Fatalf("top ended with %q after q; stderr: %s", strings.TrimSpace(status), stderr)
	}
}

// masterKeyFromBanner returns the key `pubsub serve` prints on first start: the
// first non-empty line after "Master key".
func masterKeyFromBanner(stderr string) string {
	_, after, ok := strings.Cut(stderr, "Master key")
	if !ok {
		return ""
	}
	lines := strings.Split(after, "\n")
	for _, line := range lines[1:] {
		if key := strings.TrimSpace(line); key != "" {
			return key
		}
	}
	return ""
}

// messagesInPerSecond reads the MSG/S IN cell of node's row on a captured
// screen. Numeric cells are right-aligned under their title, so the cell
// ends where the title ends.
func messagesInPerSecond(screen, node string) (float64, bool) {
	const title = "MSG/S IN"
	var header, row []rune
	for _, line := range strings.Split(screen, "\n") {
		switch {
		case strings.HasPrefix(line, "NODE") && strings.Contains(line, title):
			header = []rune(line)
		case strings.HasPrefix(line, node+" "):
			row = []rune(line)
		}
	}
	if header == nil || row == nil {
		return 0, false
	}
	// Each rune before the column (▲ in a title included) is one cell.
	end := strings.Index(string(header), title)
	end = len([]rune(string(header)[:end])) + len([]rune(title))
	if end > len(row) {
		return 0, false
	}
	fields := strings.Fields(string(row[:end]))
	if len(fields) == 0 {
		return 0, false
	}
	return parseTopRate(fields[len(fields)-1])
}

// parseTopRate reads the monitor's compact numbers: 480, 7.2k, 1.5M, 2.0G; "-"
// (no rate yet) is not a number.
func parseTopRate(s string) (float64, bool) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return v * mult, true
}

// quoteForShell quotes s for sh.
func quoteForShell(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestTopScreenParsing pins the screen reader the acceptance test relies
// on, so a pass there means a rate above zero was really read.
func TestTopScreenParsing(t *testing.T) {
	const screen = `pubsub top  127.0.0.1:18555  ● connected                          07:23:05 · every 250ms
nodes 2/2 up   conns 2   subs 1   slow consumers 0   dropped 0 (0/s)

NODE▲    ADDRESS           UPTIME   CONNS    SUBS  MSG/S IN  MSG/S OUT   B/S IN  B/S OUT     P99
top-e2e  127.0.0.1:18555       5s       2       1      7.2k        3.8     1.5K     2.2K   451µs
idle     127.0.0.1:18556       5s       0       0         -          -        -        -       -
`
	tests := []struct {
		node   string
		want   float64
		wantOK bool
	}{
		{"top-e2e", 7200, true},
		{"idle", 0, false},    // no rate yet
		{"missing", 0, false}, // no row
	}
	for _, tt := range tests {
		got, ok := messagesInPerSecond(screen, tt.node)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, %v", tt.node, got, ok, tt.want, tt.wantOK)
		}
	}
	for in, want := range map[string]float64{"480": 480, "4.0": 4, "1.5M": 1.5e6, "2.0G": 2e9} {
		if got, ok := parseTopRate(in); !ok || got != want {
			t.Errorf("parseTopRate(%q) = %v, %v", in, got, ok)
		}
	}
	if key := masterKeyFromBanner("New secret.\nMaster key (shown once):\n\n  abc.def.ghi\n\nTry:\n"); key != "abc.def.ghi" {
		t.Errorf("master key %q", key)
	}
}
