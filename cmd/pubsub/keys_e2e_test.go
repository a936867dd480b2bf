package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of channel keys (issue 3): the built binary's keygen
// against a node with authentication on, and Mosquitto's clients with a
// key as the CONNECT password.

// masterKeyLine is the ready line a fresh node prints once.
var masterKeyLine = regexp.MustCompile(`PUBSUB_KEY=(\S+) pubsub sub`)

// masterKeyOf waits for the node's first-start banner and returns the
// master key in it.
func masterKeyOf(t *testing.T, n *node) string {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(n.stderr.String(), "listening on") })
	m := masterKeyLine.FindStringSubmatch(n.stderr.String())
	if m == nil {
		t.Fatalf("a fresh node must print a master key:\n%s", n.stderr)
	}
	return m[1]
}

// pubsubOK runs the binary and returns its stdout, failing on a non-zero
// exit.
func pubsubOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, 20*time.Second, "", append([]string{binary}, args...)...)
	if code != 0 {
		t.Fatalf("pubsub %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// mintKey runs keygen and returns the key, checking stdout holds it alone.
func mintKey(t *testing.T, args ...string) string {
	t.Helper()
	out := pubsubOK(t, append([]string{"keygen"}, args...)...)
	key := strings.TrimSuffix(out, "\n")
	if key == "" || strings.ContainsAny(key, " \n") {
		t.Fatalf("keygen stdout must be the key alone, got %q", out)
	}
	return key
}

func TestKeygenEndToEnd(t *testing.T) {
	dir := t.TempDir()
	n := startNodeWith(t, dir)
	master := masterKeyOf(t, n)

	key := mintKey(t, "--data-dir", dir, "--channel", "chat/", "--sub", "alice", "--ttl", "1h")
	if out := pubsubOK(t, "keygen", "inspect", key, "--data-dir", dir); !strings.Contains(out, "status:     valid") ||
		!strings.Contains(out, "subject:    alice") || !strings.Contains(out, "read:       chat/#") {
		t.Fatalf("inspect of a fresh key:\n%s", out)
	}
	if out := pubsubOK(t, "keygen", "inspect", key, "-s", n.addr); !strings.Contains(out, "accepted by the node") {
		t.Fatalf("inspect through the node:\n%s", out)
	}

	// Publish and subscribe with the key. The retained message proves the
	// subscriber is in place before the live one goes out.
	pubsubOK(t, "pub", "-s", n.addr, "-k", key, "-r", "-q", "1", "chat/ready", "yes")
	_, out, done := startSub(t, n, "-k", key, "-C", "2", "chat/#")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "chat/ready yes") })
	pubsubOK(t, "pub", "-s", n.addr, "-k", key, "-q", "1", "chat/room1", "hello")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sub -C 2: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sub -C 2 did not get both messages")
	}
	if got := out.String(); got != "chat/ready yes\nchat/room1 hello\n" {
		t.Fatalf("sub printed %q", got)
	}

	// Outside the key's channel: refused, and the command says so.
	_, errOut, code := run(t, 10*time.Second, "", binary, "sub", "-s", n.addr, "-k", key, "-W", "5s", "other/#")
	if code == 0 || !strings.Contains(errOut, "refused") {
		t.Fatalf("sub other/# with a chat/ key: exit %d, stderr %q", code, errOut)
	}
	// No key at all: nothing is allowed on a node with auth on.
	_, errOut, code = run(t, 10*time.Second, "", binary, "sub", "-s", n.addr, "-W", "5s", "chat/#")
	if code == 0 || !strings.Contains(errOut, "refused") {
		t.Fatalf("sub without a key: exit %d, stderr %q", code, errOut)
	}

	// Online keygen with the master key the node printed.
	feed := mintKey(t, "-s", n.addr, "-k", master, "--read", "feed/#", "--sub", "dashboard")
	if out := pubsubOK(t, "keygen", "inspect", feed, "--data-dir", dir); !strings.Contains(out, "status:     valid") ||
		!strings.Contains(out, "perm:       rl (") || !strings.Contains(out, "subject:    dashboard") {
		t.Fatalf("inspect of an online key:\n%s", out)
	}

	// Revoke while a subscriber holds the key: it is cut off at once.
	_, live, liveDone := startSub(t, n, "-k", key, "chat/#")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(live.String(), "chat/ready yes") })
	if out := pubsubOK(t, "keygen", "revoke", key, "-s", n.addr, "-k", master); !strings.HasPrefix(out, "revoked key ") {
		t.Fatalf("revoke printed %q", out)
	}
	select {
	case err := <-liveDone:
		if err == nil {
			t.Fatal("a subscriber cut off by a revocation must exit non-zero")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the subscriber with the revoked key was not disconnected within 2s")
	}
	_, errOut, code = run(t, 10*time.Second, "", binary, "pub", "-s", n.addr, "-k", key, "chat/room1", "after")
	if code == 0 || !strings.Contains(errOut, "not authorized") {
		t.Fatalf("pub with a revoked key: exit %d, stderr %q", code, errOut)
	}
	out2, errOut, code := run(t, 10*time.Second, "", binary, "keygen", "inspect", key, "--data-dir", dir)
	if code != 1 || !strings.Contains(out2, "status:     revoked") {
		t.Fatalf("inspect after revoke: exit %d\n%s%s", code, out2, errOut)
	}
	// The other key is untouched.
	pubsubOK(t, "keygen", "inspect", feed, "--data-dir", dir)
}

// TestMasterKeyPrintedOnce: the banner comes with a new secret only, and
// the master key it showed keeps working after a restart.
func TestMasterKeyPrintedOnce(t *testing.T) {
	dir := t.TempDir()
	first := startNodeWith(t, dir)
	master := masterKeyOf(t, first)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.done <- <-first.done // for Cleanup

	again := startNodeWith(t, dir)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(again.stderr.String(), "listening on") })
	if strings.Contains(again.stderr.String(), master) || masterKeyLine.MatchString(again.stderr.String()) {
		t.Fatalf("a restarted node must not print a master key:\n%s", again.stderr)
	}
	mintKey(t, "-s", again.addr, "-k", master, "--channel", "x/")
	if st, err := os.Stat(filepath.Join(dir, "secret")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the node's secret must be a 0600 file: %v %v", st, err)
	}
}

// TestMosquittoWithKeys: Mosquitto's clients with -u NAME -P KEY against a
// node with auth on; without a key their subscription is denied.
func TestMosquittoWithKeys(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_sub missing in CI: .ci/run installs mosquitto-clients")
		}
		t.Skip("mosquitto-clients not installed")
	}
	dir := t.TempDir()
	n := startNodeWith(t, dir)
	masterKeyOf(t, n)
	key := mintKey(t, "--data-dir", dir, "--channel", "mq/")
	host, port, _ := net.SplitHostPort(n.addr)
	auth := []string{"-h", host, "-p", port, "-u", "alice", "-P", key}

	if _, e, code := run(t, 10*time.Second, "", append(append([]string{"mosquitto_pub"}, auth...), "-t", "mq/ready", "-m", "r", "-r", "-q", "1")...); code != 0 {
		t.Fatalf("mosquitto_pub -P KEY: %s", e)
	}
	cmd := exec.Command("mosquitto_sub", append(auth, "-t", "mq/#", "-v", "-C", "2", "-q", "1")...)
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "mq/ready r") })
	if _, e, code := run(t, 10*time.Second, "", append(append([]string{"mosquitto_pub"}, auth...), "-t", "mq/x", "-m", "live", "-q", "1")...); code != 0 {
		t.Fatalf("mosquitto_pub: %s", e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mosquitto_sub did not get 2 messages")
	}
	if got := out.String(); got != "mq/ready r\nmq/x live\n" {
		t.Fatalf("mosquitto_sub printed %q", got)
	}

	// Without a key: the SUBACK refuses the filter (0x80).
	got, errOut, code := run(t, 10*time.Second, "", "mosquitto_sub", "-h", host, "-p", port, "-t", "mq/#", "-C", "1", "-W", "3")
	if code == 0 && !strings.Contains(got+errOut, "denied") {
		t.Fatalf("mosquitto_sub without a key: exit 0, output %q %q", got, errOut)
	}
	if strings.Contains(got, "mq/ready") {
		t.Fatalf("mosquitto_sub without a key received a message: %q", got)
	}
	// Outside the key's channel, with the key: refused too.
	got, errOut, code = run(t, 10*time.Second, "", append(append([]string{"mosquitto_sub"}, auth...), "-t", "other/#", "-C", "1", "-W", "3")...)
	if code == 0 && !strings.Contains(got+errOut, "denied") {
		t.Fatalf("mosquitto_sub other/#: exit 0, output %q %q", got, errOut)
	}
	// A key from another node's secret: the CONNECT is refused.
	foreign := mintKey(t, "--secret", strings.TrimSpace(pubsubOK(t, "keygen", "secret")), "--channel", "mq/")
	_, errOut, code = run(t, 10*time.Second, "", "mosquitto_pub", "-h", host, "-p", port, "-u", "mallory", "-P", foreign, "-t", "mq/x", "-m", "no")
	if code == 0 || !strings.Contains(strings.ToLower(errOut), "not authori") {
		t.Fatalf("mosquitto_pub with a foreign key: exit %d, stderr %q", code, errOut)
	}
}
