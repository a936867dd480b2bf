package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/keys"
)

// keygenEnv is an environment for an in-process run: only what it lists.
type keygenEnv map[string]string

func (e keygenEnv) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// runKeygen runs `pubsub ARGS` through Execute, as main does.
func runKeygenCLI(t *testing.T, env keygenEnv, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: env.lookup}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code = Execute(ctx, args, streams, BuildInfo{})
	return code, out.String(), errOut.String()
}

// checkKeygenLeaks verifies, after the test's other cleanups (a node's
// Close included), that no goroutine was left behind.
func checkKeygenLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// testSecret returns a fresh secret, its text form and a keyring over it.
func testSecret(t *testing.T, opts keys.KeyringOptions) (keys.Secret, string, *keys.Keyring) {
	t.Helper()
	sec, err := keys.GenerateSecret()
	require.NoError(t, err)
	ring, err := keys.NewKeyring(opts, sec)
	require.NoError(t, err)
	return sec, sec.Encode(), ring
}

// writeDataDir makes a node-like data directory holding sec.
func writeDataDir(t *testing.T, sec keys.Secret) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, keys.SecretFileName), []byte(sec.Encode()+"\n"), 0o600))
	return dir
}

// keysNode is an in-process node with authentication on.
type keysNode struct {
	addr   string
	srv    *broker.Server
	master string
}

func startKeysNode(t *testing.T) keysNode {
	t.Helper()
	srv, addr := startTestNode(t, "127.0.0.1:0", func(c *broker.Config) { c.NoAuth = false })
	master, err := srv.FreshMasterKey()
	require.NoError(t, err)
	require.NotEmpty(t, master, "a fresh data dir must yield a master key")
	return keysNode{addr: addr, srv: srv, master: master}
}

func TestKeygenUsageErrors(t *testing.T) {
	_, secretText, ring := testSecret(t, keys.KeyringOptions{})
	extend, err := ring.Sign(keys.Claims{Read: []string{"a/#"}, Write: []string{"a/#"}, Perm: "e"})
	require.NoError(t, err)
	tests := []struct {
		name    string
		env     keygenEnv
		args    []string
		wantErr string
	}{
		{"nothing to mint for", nil, []string{"keygen", "--secret", secretText}, "say what the key is for"},
		{"no secret no key", nil, []string{"keygen", "--channel", "chat/"}, "no secret and no master key"},
		{"channel without slash", nil, []string{"keygen", "--secret", secretText, "--channel", "chat"}, "must end with '/'"},
		{"channel empty level", nil, []string{"keygen", "--secret", secretText, "--channel", "a//"}, "empty level"},
		{"channel bad byte", nil, []string{"keygen", "--secret", secretText, "--channel", "a b/"}, "not allowed"},
		{"perm unknown letter", nil, []string{"keygen", "--secret", secretText, "--channel", "a/", "--perm", "rwx"}, "unknown letter"},
		{"perm empty", nil, []string{"keygen", "--secret", secretText, "--channel", "a/", "--perm", ""}, "--perm is empty"},
		{"ttl negative", nil, []string{"keygen", "--secret", secretText, "--channel", "a/", "--ttl", "-1h"}, "--ttl"},
		{"ttl not a duration", nil, []string{"keygen", "--secret", secretText, "--channel", "a/", "--ttl", "soon"}, "invalid argument"},
		{"read filter invalid", nil, []string{"keygen", "--secret", secretText, "--read", "a/#/b"}, "not a valid topic filter"},
		{"write filter empty", nil, []string{"keygen", "--secret", secretText, "--write", ""}, "not a valid topic filter"},
		{"secret and data dir", nil, []string{"keygen", "--secret", secretText, "--data-dir", "x", "--channel", "a/"}, "not both"},
		{"secret and server", nil, []string{"keygen", "--secret", secretText, "--server", "127.0.0.1:1", "--channel", "a/"}, "one or the other"},
		{"secret malformed", nil, []string{"keygen", "--secret", "pubsub.v1.nokey", "--channel", "a/"}, "--secret"},
		{"env secret malformed", keygenEnv{"PUBSUB_SECRET": "pubsub.v1.k.!!"}, []string{"keygen", "--channel", "a/"}, "PUBSUB_SECRET"},
		{"master online", nil, []string{"keygen", "-s", "127.0.0.1:1", "-k", extend, "--perm", "m"}, "offline only"},
		{"extend key with filters", nil, []string{"keygen", "-s", "127.0.0.1:1", "-k", extend, "--read", "a/b"}, "need a master --key"},
		{"extend key with subject", nil, []string{"keygen", "-s", "127.0.0.1:1", "-k", extend, "--channel", "a/", "--sub", "x"}, "need a master --key"},
		{"unknown subcommand", nil, []string{"keygen", "mint"}, "unknown command"},
		{"secret takes no args", nil, []string{"keygen", "secret", "x"}, "unknown command"},
		{"inspect without key", nil, []string{"keygen", "inspect"}, "accepts 1 arg"},
		{"inspect two keys", nil, []string{"keygen", "inspect", "a", "b"}, "accepts 1 arg"},
		{"inspect secret and server", nil, []string{"keygen", "inspect", extend, "--secret", secretText, "-s", "127.0.0.1:1"}, "one or the other"},
		{"revoke without master", nil, []string{"keygen", "revoke", extend}, "needs a master key"},
		{"revoke empty target", keygenEnv{"PUBSUB_KEY": extend}, []string{"keygen", "revoke", " "}, "give the key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKeygenCLI(t, tt.env, tt.args...)
			require.Equal(t, ExitUsage, code, "stderr: %s", stderr)
			require.Contains(t, stderr, tt.wantErr)
			require.Empty(t, stdout, "a refused command prints no key")
			require.NotContains(t, stderr, secretText, "an error must not echo the secret")
		})
	}
}

func TestKeygenOfflineClaims(t *testing.T) {
	sec, secretText, ring := testSecret(t, keys.KeyringOptions{})
	tests := []struct {
		name      string
		args      []string
		wantRead  []string
		wantWrite []string
		wantPerm  string
		wantSub   string
		wantTTL   time.Duration // 0: no exp
	}{
		{"emitter channel", []string{"--channel", "chat/"}, []string{"chat/#"}, []string{"chat/#"}, "rwsl", "", 0},
		{"emitter wildcard channel", []string{"--channel", "a/#/", "--perm", "r"}, []string{"a/#"}, []string{"a/#"}, "r", "", 0},
		{"read only", []string{"--read", "sensors/#"}, []string{"sensors/#"}, nil, "rl", "", 0},
		{"write only", []string{"--write", "a/b", "--write", "a/c"}, nil, []string{"a/b", "a/c"}, "ws", "", 0},
		{"channel plus filters", []string{"--channel", "x/", "--read", "y/+"}, []string{"x/#", "y/+"}, []string{"x/#"}, "rwsl", "", 0},
		{"explicit perm and subject", []string{"--read", "a/#", "--perm", "rlp", "--sub", "alice"}, []string{"a/#"}, nil, "rlp", "alice", 0},
		{"ttl", []string{"--channel", "t/", "--ttl", "90m"}, []string{"t/#"}, []string{"t/#"}, "rwsl", "", 90 * time.Minute},
		{"master", []string{"--perm", "m"}, []string{"#"}, []string{"#"}, "m", "", 0},
		{"extend key", []string{"--channel", "p/", "--perm", "e", "--ttl", "1h"}, []string{"p/#"}, []string{"p/#"}, "e", "", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := runKeygenCLI(t, nil, append([]string{"keygen", "--secret", secretText}, tt.args...)...)
			require.Equal(t, ExitOK, code, "stderr: %s", stderr)
			require.Empty(t, stderr)
			key := strings.TrimSuffix(stdout, "\n")
			require.NotContains(t, key, "\n", "stdout must hold the key alone")
			cl, err := ring.Verify(key)
			require.NoError(t, err)
			require.Equal(t, tt.wantRead, cl.Read)
			require.Equal(t, tt.wantWrite, cl.Write)
			require.Equal(t, tt.wantPerm, cl.Perm)
			require.Equal(t, tt.wantSub, cl.Subject)
			require.Equal(t, sec.ID, cl.KeyID)
			require.NotEmpty(t, cl.ID, "every key gets a jti so it can be revoked")
			if tt.wantTTL == 0 {
				require.Nil(t, cl.ExpiresAt)
				return
			}
			require.NotNil(t, cl.ExpiresAt)
			require.WithinRange(t, cl.ExpiresAt.Time, start.Add(tt.wantTTL).Add(-time.Second), time.Now().Add(tt.wantTTL))
		})
	}
}

func TestKeygenSecretSources(t *testing.T) {
	sec, secretText, ring := testSecret(t, keys.KeyringOptions{})
	dir := writeDataDir(t, sec)
	bom := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bom, keys.SecretFileName), []byte("\ufeff"+secretText+"\r\n"), 0o600))
	tests := []struct {
		name string
		env  keygenEnv
		args []string
	}{
		{"--secret", nil, []string{"--secret", secretText}},
		{"PUBSUB_SECRET", keygenEnv{"PUBSUB_SECRET": secretText}, nil},
		{"--data-dir", nil, []string{"--data-dir", dir}},
		{"PUBSUB_DATA_DIR", keygenEnv{"PUBSUB_DATA_DIR": dir}, nil},
		{"secret file with BOM and CRLF", nil, []string{"--data-dir", bom}},
		{"--data-dir wins over PUBSUB_SECRET", keygenEnv{"PUBSUB_SECRET": "pubsub.v1.k.!!"}, []string{"--data-dir", dir}},
		// PUBSUB_KEY in the environment does not send an offline mint online.
		{"secret wins over PUBSUB_KEY", keygenEnv{"PUBSUB_SECRET": secretText, "PUBSUB_KEY": "x.y.z"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKeygenCLI(t, tt.env, append([]string{"keygen", "--channel", "s/"}, tt.args...)...)
			require.Equal(t, ExitOK, code, "stderr: %s", stderr)
			_, err := ring.Verify(strings.TrimSpace(stdout))
			require.NoError(t, err)
		})
	}
}

func TestKeygenShortEventhubSecretWarns(t *testing.T) {
	raw := "eventhub-secret" // a typical short JWT_SECRET
	code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "--secret", raw, "--read", "a/#")
	require.Equal(t, ExitOK, code, stderr)
	require.Contains(t, stderr, "warning")
	require.NotContains(t, stderr, raw)
	sec, err := keys.ParseSecret(raw)
	require.NoError(t, err)
	ring, err := keys.NewKeyring(keys.KeyringOptions{AllowShortSecret: true}, sec)
	require.NoError(t, err)
	_, err = ring.Verify(strings.TrimSpace(stdout))
	require.NoError(t, err, "a node with keys.eventhub_secret accepts it")
}

// TestKeygenDataDirNeverCreates: an offline mint reads DATA_DIR/secret and
// must never make one, nor anything else, in the directory.
func TestKeygenDataDirNeverCreates(t *testing.T) {
	sec, _, ring := testSecret(t, keys.KeyringOptions{})
	key, err := ring.Sign(keys.Claims{Read: []string{"a/#"}, Perm: "r"})
	require.NoError(t, err)
	empty := t.TempDir()
	loose := writeDataDir(t, sec)
	require.NoError(t, os.Chmod(filepath.Join(loose, keys.SecretFileName), 0o644))
	blank := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(blank, keys.SecretFileName), []byte("\n"), 0o600))
	tests := []struct {
		name, dir, wantErr string
	}{
		{"missing", empty, "no secret in"},
		{"missing directory", filepath.Join(empty, "nope"), "no secret in"},
		{"readable by others", loose, "chmod 600"},
		{"empty file", blank, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadDir(tt.dir)
			code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "--data-dir", tt.dir, "--channel", "a/")
			require.Equal(t, ExitRuntime, code)
			require.Contains(t, stderr, tt.wantErr)
			require.Empty(t, stdout)
			after, _ := os.ReadDir(tt.dir)
			require.Equal(t, len(before), len(after), "keygen must not create files in the data dir")
			code, _, stderr = runKeygenCLI(t, nil, "keygen", "inspect", key, "--data-dir", tt.dir)
			require.Equal(t, ExitRuntime, code)
			require.Contains(t, stderr, tt.wantErr)
			after, _ = os.ReadDir(tt.dir)
			require.Equal(t, len(before), len(after), "inspect must not create files in the data dir")
		})
	}
	t.Run("no revocation list", func(t *testing.T) {
		dir := writeDataDir(t, sec)
		code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "inspect", key, "--data-dir", dir)
		require.Equal(t, ExitOK, code, stderr)
		require.Contains(t, stdout, "status:     valid")
		_, err := os.Stat(filepath.Join(dir, keys.RevocationsFileName))
		require.ErrorIs(t, err, os.ErrNotExist, "inspect must not create the revocation list")
	})
}

func TestKeygenJSON(t *testing.T) {
	sec, secretText, ring := testSecret(t, keys.KeyringOptions{})
	code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "--secret", secretText, "--channel", "j/", "--sub", "bob", "--ttl", "1h", "--json")
	require.Equal(t, ExitOK, code, stderr)
	var rep keyReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep))
	require.Equal(t, "j/", rep.Channel)
	require.Equal(t, "HS256", rep.Alg)
	require.Equal(t, sec.ID, rep.KeyID)
	cl, err := ring.Verify(rep.Key)
	require.NoError(t, err)
	require.Equal(t, cl.ID, rep.Claims.ID)
	require.Equal(t, []string{"j/#"}, rep.Claims.Read)
	require.Equal(t, "bob", rep.Claims.Subject)
	require.Equal(t, cl.ExpiresAt.Unix(), rep.Claims.ExpiresAt.Unix())
}

func TestKeygenSecretCommand(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "secret")
		require.Equal(t, ExitOK, code, stderr)
		text := strings.TrimSuffix(stdout, "\n")
		require.True(t, strings.HasPrefix(text, "pubsub.v1."), text)
		sec, err := keys.ParseSecret(text)
		require.NoError(t, err)
		require.NoError(t, sec.Validate(), "a new secret must be strong enough for a node")
		require.False(t, seen[text], "two runs must not print the same secret")
		seen[text] = true
	}
}

func TestKeygenInspectOffline(t *testing.T) {
	sec, secretText, ring := testSecret(t, keys.KeyringOptions{})
	_, otherText, _ := testSecret(t, keys.KeyringOptions{})
	dir := writeDataDir(t, sec)
	now := time.Now()
	sign := func(c keys.Claims) string {
		t.Helper()
		if c.Read == nil {
			c.Read = []string{"chat/#"}
		}
		tok, err := ring.Sign(c)
		require.NoError(t, err)
		return tok
	}
	valid := sign(keys.Claims{Subject: "alice", Perm: "rw", Write: []string{"chat/#"}, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))})
	validExp := time.Unix(now.Add(time.Hour).Unix(), 0).UTC().Format(time.RFC3339)
	expired := sign(keys.Claims{Perm: "r", ExpiresAt: jwt.NewNumericDate(now.Add(-time.Hour))})
	early := sign(keys.Claims{Perm: "r", NotBefore: jwt.NewNumericDate(now.Add(time.Hour))})
	eventhub := sign(keys.Claims{Write: []string{"x"}})
	revoked := sign(keys.Claims{ID: "revoked-jti", Perm: "r"})
	rev, err := keys.OpenRevocations(filepath.Join(dir, keys.RevocationsFileName))
	require.NoError(t, err)
	require.NoError(t, rev.Revoke("revoked-jti", time.Time{}))
	// A signature character in the middle: every bit of it counts, so the
	// result is canonical base64url and only the HMAC fails.
	tampered := []byte(valid)
	if i := len(tampered) - 10; tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	noneAlg := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(valid, ".")[1] + "."

	tests := []struct {
		name       string
		key        string
		source     []string
		wantCode   int
		wantStatus string
		wantText   []string
	}{
		{"valid with data dir", valid, []string{"--data-dir", dir}, ExitOK, statusValid, []string{"status:     valid", "subject:    alice", "read:       chat/#", "perm:       rw (subscribe, publish)", "expires:    " + validExp + " (in ", "secret:     " + sec.ID}},
		{"valid with secret only", valid, []string{"--secret", secretText}, ExitOK, statusValid, []string{"revocations not checked"}},
		{"revoked", revoked, []string{"--data-dir", dir}, ExitRuntime, statusRevoked, []string{"status:     revoked", "expires:    never"}},
		{"revoked unseen without data dir", revoked, []string{"--secret", secretText}, ExitOK, statusValid, nil},
		{"expired", expired, []string{"--data-dir", dir}, ExitRuntime, statusExpired, []string{"status:     expired", " ago)"}},
		{"not yet valid", early, []string{"--data-dir", dir}, ExitRuntime, statusNotYetValid, []string{"not yet valid", "not before:"}},
		{"other secret", valid, []string{"--secret", otherText}, ExitRuntime, statusBadSignature, []string{"bad signature", "the key names secret"}},
		{"tampered signature", string(tampered), []string{"--data-dir", dir}, ExitRuntime, statusBadSignature, nil},
		{"alg none", noneAlg, []string{"--data-dir", dir}, ExitRuntime, statusInvalid, []string{"algorithm"}},
		{"eventhub token", eventhub, []string{"--data-dir", dir}, ExitOK, statusValid, []string{"an Eventhub key"}},
		{"unchecked", valid, nil, ExitOK, statusUnchecked, []string{"status:     signature not checked", "give --secret, --data-dir or --server"}},
		{"unchecked but expired", expired, nil, ExitRuntime, statusExpired, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"keygen", "inspect", tt.key}, tt.source...)
			code, stdout, stderr := runKeygenCLI(t, nil, args...)
			require.Equal(t, tt.wantCode, code, "stdout: %s\nstderr: %s", stdout, stderr)
			for _, want := range tt.wantText {
				require.Contains(t, stdout, want)
			}
			if tt.wantCode != ExitOK {
				require.Contains(t, stderr, "not valid")
			}
			code, stdout, _ = runKeygenCLI(t, nil, append(args, "--json")...)
			require.Equal(t, tt.wantCode, code)
			var rep keyReport
			require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
			require.Equal(t, tt.wantStatus, rep.Status)
			require.NotNil(t, rep.SignatureChecked)
			require.Equal(t, tt.source != nil, *rep.SignatureChecked)
		})
	}
	t.Run("not a key", func(t *testing.T) {
		for _, bad := range []string{"hello", "a.b", "!!.!!.!!", strings.Repeat("a", keys.MaxTokenLen) + ".b.c"} {
			code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "inspect", bad)
			require.Equal(t, ExitRuntime, code)
			require.Contains(t, stderr, "not a channel key")
			require.Empty(t, stdout)
		}
	})
}

func TestKeygenThroughNode(t *testing.T) {
	checkKeygenLeaks(t)
	n := startKeysNode(t)
	ring := n.srv.Keyring()
	online := []string{"-s", n.addr, "-k", n.master}

	t.Run("mint", func(t *testing.T) {
		tests := []struct {
			name      string
			args      []string
			wantRead  []string
			wantWrite []string
			wantPerm  string
			wantSub   string
			wantExp   bool
		}{
			{"channel", []string{"--channel", "chat/"}, []string{"chat/#"}, []string{"chat/#"}, "rwsl", "master", false},
			{"channel with ttl and perm", []string{"--channel", "a/#/", "--perm", "rp", "--ttl", "1500ms"}, []string{"a/#"}, []string{"a/#"}, "rp", "master", true},
			{"filters and subject", []string{"--read", "s/#", "--write", "s/out", "--sub", "dash"}, []string{"s/#"}, []string{"s/out"}, "rwsl", "dash", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := runKeygenCLI(t, nil, append(append([]string{"keygen"}, online...), tt.args...)...)
				require.Equal(t, ExitOK, code, stderr)
				cl, err := ring.Verify(strings.TrimSpace(stdout))
				require.NoError(t, err)
				require.Equal(t, tt.wantRead, cl.Read)
				require.Equal(t, tt.wantWrite, cl.Write)
				require.Equal(t, tt.wantPerm, cl.Perm)
				require.Equal(t, tt.wantSub, cl.Subject)
				require.Equal(t, tt.wantExp, cl.ExpiresAt != nil)
				if tt.wantExp {
					// 1500ms rounds up to 2 s, never down to "never".
					require.WithinDuration(t, time.Now().Add(2*time.Second), cl.ExpiresAt.Time, 2*time.Second)
				}
			})
		}
	})

	t.Run("extend key derives a private channel", func(t *testing.T) {
		extend, err := ring.Sign(keys.Claims{Read: []string{"room/#"}, Write: []string{"room/#"}, Perm: "rwe"})
		require.NoError(t, err)
		code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "-s", n.addr, "-k", extend, "--channel", "room/", "--perm", "rw", "--json")
		require.Equal(t, ExitOK, code, stderr)
		var rep keyReport
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		require.True(t, strings.HasPrefix(rep.Channel, "room/") && len(rep.Channel) > len("room/x/"), rep.Channel)
		cl, err := ring.Verify(rep.Key)
		require.NoError(t, err)
		require.Equal(t, []string{rep.Channel + "#"}, cl.Read)
		require.Equal(t, "rw", cl.Perm)

		code, stdout, stderr = runKeygenCLI(t, nil, "keygen", "-s", n.addr, "-k", extend, "--channel", "room/")
		require.Equal(t, ExitOK, code, stderr)
		require.Contains(t, stderr, "private channel: room/")
		require.NotContains(t, strings.TrimSpace(stdout), "\n")
	})

	t.Run("refusals", func(t *testing.T) {
		plain, err := ring.Sign(keys.Claims{Read: []string{"chat/#"}, Write: []string{"chat/#"}, Perm: "rw"})
		require.NoError(t, err)
		_, _, foreign := testSecret(t, keys.KeyringOptions{})
		stranger, err := foreign.Sign(keys.Claims{Perm: "m"})
		require.NoError(t, err)
		tests := []struct {
			name    string
			args    []string
			wantErr string
		}{
			{"not master", []string{"-k", plain, "--channel", "chat/x/"}, "--key must be a master key"},
			{"another node's master", []string{"-k", stranger, "--channel", "chat/"}, "not authorized"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := runKeygenCLI(t, nil, append([]string{"keygen", "-s", n.addr}, tt.args...)...)
				require.Equal(t, ExitRuntime, code, stderr)
				require.Contains(t, stderr, tt.wantErr)
				require.Empty(t, stdout)
			})
		}
	})

	t.Run("inspect revoke undo", func(t *testing.T) {
		key, err := ring.Sign(keys.Claims{Read: []string{"r/#"}, Perm: "r"})
		require.NoError(t, err)
		cl, err := ring.Verify(key)
		require.NoError(t, err)

		code, stdout, stderr := runKeygenCLI(t, nil, "keygen", "inspect", key, "-s", n.addr)
		require.Equal(t, ExitOK, code, stderr)
		require.Contains(t, stdout, "status:     valid (accepted by the node")

		code, stdout, stderr = runKeygenCLI(t, keygenEnv{"PUBSUB_SERVER": n.addr, "PUBSUB_KEY": n.master}, "keygen", "revoke", key)
		require.Equal(t, ExitOK, code, stderr)
		require.Equal(t, "revoked key "+cl.ID+"\n", stdout)
		_, err = ring.Verify(key)
		require.ErrorIs(t, err, keys.ErrRevoked)

		code, stdout, _ = runKeygenCLI(t, keygenEnv{"PUBSUB_SERVER": n.addr}, "keygen", "inspect", key, "--json")
		require.Equal(t, ExitRuntime, code)
		var rep keyReport
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		require.Equal(t, statusRefused, rep.Status)

		// By id, as `keygen inspect` shows it.
		code, stdout, stderr = runKeygenCLI(t, nil, "keygen", "revoke", cl.ID, "--undo", "-s", n.addr, "-k", n.master)
		require.Equal(t, ExitOK, code, stderr)
		require.Equal(t, "restored key "+cl.ID+"\n", stdout)
		_, err = ring.Verify(key)
		require.NoError(t, err)

		code, _, stderr = runKeygenCLI(t, nil, "keygen", "revoke", cl.ID, "-s", n.addr, "-k", key)
		require.Equal(t, ExitRuntime, code)
		require.Contains(t, stderr, "--key must be a master key")
	})

	t.Run("unreachable node", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		for _, args := range [][]string{
			{"keygen", "-s", addr, "-k", n.master, "--channel", "a/"},
			{"keygen", "inspect", n.master, "-s", addr},
			{"keygen", "revoke", "jti", "-s", addr, "-k", n.master},
		} {
			code, _, stderr := runKeygenCLI(t, nil, args...)
			require.Equal(t, ExitRuntime, code, "%v", args)
			require.Contains(t, stderr, "connect to "+addr)
			require.NotContains(t, stderr, n.master)
		}
	})
}

// TestRequestAnswersStayOffMessages drives client.Request directly: the
// answer comes back to the caller, errors are *client.APIError, and other
// messages still reach Messages while a request is pending.
func TestRequestAnswersStayOffMessages(t *testing.T) {
	checkKeygenLeaks(t)
	n := startKeysNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Server: n.addr, Key: n.master})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Subscribe(ctx, client.Subscription{Filter: "emitter/#"}, client.Subscription{Filter: "news/#"})
	require.NoError(t, err)

	body, err := c.Request(ctx, "me", struct{}{})
	require.NoError(t, err)
	var me struct {
		Status int    `json:"status"`
		ID     string `json:"id"`
		Req    uint16 `json:"req"`
	}
	require.NoError(t, json.Unmarshal(body, &me))
	require.Equal(t, 200, me.Status)
	require.NotEmpty(t, me.ID)
	require.NotZero(t, me.Req)

	_, err = c.Request(ctx, "nosuchop", struct{}{})
	var apiErr *client.APIError
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 404, apiErr.Status)
	require.Equal(t, "nosuchop", apiErr.Op)

	_, err = c.Request(ctx, "keygen", map[string]any{"key": "nope", "channel": "a/", "type": "r"})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 401, apiErr.Status)

	for _, op := range []string{"", "a/b", "#", "+"} {
		_, err = c.Request(ctx, op, nil)
		require.Error(t, err, "op %q", op)
	}

	require.NoError(t, c.Publish(ctx, "news/1", []byte("hello"), 1, false))
	select {
	case m := <-c.Messages():
		// The answers above never reached Messages, so this is first.
		require.Equal(t, "news/1", m.Topic)
		require.Equal(t, "hello", string(m.Payload))
	case <-ctx.Done():
		t.Fatal("the message did not arrive")
	}
	require.Zero(t, len(c.Messages()))

	canceled, stop := context.WithCancel(ctx)
	stop()
	_, err = c.Request(canceled, "me", nil)
	require.ErrorIs(t, err, context.Canceled)
}

func FuzzDecodeKey(f *testing.F) {
	sec, err := keys.GenerateSecret()
	require.NoError(f, err)
	ring, err := keys.NewKeyring(keys.KeyringOptions{}, sec)
	require.NoError(f, err)
	tok, err := ring.Sign(keys.Claims{Subject: "s", Read: []string{"a/#"}, Perm: "r", ExpiresAt: jwt.NewNumericDate(time.Unix(2e9, 0))})
	require.NoError(f, err)
	for _, seed := range []string{
		tok, "", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.",
		"e30.eyJleHAiOiJzb29uIn0.x", // exp of the wrong type
		"e30.eyJyZWFkIjoxfQ.x",      // read of the wrong type
		"e30.WyJhIl0.x",             // claims an array
		strings.Repeat("A", keys.MaxTokenLen+1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, h, err := decodeKey(token)
		if err != nil {
			require.Contains(t, err.Error(), "not a channel key")
			return
		}
		require.LessOrEqual(t, len(token), keys.MaxTokenLen)
		require.Equal(t, h.Kid, c.KeyID)
		// Whatever decodes must be printable by inspect.
		var out bytes.Buffer
		require.NoError(t, printReport(&out, keyReport{Status: statusUnchecked, Claims: c}, time.Now()))
		require.NoError(t, writeJSON(&out, keyReport{Claims: c}))
	})
}

// TestKeygenHelpHidesSecrets: --help prints flag defaults, and the
// environment must never become one.
func TestKeygenHelpHidesSecrets(t *testing.T) {
	const key, secret = "eyJtaGVsbG8.master.key", "pubsub.v1.k.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
	env := keygenEnv{"PUBSUB_KEY": key, "PUBSUB_SECRET": secret}
	for _, args := range [][]string{
		{"keygen", "--help"},
		{"keygen", "inspect", "--help"},
		{"keygen", "revoke", "--help"},
		{"keygen", "secret", "--help"},
	} {
		code, stdout, stderr := runKeygenCLI(t, env, args...)
		require.Equal(t, ExitOK, code, stderr)
		require.Contains(t, stdout, "Usage:")
		require.NotContains(t, stdout, key, "%v", args)
		require.NotContains(t, stdout, secret, "%v", args)
	}
}

func BenchmarkKeygenOffline(b *testing.B) {
	_, secretText, _ := testSecret(&testing.T{}, keys.KeyringOptions{})
	streams := Streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard, Env: keygenEnv{}.lookup}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if code := Execute(ctx, []string{"keygen", "--secret", secretText, "--channel", "chat/", "--ttl", "1h"}, streams, BuildInfo{}); code != ExitOK {
			b.Fatalf("exit %d", code)
		}
	}
}

func BenchmarkDecodeKey(b *testing.B) {
	_, _, ring := testSecret(&testing.T{}, keys.KeyringOptions{})
	tok, err := ring.Sign(keys.Claims{Subject: "alice", Read: []string{"chat/#"}, Write: []string{"chat/#"}, Perm: "rwsl"})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeKey(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestRoundTrip is one emitter/me/ request answered by an
// in-process node: what a keygen or keyban through a node costs on top of
// connecting.
func BenchmarkRequestRoundTrip(b *testing.B) {
	srv, addr := startTestNode(b, "127.0.0.1:0", func(c *broker.Config) { c.NoAuth = false })
	master, err := srv.FreshMasterKey()
	require.NoError(b, err)
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Options{Server: addr, Key: master})
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Request(ctx, "me", nil); err != nil {
			b.Fatal(err)
		}
	}
}
