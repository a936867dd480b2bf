//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The issue-5 acceptance test: the unmodified npm eventhub-jsclient 2.4.2
// drives the built binary. The Node side is client/eventhub-js/test/
// eventhub.test.mjs; this wrapper owns the processes: it starts the node
// with the disk store and auth on, mints the keys with the master key the
// node prints, runs `node --test`, and serves the control endpoint the
// Node test calls to restart the node mid-test.

// eventhubJSDir is the Node package, relative to this package's directory
// (go test runs in it).
const eventhubJSDir = "../../client/eventhub-js"

// eventhubJSClientVersion is the published client the test must run.
const eventhubJSClientVersion = "2.4.2"

// eventhubJSBudget bounds the whole Node run, restarts included.
const eventhubJSBudget = 60 * time.Second

func TestEventhubJSClient(t *testing.T) {
	nodeJS := requireTool(t, "node")
	ensureNodeModules(t)

	home, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	pubsub := &movingNode{dataDir: t.TempDir(), args: []string{"--storage", "disk"}}
	t.Cleanup(func() {
		if err := pubsub.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			pubsub.logStderr(t)
		}
	})
	if err := pubsub.moveTo(home); err != nil {
		t.Fatal(err)
	}
	master := masterKeyOf(t, pubsub.node())
	writer := mintKey(t, "-s", home, "-k", master, "--read", "eh/#", "--write", "eh/#", "--sub", "alice")
	reader := mintKey(t, "-s", home, "-k", master, "--read", "eh/#", "--sub", "bob")

	control := httptest.NewServer(pubsub.controlHandler(t, home))
	t.Cleanup(control.Close)

	ctx, cancel := context.WithTimeout(context.Background(), eventhubJSBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeJS, "--test", "--test-reporter=tap", "test/eventhub.test.mjs")
	cmd.Dir = eventhubJSDir
	cmd.Env = append(os.Environ(),
		"PUBSUB_URL=ws://"+home,
		"PUBSUB_TOKEN="+writer,
		"PUBSUB_READONLY_TOKEN="+reader,
		"PUBSUB_CONTROL="+control.URL,
	)
	// node --test runs the file in a child process: a timeout must end the
	// whole group, not only the runner.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish within %s:\n%s", eventhubJSBudget, out.String())
	}
	if runErr != nil {
		t.Fatalf("node --test: %v\n%s", runErr, out.String())
	}
	if err := checkTAPSummary(out.String()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("eventhub-jsclient %s against the binary:\n%s", eventhubJSClientVersion, tapSummary(out.String()))
}

// requireTool finds a command the test needs: skipped on a developer
// machine without it, a failure in CI, where .ci/run provides it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI: the eventhub-jsclient acceptance test needs Node.js >= 18.15 and npm", name)
		}
		t.Skipf("%s not installed: skipping the eventhub-jsclient acceptance test", name)
	}
	return path
}

// ensureNodeModules installs the committed package-lock's packages when
// .ci/run has not, and checks the client is the published version.
func ensureNodeModules(t *testing.T) {
	t.Helper()
	manifest := filepath.Join(eventhubJSDir, "node_modules", "eventhub-jsclient", "package.json")
	if _, err := os.Stat(manifest); errors.Is(err, os.ErrNotExist) {
		npm := requireTool(t, "npm")
		// npm may warn about an unknown "nodedir" user config; harmless.
		_, errOut, code := run(t, eventhubJSBudget, "", npm, "ci", "--prefix", eventhubJSDir, "--no-audit", "--no-fund")
		if code != 0 {
			t.Fatalf("npm ci in %s: exit %d: %s", eventhubJSDir, code, errOut)
		}
	}
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatalf("%s: %v", manifest, err)
	}
	if pkg.Version != eventhubJSClientVersion {
		t.Fatalf("installed eventhub-jsclient is %s, want %s: run npm ci in %s", pkg.Version, eventhubJSClientVersion, eventhubJSDir)
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// launchNode starts `pubsub serve` on addr and waits for /healthz. Unlike
// startNodeWith it takes the address, so a node can come back where its
// clients expect it, and it returns errors instead of failing the test, so
// the control endpoint can use it from its own goroutine. The caller stops
// the node (stopNode).
func launchNode(addr, dataDir string, args ...string) (*node, error) {
	args = append([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--log-format", "json"}, args...)
	cmd := exec.Command(binary, args...)
	n := &node{cmd: cmd, addr: addr, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { n.done <- cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-n.done
			return nil, fmt.Errorf("node on %s did not become healthy: %v\n%s", addr, err, n.stderr)
		}
		select {
		case err := <-n.done:
			return nil, fmt.Errorf("node on %s exited early: %v\n%s", addr, err, n.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopNode stops a node the way an operator does (SIGTERM) and reports
// anything but a clean exit: a disk store that fails to close is an error.
func stopNode(n *node) error {
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-n.done:
		if err != nil {
			return fmt.Errorf("node on %s: exit after SIGTERM: %v\n%s", n.addr, err, n.stderr)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("node on %s did not stop within 10s of SIGTERM", n.addr)
	}
}

// movingNode is one node's data dir served by a succession of processes:
// each move stops the running one and starts the next on the given
// address, with the same data (the disk store, the secret).
type movingNode struct {
	dataDir string
	args    []string

	mu      sync.Mutex
	current *node   // the running process; nil between moves and after stop
	all     []*node // every process started, for their logs
}

func (m *movingNode) node() *node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current
}

// moveTo stops the running process, if any, and starts one on addr.
func (m *movingNode) moveTo(addr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current != nil {
		n := m.current
		m.current = nil
		if err := stopNode(n); err != nil {
			return err
		}
	}
	n, err := launchNode(addr, m.dataDir, m.args...)
	if err != nil {
		return err
	}
	m.current = n
	m.all = append(m.all, n)
	return nil
}

func (m *movingNode) stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current == nil {
		return nil
	}
	n := m.current
	m.current = nil
	return stopNode(n)
}

// logStderr shows the tail of every process's log, for a failure.
func (m *movingNode) logStderr(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, n := range m.all {
		log := n.stderr.String()
		if len(log) > 4096 {
			log = "…" + log[len(log)-4096:]
		}
		t.Logf("node process %d on %s:\n%s", i+1, n.addr, log)
	}
}

// controlHandler serves the Node test's restart requests:
//
//	POST /aside  stop the node and start it on a fresh address -> {"url": "ws://ADDR"}
//	POST /home   stop it and start it on home again            -> {"url": "ws://HOME"}
//
// While the node is aside its clients' reconnects to home fail, so what is
// published there reaches them only through replay.
func (m *movingNode) controlHandler(t *testing.T, home string) http.Handler {
	mux := http.NewServeMux()
	move := func(w http.ResponseWriter, addr string, err error) {
		if err == nil {
			err = m.moveTo(addr)
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			// The handler runs on the server's goroutine: Errorf, not Fatal.
			t.Errorf("control: %v", err)
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"url": "ws://" + addr})
	}
	mux.HandleFunc("POST /aside", func(w http.ResponseWriter, _ *http.Request) {
		addr, err := freeAddr()
		move(w, addr, err)
	})
	mux.HandleFunc("POST /home", func(w http.ResponseWriter, _ *http.Request) {
		move(w, home, nil)
	})
	return mux
}

var tapCount = regexp.MustCompile(`(?m)^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$`)

// checkTAPSummary requires that every test ran and passed: a skipped or
// cancelled test is not a pass.
func checkTAPSummary(tap string) error {
	counts := map[string]string{}
	for _, m := range tapCount.FindAllStringSubmatch(tap, -1) {
		counts[m[1]] = m[2]
	}
	if counts["tests"] == "" || counts["tests"] == "0" {
		return errors.New("node --test ran no tests")
	}
	if counts["pass"] != counts["tests"] {
		return fmt.Errorf("node --test: %s of %s tests passed", counts["pass"], counts["tests"])
	}
	for _, k := range []string{"fail", "cancelled", "skipped", "todo"} {
		if counts[k] != "0" {
			return fmt.Errorf("node --test: %s %q", k, counts[k])
		}
	}
	return nil
}

// tapSummary keeps the test names and the totals of a TAP report.
func tapSummary(tap string) string {
	var b strings.Builder
	for _, line := range strings.Split(tap, "\n") {
		if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "not ok ") ||
			(strings.HasPrefix(line, "# ") && tapCount.MatchString(line)) || strings.HasPrefix(line, "# duration_ms") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
