package cli

// `pubsub pub --ttl` and `pubsub sub --last/--since` (issue 4): the options
// level they add to topics and filters, their usage errors, and a run
// against an in-process node that stores and replays.

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWithTopicOption(t *testing.T) {
	tests := []struct{ topic, want string }{
		{"a/b", "a/b/?ttl=60"},
		{"a", "a/?ttl=60"},
		{"a/#", "a/#/?ttl=60"},
		{"KEY/a/b/", "KEY/a/b/?ttl=60"}, // an Emitter channel keeps its '/'
		{"a/b/?last=5", "a/b/?last=5&ttl=60"},
		{"a/b/?", "a/b/?ttl=60"},
		{"a/?x=1/b", "a/?x=1/b/?ttl=60"}, // '?' inside a level is not an options level
	}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			require.Equal(t, tc.want, withTopicOption(tc.topic, "ttl", "60"))
		})
	}
}

func FuzzWithTopicOption(f *testing.F) {
	for _, seed := range []string{"a/b", "a/b/", "a/b/?last=1", "?", "/?", "a/?x/y", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got := withTopicOption(topic, "last", "5")
		// The topic is kept, and the option is the final level's last one.
		require.True(t, strings.HasPrefix(got, topic))
		require.True(t, strings.HasSuffix(got, "last=5"))
		i := strings.LastIndex(got, "/?")
		require.GreaterOrEqual(t, i, 0)
		require.NotContains(t, got[i+2:], "/", "the options level is the last level")
	})
}

func TestHistoryFilters(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	hourAgo := strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)
	tests := []struct {
		name    string
		filters []string
		last    int
		since   string
		want    []string
		wantErr string
	}{
		{"nothing asked", []string{"a/#"}, 0, "", []string{"a/#"}, ""},
		{"last", []string{"a/#", "KEY/b/"}, 5, "", []string{"a/#/?last=5", "KEY/b/?last=5"}, ""},
		{"since a duration", []string{"a"}, 0, "1h", []string{"a/?from=" + hourAgo}, ""},
		{"since a time", []string{"a"}, 0, "2025-06-01T11:00:00Z", []string{"a/?from=" + hourAgo}, ""},
		{"both", []string{"a"}, 3, "1h", []string{"a/?last=3&from=" + hourAgo}, ""},
		{"negative last", []string{"a"}, -1, "", nil, "--last -1"},
		{"huge last", []string{"a"}, 1<<20 + 1, "", nil, "--last"},
		{"negative duration", []string{"a"}, 0, "-5m", nil, "positive duration"},
		{"not a time", []string{"a"}, 0, "yesterday", nil, "RFC 3339"},
		{"in the future", []string{"a"}, 0, "2030-01-01T00:00:00Z", nil, "in the future"},
		{"before 2018", []string{"a"}, 0, "2017-12-31T23:59:59Z", nil, "2018 to 2066"},
		{"a duration reaching before 2018", []string{"a"}, 0, "100000h", nil, "2018 to 2066"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := historyFilters(tc.filters, tc.last, tc.since, now)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				var ee *exitError
				require.ErrorAs(t, err, &ee)
				require.Equal(t, ExitUsage, ee.code)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseSince(f *testing.F) {
	for _, seed := range []string{"1h", "90m", "0s", "-1h", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+02:00", "", "9999999999h"} {
		f.Add(seed)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		at, err := parseSince(v, now)
		if err != nil {
			return
		}
		// Anything accepted is a time the node honours (emitter.md §2).
		require.False(t, at.After(now))
		require.False(t, at.Before(minSince))
	})
}

// storageNode is an in-process node with the memory store and no auth.
func startStorageNode(t *testing.T) string {
	t.Helper()
	_, addr := startTestNode(t, "127.0.0.1:0", nil)
	return addr
}

// runCLI runs `pubsub ARGS` through Execute, as main does.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: func(string) (string, bool) { return "", false }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code = Execute(ctx, args, streams, BuildInfo{})
	return code, out.String(), errOut.String()
}

func TestPubTTLSubLast(t *testing.T) {
	checkKeygenLeaks(t)
	addr := startStorageNode(t)
	for i := 1; i <= 3; i++ {
		code, _, stderr := runCLI(t, "pub", "-s", addr, "-q", "1", "--ttl", "1h", "hist/t", fmt.Sprintf("m%d", i))
		require.Equal(t, 0, code, stderr)
	}
	code, _, stderr := runCLI(t, "pub", "-s", addr, "-q", "1", "hist/t", "not stored")
	require.Equal(t, 0, code, stderr)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"last", []string{"--last", "2", "-C", "2"}, "hist/t m2\nhist/t m3\n"},
		{"since", []string{"--since", "1h", "-C", "3"}, "hist/t m1\nhist/t m2\nhist/t m3\n"},
		{"since an RFC 3339 time", []string{"--since", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "-C", "3", "--raw"}, "m1\nm2\nm3\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"sub", "-s", addr, "-W", "10s"}, tc.args...)
			code, stdout, stderr := runCLI(t, append(args, "hist/t")...)
			require.Equal(t, 0, code, stderr)
			require.Equal(t, tc.want, stdout)
		})
	}
}

// TestSubLastMoreThanBuffered replays more history than the client's
// message buffer holds (1024): the node sends it before the SUBACK, so sub
// must read while it subscribes.
func TestSubLastMoreThanBuffered(t *testing.T) {
	checkKeygenLeaks(t)
	addr := startStorageNode(t)
	const n = 1500
	code, _, stderr := runCLI(t, "pub", "-s", addr, "-q", "1", "--ttl", "10m", "--count", strconv.Itoa(n), "big/t", "x")
	require.Equal(t, 0, code, stderr)
	code, stdout, stderr := runCLI(t, "sub", "-s", addr, "-W", "15s", "--last", strconv.Itoa(n), "-C", strconv.Itoa(n), "--raw", "big/t")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, n, strings.Count(stdout, "x\n"))
}

func TestPubSubHistoryUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"negative ttl", []string{"pub", "-s", "127.0.0.1:1", "--ttl", "-1s", "a", "m"}, "--ttl"},
		{"ttl not a duration", []string{"pub", "-s", "127.0.0.1:1", "--ttl", "soon", "a", "m"}, "invalid argument"},
		{"negative last", []string{"sub", "-s", "127.0.0.1:1", "--last", "-2", "a"}, "--last"},
		{"since garbage", []string{"sub", "-s", "127.0.0.1:1", "--since", "last week", "a"}, "--since"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			require.Equal(t, ExitUsage, code)
			require.Contains(t, stderr, tc.wantErr)
		})
	}
}
