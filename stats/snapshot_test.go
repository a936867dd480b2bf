package stats

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// sampleSnapshot has a distinct value in every field, so a field mapped to
// the wrong JSON name shows up in the golden file.
func sampleSnapshot() Snapshot {
	return Snapshot{
		Schema: SchemaVersion, Node: "node-1", Address: "10.0.0.1:8080", Version: "v1.2.3",
		Time: time.Date(2025, 6, 1, 12, 0, 5, 250_000_000, time.UTC), Uptime: 5.25,
		Connections: 1, Subscriptions: 2, Retained: 3, Stored: 4, StoredBytes: 5, Peers: 6,
		ConnectionsTotal: 7, MessagesIn: 8, MessagesOut: 9, BytesIn: 10, BytesOut: 11, Dropped: 12, SlowConsumers: 13,
		LatencyP50: 14.5, LatencyP99: 15.5, LatencyP999: 16.5, LatencyCount: 17, LatencySum: 18.5,
		CPUPercent: 19.5, RSSBytes: 20, HeapBytes: 21, Goroutines: 22, GOMAXPROCS: 23, GCCount: 24, GCPauseTotal: 25,
	}
}

// TestSnapshotJSONGolden pins the wire contract with other versions.
func TestSnapshotJSONGolden(t *testing.T) {
	var got bytes.Buffer
	require.NoError(t, json.Indent(&got, sampleSnapshot().Marshal(), "", "  "))
	got.WriteByte('\n')
	path := filepath.Join("testdata", "snapshot.golden.json")
	if *update {
		require.NoError(t, os.WriteFile(path, got.Bytes(), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got.String())
}

func TestSnapshotRoundTrip(t *testing.T) {
	want := sampleSnapshot()
	got, err := ParseSnapshot(want.Marshal())
	require.NoError(t, err)
	require.True(t, want.Time.Equal(got.Time))
	got.Time = want.Time
	require.Equal(t, want, got)

	// A live node's snapshot survives the trip too.
	live := newTestNode()
	live.AddMessagesIn(3)
	live.ObserveLatency(time.Millisecond)
	snap := live.Snapshot(testStart.Add(time.Second))
	parsed, err := ParseSnapshot(snap.Marshal())
	require.NoError(t, err)
	require.Equal(t, snap.MessagesIn, parsed.MessagesIn)
	require.Equal(t, snap.LatencyP99, parsed.LatencyP99)
}

func TestMarshalNonFinite(t *testing.T) {
	s := sampleSnapshot()
	s.CPUPercent = math.NaN()
	s.LatencyP99 = math.Inf(1)
	got, err := ParseSnapshot(s.Marshal())
	require.NoError(t, err)
	require.Zero(t, got.CPUPercent)
	require.Zero(t, got.LatencyP99)
	require.Equal(t, 14.5, got.LatencyP50, "other fields untouched")
}

func TestParseSnapshot(t *testing.T) {
	valid := string(sampleSnapshot().Marshal())
	with := func(field, value string) string {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(valid), &m))
		m[field] = json.RawMessage(value)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	tests := []struct {
		name    string
		input   string
		wantErr string // "" means accepted
		check   func(t *testing.T, s Snapshot)
	}{
		{name: "valid", input: valid},
		{name: "unknown field from a newer minor version is ignored", input: with("queue_depth", "12")},
		{name: "schema missing (pre-schema writer)", input: with("schema", "0")},
		{name: "newer schema", input: with("schema", "2"), wantErr: "schema 2 not supported"},
		{name: "negative schema", input: with("schema", "-1"), wantErr: "schema"},
		{name: "too large", input: valid[:len(valid)-1] + `,"pad":"` + strings.Repeat("x", MaxSnapshotSize) + `"}`, wantErr: "larger than 64 KiB"},
		{name: "empty", input: "", wantErr: "decode"},
		{name: "broken JSON", input: `{"node":"a",`, wantErr: "decode"},
		{name: "not an object", input: `[1,2,3]`, wantErr: "decode"},
		{name: "null", input: `null`, wantErr: "no node name"},
		{name: "trailing garbage", input: valid + "x", wantErr: "decode"},
		{name: "missing node", input: with("node", `""`), wantErr: "no node name"},
		{name: "node with escape sequence", input: with("node", `"\u001b[2Jevil"`), wantErr: "non-printable"},
		{name: "node with newline", input: with("node", `"a\nb"`), wantErr: "non-printable"},
		{name: "node with bidi override", input: with("node", `"a\u202eb"`), wantErr: "non-printable"},
		{name: "address with C1 control", input: with("address", `"\u009b31m"`), wantErr: "non-printable"},
		{name: "invalid UTF-8 version", input: strings.Replace(valid, `"v1.2.3"`, "\"v1\xff\"", 1), check: func(t *testing.T, s Snapshot) {
			// encoding/json replaces invalid bytes with U+FFFD, which is printable.
			require.Equal(t, "v1\uFFFD", s.Version)
		}},
		{name: "overlong node", input: with("node", `"`+strings.Repeat("n", maxIdentityLen+1)+`"`), wantErr: "longer than"},
		{name: "unicode node", input: with("node", `"nœud-東京"`), check: func(t *testing.T, s Snapshot) { require.Equal(t, "nœud-東京", s.Node) }},
		{name: "zero time", input: with("time", `"0001-01-01T00:00:00Z"`), wantErr: "no time"},
		{name: "bad time", input: with("time", `"yesterday"`), wantErr: "decode"},
		{name: "negative cpu", input: with("cpu_percent", "-1"), wantErr: "cpu_percent is negative"},
		{name: "negative latency", input: with("latency_p99_us", "-0.5"), wantErr: "latency_p99_us is negative"},
		{name: "negative goroutines", input: with("goroutines", "-3"), wantErr: "negative process figure"},
		{name: "counter negative", input: with("messages_in", "-1"), wantErr: "decode"},
		{name: "number out of range", input: with("cpu_percent", "1e400"), wantErr: "decode"},
		{name: "counter as string", input: with("messages_in", `"5"`), wantErr: "decode"},
		{name: "gauge may be negative transiently", input: with("connections", "-1"), check: func(t *testing.T, s Snapshot) { require.Equal(t, int64(-1), s.Connections) }},
		{name: "duplicate key: last wins", input: valid[:len(valid)-1] + `,"messages_in":99}`, check: func(t *testing.T, s Snapshot) { require.Equal(t, uint64(99), s.MessagesIn) }},
		{name: "deeply nested unknown field", input: valid[:len(valid)-1] + `,"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, wantErr: "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSnapshot([]byte(tt.input))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Equal(t, Snapshot{}, got)
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// FuzzParseSnapshot checks that no input panics, that accepted snapshots
// satisfy the validation rules, and that Marshal/Parse is a fixed point.
func FuzzParseSnapshot(f *testing.F) {
	f.Add(sampleSnapshot().Marshal())
	f.Add([]byte(`{"schema":1,"node":"a","time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"node":"a","time":"2025-01-01T00:00:00Z","messages_in":18446744073709551615,"connections":-9223372036854775808}`))
	f.Add([]byte(`{"node":"\u001b[2J","time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"node":"a","time":"2025-01-01T00:00:00Z","cpu_percent":1e308,"uptime_seconds":5e-324}`))
	f.Add([]byte(`[[[[[[[[`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSnapshot(b)
		if err != nil {
			return
		}
		if s.Node == "" || s.Time.IsZero() || s.CPUPercent < 0 {
			t.Fatalf("accepted invalid snapshot %+v", s)
		}
		once := s.Marshal()
		again, err := ParseSnapshot(once)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", once, err)
		}
		if twice := again.Marshal(); !bytes.Equal(once, twice) {
			t.Fatalf("not a fixed point:\n%s\n%s", once, twice)
		}
	})
}
