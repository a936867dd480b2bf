package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests: build the real binary once, start real node processes,
// drive them with the binary's own client commands and with Mosquitto's.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pubsub-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pubsub")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type node struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan error
}

// startNode runs `pubsub serve --no-auth` and waits for /healthz; tests of
// keys use startNodeWith.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	return startNodeWith(t, t.TempDir(), append([]string{"--no-auth"}, args...)...)
}

func startNodeWith(t *testing.T, dataDir string, args ...string) *node {
	t.Helper()
	addr := freePort(t)
	args = append([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--log-format", "json"}, args...)
	cmd := exec.Command(binary, args...)
	n := &node{cmd: cmd, addr: addr, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not become healthy: %v\n%s", err, n.stderr)
		}
		select {
		case err := <-n.done:
			n.done <- err // for the cleanup, which waits for the exit
			t.Fatalf("node exited early: %v\n%s", err, n.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func run(t *testing.T, timeout time.Duration, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// startSub starts `pubsub sub` and waits until the node has registered the
// subscription, proven by a retained-free probe message it prints.
func startSub(t *testing.T, n *node, args ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"sub", "-s", n.addr}, args...)...)
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, waitInBackground(t, cmd)
}

// waitInBackground waits for cmd; the returned channel yields its exit once
// and the test's cleanup kills it if it is still running.
func waitInBackground(t *testing.T, cmd *exec.Cmd) chan error {
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		done <- err
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not exit after kill", cmd.Path)
		}
	})
	return done
}

func TestPubSubWithTheBinary(t *testing.T) {
	n := startNode(t)
	// Retained first, so the subscriber's first line proves it is subscribed.
	if _, e, code := run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-r", "-q", "1", "e2e/ready", "yes"); code != 0 {
		t.Fatalf("pub retained: exit %d: %s", code, e)
	}
	_, out, done := startSub(t, n, "-C", "3", "e2e/#")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "e2e/ready yes") })
	if _, e, code := run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-q", "2", "e2e/a", "from-arg"); code != 0 {
		t.Fatalf("pub: exit %d: %s", code, e)
	}
	if _, e, code := run(t, 10*time.Second, "from-stdin", binary, "pub", "-s", n.addr, "e2e/b"); code != 0 {
		t.Fatalf("pub stdin: exit %d: %s", code, e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sub -C 3 exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sub -C 3 did not exit")
	}
	want := "e2e/ready yes\ne2e/a from-arg\ne2e/b from-stdin\n"
	if out.String() != want {
		t.Fatalf("sub printed %q, want %q", out.String(), want)
	}
}

func TestSubTimeoutExitCode(t *testing.T) {
	n := startNode(t)
	_, stderr, code := run(t, 10*time.Second, "", binary, "sub", "-s", n.addr, "-W", "300ms", "nothing/#")
	if code != 3 {
		t.Fatalf("exit %d, want 3 (timeout, nothing arrived); stderr %q", code, stderr)
	}
	if !strings.Contains(stderr, "no message within") {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestLinesAndJSON(t *testing.T) {
	n := startNode(t)
	if _, e, code := run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-r", "lines/ready", "1"); code != 0 {
		t.Fatal(e)
	}
	_, out, done := startSub(t, n, "--json", "-C", "4", "lines/#")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), `"lines/ready"`) })
	if _, e, code := run(t, 10*time.Second, "one\ntwo\nthree\n", binary, "pub", "-s", n.addr, "--lines", "-q", "1", "lines/x"); code != 0 {
		t.Fatalf("pub --lines: %s", e)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sub did not exit")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines: %q", len(lines), out.String())
	}
	for i, want := range []string{"one", "two", "three"} {
		if !strings.Contains(lines[i+1], `"payload":"`+want+`"`) || !strings.Contains(lines[i+1], `"qos":0`) {
			t.Errorf("line %d = %s", i+1, lines[i+1])
		}
	}
}

// TestMosquittoClients drives the node with Debian's mosquitto_pub and
// mosquitto_sub (installed by .ci/run).
func TestMosquittoClients(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_sub missing in CI: .ci/run installs mosquitto-clients")
		}
		t.Skip("mosquitto-clients not installed")
	}
	n := startNode(t)
	host, port, _ := net.SplitHostPort(n.addr)
	if _, e, code := run(t, 10*time.Second, "", "mosquitto_pub", "-h", host, "-p", port, "-t", "mq/ready", "-m", "r", "-r", "-q", "1"); code != 0 {
		t.Fatalf("mosquitto_pub: %s", e)
	}
	cmd := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", "mq/#", "-v", "-C", "2", "-q", "1")
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "mq/ready r") })
	if _, e, code := run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-q", "1", "mq/x", "from pubsub"); code != 0 {
		t.Fatalf("pub: %s", e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mosquitto_sub did not get 2 messages")
	}
	if got := out.String(); got != "mq/ready r\nmq/x from pubsub\n" {
		t.Fatalf("mosquitto_sub printed %q", got)
	}
}

func TestGracefulShutdownExitsZero(t *testing.T) {
	n := startNode(t)
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.done:
		n.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, n.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop on SIGTERM")
	}
}

// TestBadConfigStopsBeforeBinding covers I1/I2: the error names the key and
// no port is bound.
func TestBadConfigStopsBeforeBinding(t *testing.T) {
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "pubsub.yaml")
	os.WriteFile(cfg, []byte("limits:\n  max_queued: 0\n"), 0o600)
	_, stderr, code := run(t, 10*time.Second, "", binary, "serve", "--listen", addr, "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "limits.max_queued") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	os.WriteFile(cfg, []byte("limits:\n  max_qeued: 5\n"), 0o600)
	_, stderr, code = run(t, 10*time.Second, "", binary, "serve", "--listen", addr, "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "max_qeued") || !strings.Contains(stderr, "line 2") {
		t.Fatalf("unknown key: exit %d, stderr %q", code, stderr)
	}
	// Port in use (I2): occupy it and expect a quick, clear failure.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reuse race: %v", err)
	}
	defer ln.Close()
	start := time.Now()
	_, stderr, code = run(t, 10*time.Second, "", binary, "serve", "--listen", addr, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "address already in use") || time.Since(start) > 5*time.Second {
		t.Fatalf("port in use: exit %d after %s, stderr %q", code, time.Since(start), stderr)
	}
}

func TestPrintConfig(t *testing.T) {
	out, stderr, code := run(t, 10*time.Second, "", binary, "serve", "--print-config", "--listen", "127.0.0.1:1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"listen: 127.0.0.1:1", "max_inflight: 32", "write_timeout: 5s", "max_packet_size: 1MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"pub"},
		{"pub", "-q", "3", "a", "b"},
		{"sub", "--format", "xml", "a"},
		{"nosuchcommand"},
		{"sub", "--bogus", "a"},
	} {
		_, stderr, code := run(t, 10*time.Second, "", append([]string{binary}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
			t.Errorf("%v: error should be short: %q", args, stderr)
		}
	}
	_, stderr, code := run(t, 10*time.Second, "", binary, "pub", "-s", freePort(t), "x", "y")
	if code != 1 || !strings.Contains(stderr, "connect to") {
		t.Errorf("unreachable node: exit %d, stderr %q", code, stderr)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
