package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pubsub/pubsub/broker/mqtt"
)

// startBenchBroker runs an in-process node on 127.0.0.1:0 and returns its
// address; the node is closed when the test ends.
func startBenchBroker(tb testing.TB) string {
	tb.Helper()
	_, addr := startTestNode(tb, "127.0.0.1:0", nil)
	return addr
}

// verifyNoLeaks checks, after every other cleanup of t (the node's Close
// included), that the test left no goroutine behind. The cli package has no
// TestMain of its own, so the check is per test.
func verifyNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// runBenchCLI runs `pubsub bench ARGS` through Execute, as main does.
func runBenchCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: func(string) (string, bool) { return "", false }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = Execute(ctx, append([]string{"bench"}, args...), streams, BuildInfo{})
	return code, out.String(), errOut.String()
}

func decodeBenchReport(t *testing.T, stdout string) benchReport {
	t.Helper()
	var rep benchReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep), "stdout must be one JSON document: %s", stdout)
	require.False(t, dec.More(), "stdout must hold exactly one JSON document")
	return rep
}

func TestBenchAgainstBroker(t *testing.T) {
	verifyNoLeaks(t)
	addr := startBenchBroker(t)

	tests := []struct {
		name             string
		pubs, subs, msgs int
		extra            []string
	}{
		{name: "qos0 unlimited", pubs: 2, subs: 3, msgs: 2000},
		{name: "qos0 rate-limited", pubs: 2, subs: 2, msgs: 400, extra: []string{"--rate", "2000"}},
		{name: "qos1", pubs: 2, subs: 3, msgs: 600, extra: []string{"--qos", "1"}},
		{name: "qos2 large payload", pubs: 1, subs: 2, msgs: 200, extra: []string{"--qos", "2", "--size", "4096"}},
		{name: "uneven split", pubs: 3, subs: 1, msgs: 1000},
		{name: "publish only", pubs: 2, subs: 0, msgs: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--server", addr, "--json", "--timeout", "20s",
				"--pubs", strconv.Itoa(tt.pubs), "--subs", strconv.Itoa(tt.subs), "--msgs", strconv.Itoa(tt.msgs)}, tt.extra...)
			code, stdout, stderr := runBenchCLI(t, args...)
			require.Equal(t, ExitOK, code, "stderr: %s", stderr)
			require.Empty(t, stderr, "progress is for terminals only")
			rep := decodeBenchReport(t, stdout)

			expected := int64(tt.msgs * tt.subs)
			require.Equal(t, int64(tt.msgs), rep.Sent)
			require.Equal(t, expected, rep.Expected)
			require.Equal(t, expected, rep.Received)
			require.Zero(t, rep.Lost)
			require.Zero(t, rep.Duplicates)
			require.Zero(t, rep.Unsent)
			require.Zero(t, rep.Dropped)
			require.False(t, rep.TimedOut)
			require.True(t, strings.HasPrefix(rep.Config.Topic, "bench/"), "default topic %q", rep.Config.Topic)
			require.Len(t, rep.Publishers, tt.pubs)
			require.Len(t, rep.Subscribers, tt.subs)
			require.Positive(t, rep.Elapsed)
			require.Positive(t, rep.Aggregate.Publish.MsgsPerSec)

			var perPub []int64
			for _, p := range rep.Publishers {
				require.Empty(t, p.Error)
				perPub = append(perPub, p.Sent)
			}
			// The messages are split as evenly as they divide.
			require.LessOrEqual(t, slices.Max(perPub)-slices.Min(perPub), int64(1), "per-publisher counts %v", perPub)
			for _, s := range rep.Subscribers {
				require.Equal(t, int64(tt.msgs), s.Received, s.Name)
				require.False(t, s.Dropped, s.Name)
				require.Positive(t, s.Latency.P50, s.Name)
				require.LessOrEqual(t, s.Latency.P50, s.Latency.P90, s.Name)
				require.LessOrEqual(t, s.Latency.P90, s.Latency.P99, s.Name)
				require.LessOrEqual(t, s.Latency.P99, s.Latency.Max, s.Name)
			}
			if tt.subs > 0 {
				l := rep.Aggregate.Latency
				require.Positive(t, l.P50)
				require.Positive(t, l.P90)
				require.Positive(t, l.P99)
				require.Positive(t, l.Max)
				require.Positive(t, rep.Aggregate.Deliver.MsgsPerSec)
			}
		})
	}
}

func TestBenchHumanOutput(t *testing.T) {
	verifyNoLeaks(t)
	addr := startBenchBroker(t)
	code, stdout, stderr := runBenchCLI(t, "--server", addr, "--pubs", "2", "--subs", "2", "--msgs", "300", "--topic", "bench/human", "--size", "32")
	require.Equal(t, ExitOK, code, "stderr: %s", stderr)
	for _, want := range []string{
		"2 publishers -> 2 subscribers on bench/human: 300 msgs x 32 B, QoS 0, rate unlimited",
		"CLIENT", "pub-1", "pub-2", "sub-1", "sub-2",
		"publish  300 msgs in ",
		"deliver  600 of 600 msgs in ",
		"latency  p50 ",
		"result   lost 0, duplicates 0",
	} {
		require.Contains(t, stdout, want)
	}
	require.NotContains(t, stdout, "DROPPED")
}

func TestBenchFlagValidation(t *testing.T) {
	// A closed port: a flag that slipped through validation would fail to
	// connect with exit code 1 instead of 2.
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"qos 3", []string{"--qos", "3"}, "--qos 3"},
		{"negative qos", []string{"--qos", "-1"}, "--qos -1"},
		{"size below header", []string{"--size", "15"}, "--size 15"},
		{"size zero", []string{"--size", "0"}, "--size 0"},
		{"size above MQTT", []string{"--size", strconv.Itoa(mqtt.MaxRemaining)}, "larger than an MQTT packet"},
		{"no publishers", []string{"--pubs", "0"}, "--pubs 0"},
		{"negative subscribers", []string{"--subs", "-1"}, "--subs -1"},
		{"no messages", []string{"--msgs", "0"}, "--msgs 0"},
		{"negative rate", []string{"--rate", "-5"}, "--rate -5"},
		{"zero timeout", []string{"--timeout", "0s"}, "--timeout"},
		{"wildcard topic +", []string{"--topic", "bench/+"}, "--topic"},
		{"wildcard topic #", []string{"--topic", "bench/#"}, "--topic"},
		{"not a number", []string{"--msgs", "lots"}, "invalid argument"},
		{"unknown flag", []string{"--fanout", "3"}, "unknown flag"},
		{"positional argument", []string{"extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runBenchCLI(t, append([]string{"--server", "127.0.0.1:1"}, tt.args...)...)
			require.Equal(t, ExitUsage, code, "stderr: %s", stderr)
			require.Contains(t, stderr, tt.want)
			require.Empty(t, stdout)
		})
	}
}

func TestBenchCannotConnect(t *testing.T) {
	verifyNoLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	code, stdout, stderr := runBenchCLI(t, "--server", addr, "--connect-timeout", "2s", "--json")
	require.Equal(t, ExitRuntime, code)
	require.Contains(t, stderr, "connect to "+addr)
	require.Empty(t, stdout)
}

// droppingBroker is a minimal MQTT server that accepts everyone and drops
// every subscriber right after its SUBACK, as a node does to a slow
// consumer; publishes are read and discarded.
func droppingBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				r := mqtt.NewReader(nc, 0)
				for {
					h, body, err := r.Next()
					if err != nil {
						return
					}
					switch h.Type {
					case mqtt.TypeConnect:
						_, _ = nc.Write(mqtt.AppendConnack(nil, false, mqtt.Accepted))
					case mqtt.TypeSubscribe:
						id, subs, err := mqtt.DecodeSubscribe(body, nil)
						if err != nil {
							return
						}
						_, _ = nc.Write(mqtt.AppendSuback(nil, id, make([]byte, len(subs))))
						return
					case mqtt.TypePingreq:
						_, _ = nc.Write(mqtt.AppendPingresp(nil))
					case mqtt.TypeDisconnect:
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestBenchReportsDroppedSubscriber(t *testing.T) {
	verifyNoLeaks(t)
	addr := droppingBroker(t)

	code, stdout, stderr := runBenchCLI(t, "--server", addr, "--pubs", "1", "--subs", "2", "--msgs", "100", "--json", "--timeout", "20s")
	require.Equal(t, ExitRuntime, code)
	require.Contains(t, stderr, "2 subscribers dropped by the node")
	rep := decodeBenchReport(t, stdout)
	require.Equal(t, 2, rep.Dropped)
	require.False(t, rep.TimedOut, "a dropped subscriber must end the run, not wait for the timeout")
	require.Equal(t, int64(100), rep.Sent)
	require.Equal(t, int64(200), rep.Expected)
	require.Zero(t, rep.Received)
	require.Equal(t, int64(200), rep.Lost)
	for _, s := range rep.Subscribers {
		require.True(t, s.Dropped, s.Name)
		require.Contains(t, s.Error, "connection closed by the node after 0 messages")
		require.Contains(t, s.Error, "slow consumer")
	}

	code, stdout, _ = runBenchCLI(t, "--server", addr, "--pubs", "1", "--subs", "1", "--msgs", "10", "--timeout", "20s")
	require.Equal(t, ExitRuntime, code)
	require.Contains(t, stdout, "DROPPED  sub-1: connection closed by the node")
	require.Contains(t, stdout, "result   lost 10, duplicates 0")
}

func TestBenchSubscriberAccount(t *testing.T) {
	type delivery struct {
		pub, seq uint32
		size     int // payload bytes; below 16 is not a bench message
	}
	tests := []struct {
		name                        string
		pubs                        int
		in                          []delivery
		unique, duplicates, foreign int64
		received                    int64
		wantNext                    []uint32
		latencyRecorded             uint64
	}{
		{
			name: "in order from two publishers", pubs: 2,
			in:     []delivery{{0, 0, 16}, {1, 0, 16}, {0, 1, 16}, {1, 1, 64}},
			unique: 4, received: 4, wantNext: []uint32{2, 2}, latencyRecorded: 4,
		},
		{
			name: "redelivery is a duplicate", pubs: 1,
			in:     []delivery{{0, 0, 16}, {0, 1, 16}, {0, 1, 16}, {0, 0, 16}},
			unique: 2, duplicates: 2, received: 4, wantNext: []uint32{2}, latencyRecorded: 2,
		},
		{
			name: "a gap is loss, not an error", pubs: 1,
			in:     []delivery{{0, 0, 16}, {0, 5, 16}, {0, 6, 16}},
			unique: 3, received: 3, wantNext: []uint32{7}, latencyRecorded: 3,
		},
		{
			name: "foreign payloads", pubs: 1,
			in:     []delivery{{0, 0, 15}, {3, 0, 16}, {0, 0, 0}, {0, 0, 16}},
			unique: 1, foreign: 3, received: 4, wantNext: []uint32{1}, latencyRecorded: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &benchSubscriber{next: make([]uint32, tt.pubs)}
			now := time.Now()
			for _, d := range tt.in {
				payload := make([]byte, d.size)
				if d.size >= benchHeaderLen {
					putBenchHeader(payload, benchHeader{sentAt: now.Add(-time.Millisecond).UnixNano(), pub: d.pub, seq: d.seq})
				}
				s.account(payload, now)
			}
			require.Equal(t, tt.unique, s.unique)
			require.Equal(t, tt.duplicates, s.duplicates)
			require.Equal(t, tt.foreign, s.foreign)
			require.Equal(t, tt.received, s.received.Load())
			require.Equal(t, tt.wantNext, s.next)
			require.Equal(t, tt.latencyRecorded, s.latency.n)
			if s.latency.n > 0 {
				require.Equal(t, time.Millisecond.Nanoseconds(), s.latency.max)
			}
		})
	}
}

func TestBenchHeaderRoundTrip(t *testing.T) {
	tests := []benchHeader{
		{},
		{sentAt: 1, pub: 1, seq: 1},
		{sentAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano(), pub: 49, seq: 399},
		{sentAt: math.MaxInt64, pub: math.MaxUint32, seq: math.MaxUint32},
		{sentAt: math.MinInt64},
	}
	for _, h := range tests {
		b := make([]byte, benchHeaderLen+3)
		putBenchHeader(b, h)
		got, err := parseBenchHeader(b)
		require.NoError(t, err)
		require.Equal(t, h, got)
	}
	for n := range benchHeaderLen {
		_, err := parseBenchHeader(make([]byte, n))
		require.ErrorIs(t, err, errShortBenchPayload, "len %d", n)
	}
}

func TestLatencyHistogramBuckets(t *testing.T) {
	tests := []struct {
		v     int64
		index int
		upper int64
	}{
		{v: -5, index: 0, upper: 0},
		{v: 0, index: 0, upper: 0},
		{v: 127, index: 127, upper: 127},
		{v: 128, index: 128, upper: 128},
		{v: 255, index: 255, upper: 255},
		{v: 256, index: 256, upper: 257}, // first bucket two wide
		{v: 257, index: 256, upper: 257},
		{v: 511, index: 383, upper: 511},
		{v: 512, index: 384, upper: 515},
		{v: histMaxValue, index: histBuckets - 1, upper: histMaxValue},
		{v: math.MaxInt64, index: histBuckets - 1, upper: histMaxValue},
	}
	for _, tt := range tests {
		require.Equal(t, tt.index, histIndex(tt.v), "histIndex(%d)", tt.v)
		require.Equal(t, tt.upper, histUpper(tt.index), "histUpper(%d)", tt.index)
	}
	// Buckets tile the range: each starts right after the previous ends.
	for i := 1; i < histBuckets; i++ {
		require.Equal(t, i, histIndex(histUpper(i-1)+1), "bucket %d", i)
	}
}

func TestLatencyHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
	}{
		{"one value", []int64{42_000}},
		{"uniform microseconds", seqValues(10_000, func(i int) int64 { return int64(i+1) * 1000 })},
		{"long tail", seqValues(1000, func(i int) int64 {
			if i >= 990 {
				return 2 * int64(time.Second)
			}
			return 50_000
		})},
		{"small exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h latencyHistogram
			for _, v := range tt.values {
				h.record(v)
			}
			sorted := slices.Sorted(slices.Values(tt.values))
			for _, q := range []float64{0.5, 0.9, 0.99, 1} {
				exact := sorted[max(0, int(math.Ceil(q*float64(len(sorted))))-1)]
				got := h.quantile(q)
				require.GreaterOrEqual(t, got, exact, "q%.2f", q)
				require.LessOrEqual(t, float64(got-exact), float64(exact)/histSub+1, "q%.2f: %d vs exact %d", q, got, exact)
			}
			require.Equal(t, sorted[len(sorted)-1], h.max)

			var merged latencyHistogram
			merged.merge(&h)
			merged.merge(&h)
			require.Equal(t, 2*h.n, merged.n)
			require.Equal(t, h.quantile(0.5), merged.quantile(0.5))
		})
	}
	var empty latencyHistogram
	require.Zero(t, empty.quantile(0.99))
}

func seqValues(n int, f func(int) int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestBenchFormatting(t *testing.T) {
	digits := []struct {
		in   int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-1234, "-1,234"}}
	for _, tt := range digits {
		require.Equal(t, tt.want, groupDigits(tt.in))
	}
	micros := []struct {
		in   float64
		want string
	}{{0, "-"}, {0.5, "500ns"}, {1.234, "1.23µs"}, {89.6, "89.6µs"}, {716.8, "717µs"}, {28180.48, "28.2ms"}, {2_500_000, "2.50s"}}
	for _, tt := range micros {
		require.Equal(t, tt.want, fmtMicros(tt.in), "fmtMicros(%v)", tt.in)
	}
}

func TestBenchReportFailure(t *testing.T) {
	tests := []struct {
		name string
		rep  benchReport
		want string // "" = no error
	}{
		{"clean", benchReport{Sent: 10}, ""},
		{"lost", benchReport{Config: benchConfig{Subs: 2}, Sent: 10, Lost: 3}, "3 of 20 deliveries lost"},
		{"timeout", benchReport{Config: benchConfig{Timeout: 5}, TimedOut: true}, "--timeout 5s passed"},
		{"unsent", benchReport{Unsent: 4}, "4 messages not published"},
		{"interrupted", benchReport{Interrupted: true}, "interrupted"},
		{"publisher failed", benchReport{Publishers: []benchPubStats{{Name: "pub-2", Error: "boom"}}}, "pub-2: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rep.failure()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func FuzzBenchHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Add(make([]byte, 16))
	seed := make([]byte, 64)
	putBenchHeader(seed, benchHeader{sentAt: 1_700_000_000_000_000_000, pub: 3, seq: 77})
	f.Add(seed)
	f.Add(bytes.Repeat([]byte{0xff}, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseBenchHeader(b)
		if len(b) < benchHeaderLen {
			if !errors.Is(err, errShortBenchPayload) {
				t.Fatalf("len %d: err %v, want errShortBenchPayload", len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("len %d: %v", len(b), err)
		}
		again := make([]byte, len(b))
		copy(again, b)
		putBenchHeader(again, h)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
		// Accounting arbitrary payloads must never panic.
		s := &benchSubscriber{next: make([]uint32, 4)}
		s.account(b, time.Unix(0, 0))
		if s.unique+s.foreign != 1 {
			t.Fatalf("payload counted %d times", s.unique+s.foreign)
		}
	})
}

func FuzzLatencyHistogramIndex(f *testing.F) {
	for _, v := range []int64{-1, 0, 1, 127, 128, 255, 256, 1 << 20, histMaxValue, math.MaxInt64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d out of [0,%d)", v, i, histBuckets)
		}
		clamped := min(max(v, 0), histMaxValue)
		if up := histUpper(i); up < clamped {
			t.Fatalf("histUpper(%d) = %d below value %d", i, up, clamped)
		}
		if i > 0 && histUpper(i-1) >= clamped {
			t.Fatalf("value %d also fits bucket %d", clamped, i-1)
		}
		// Relative error bound of the layout.
		if up := histUpper(i); float64(up-clamped) > float64(clamped)/histSub {
			t.Fatalf("bucket %d upper %d too far above %d", i, up, clamped)
		}
	})
}

func BenchmarkBenchSubscriberAccount(b *testing.B) {
	s := &benchSubscriber{next: make([]uint32, 8)}
	payload := make([]byte, 64)
	now := time.Now()
	b.ReportAllocs()
	var seq uint32
	for b.Loop() {
		putBenchHeader(payload, benchHeader{sentAt: now.UnixNano() - 50_000, pub: seq % 8, seq: seq / 8})
		s.account(payload, now)
		seq++
	}
}

func BenchmarkLatencyHistogramRecord(b *testing.B) {
	var h latencyHistogram
	b.ReportAllocs()
	var v int64 = 1
	for b.Loop() {
		h.record(v)
		v = (v*7 + 13) % (10 * int64(time.Millisecond))
	}
}

// BenchmarkBenchInProcess runs the whole bench (clients and an in-process
// node) once per op. With -cpuprofile it shows where the node spends its
// time in the two scenarios docs/performance.md compares with Mosquitto.
// The node's goroutines carry the profiler label side=node (inherited from
// the goroutine that starts it), the load generator's side=bench:
//
//	go test ./cli -run '^$' -bench 'BenchmarkBenchInProcess/fan-in' -benchtime 3x -cpuprofile cpu.out
//	go tool pprof -top -tagfocus side=node cli.test cpu.out
func BenchmarkBenchInProcess(b *testing.B) {
	scenarios := []struct {
		name string
		args []string
	}{
		{"fan-out", []string{"--pubs", "1", "--subs", "100", "--msgs", "4000", "--rate", "2000"}},
		{"fan-in", []string{"--pubs", "50", "--subs", "1", "--msgs", "40000", "--rate", "400"}},
	}
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) {
			var addr string
			pprof.Do(context.Background(), pprof.Labels("side", "node"), func(context.Context) {
				addr = startBenchBroker(b)
			})
			args := append([]string{"bench", "--server", addr, "--json", "--size", "64"}, sc.args...)
			streams := Streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}
			b.ReportAllocs()
			for b.Loop() {
				pprof.Do(context.Background(), pprof.Labels("side", "bench"), func(ctx context.Context) {
					if code := Execute(ctx, args, streams, BuildInfo{}); code != ExitOK {
						b.Fatalf("bench exit code %d", code)
					}
				})
			}
		})
	}
}
