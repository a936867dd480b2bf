package stats

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testStart = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newTestNode() *Node {
	return NewNode(Info{Name: "node-1", Address: "10.0.0.1:8080", Version: "v1.2.3", Start: testStart})
}

func TestNodeCounters(t *testing.T) {
	tests := []struct {
		name string
		add  func(*Node, int64)
		get  func(Snapshot) uint64
	}{
		{"messages_in", (*Node).AddMessagesIn, func(s Snapshot) uint64 { return s.MessagesIn }},
		{"bytes_in", (*Node).AddBytesIn, func(s Snapshot) uint64 { return s.BytesIn }},
		{"messages_out", (*Node).AddMessagesOut, func(s Snapshot) uint64 { return s.MessagesOut }},
		{"bytes_out", (*Node).AddBytesOut, func(s Snapshot) uint64 { return s.BytesOut }},
		{"dropped", (*Node).AddDropped, func(s Snapshot) uint64 { return s.Dropped }},
		{"slow_consumers", (*Node).AddSlowConsumers, func(s Snapshot) uint64 { return s.SlowConsumers }},
		{"connections_total", (*Node).AddConnectionsTotal, func(s Snapshot) uint64 { return s.ConnectionsTotal }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode()
			tt.add(n, 3)
			tt.add(n, 4)
			tt.add(n, -10) // a monotonic counter ignores a negative increment
			tt.add(n, 0)
			snap := n.Snapshot(testStart.Add(time.Second))
			require.Equal(t, uint64(7), tt.get(snap))
		})
	}
}

func TestNodeGauges(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Node)
		get  func(Snapshot) int64
		want int64
	}{
		{"connections", func(n *Node) { n.AddConnections(5); n.AddConnections(-2) }, func(s Snapshot) int64 { return s.Connections }, 3},
		{"subscriptions", func(n *Node) { n.AddSubscriptions(10); n.AddSubscriptions(-1) }, func(s Snapshot) int64 { return s.Subscriptions }, 9},
		{"retained", func(n *Node) { n.SetRetained(7); n.SetRetained(4) }, func(s Snapshot) int64 { return s.Retained }, 4},
		{"stored", func(n *Node) { n.SetStored(100) }, func(s Snapshot) int64 { return s.Stored }, 100},
		{"stored_bytes", func(n *Node) { n.SetStoredBytes(1 << 20) }, func(s Snapshot) int64 { return s.StoredBytes }, 1 << 20},
		{"peers", func(n *Node) { n.SetPeers(2) }, func(s Snapshot) int64 { return s.Peers }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode()
			tt.set(n)
			require.Equal(t, tt.want, tt.get(n.Snapshot(testStart.Add(time.Second))))
		})
	}
}

func TestNodeConcurrentUpdates(t *testing.T) {
	const workers, perWorker = 8, 1000
	n := newTestNode()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				n.AddMessagesIn(1)
				n.AddBytesIn(10)
				n.AddConnections(1)
				n.AddConnections(-1)
				n.ObserveLatency(time.Millisecond)
			}
		}()
	}
	// Snapshots race with the writers; -race checks they are safe.
	for i := 0; i < 10; i++ {
		_ = n.Snapshot(testStart.Add(time.Duration(i) * time.Second))
	}
	wg.Wait()
	snap := n.Snapshot(testStart.Add(time.Minute))
	require.Equal(t, uint64(workers*perWorker), snap.MessagesIn)
	require.Equal(t, uint64(10*workers*perWorker), snap.BytesIn)
	require.Equal(t, int64(0), snap.Connections)
	require.Equal(t, uint64(workers*perWorker), snap.LatencyCount)
}

func TestSnapshotIdentity(t *testing.T) {
	n := newTestNode()
	snap := n.Snapshot(testStart.Add(90 * time.Second))
	require.Equal(t, SchemaVersion, snap.Schema)
	require.Equal(t, "node-1", snap.Node)
	require.Equal(t, "10.0.0.1:8080", snap.Address)
	require.Equal(t, "v1.2.3", snap.Version)
	require.Equal(t, testStart.Add(90*time.Second), snap.Time)
	require.InDelta(t, 90.0, snap.Uptime, 1e-9)
	require.Equal(t, n.Info().Name, snap.Node)

	// A clock before the start never yields a negative uptime.
	require.Zero(t, n.Snapshot(testStart.Add(-time.Hour)).Uptime)
}

func TestSnapshotProcessFigures(t *testing.T) {
	n := newTestNode()
	_ = n.Snapshot(testStart.Add(time.Second))

	// Burn CPU until the process has used at least 20ms more of it, so the
	// next window sees some. Polling rusage, not sleeping.
	var probe processReader
	before, ok := probe.cpuTime()
	if ok {
		deadline := time.Now().Add(5 * time.Second)
		x := 0
		for now, _ := probe.cpuTime(); now-before < 20*time.Millisecond && time.Now().Before(deadline); now, _ = probe.cpuTime() {
			for i := 0; i < 100000; i++ {
				x += i
			}
		}
		_ = x
	}
	snap := n.Snapshot(testStart.Add(2 * time.Second))
	if ok {
		require.Greater(t, snap.CPUPercent, 0.0)
	}
	require.Positive(t, snap.Goroutines)
	require.Positive(t, snap.GOMAXPROCS)
	require.NotZero(t, snap.HeapBytes)
	require.NotZero(t, snap.RSSBytes)
	require.GreaterOrEqual(t, snap.RSSBytes, snap.HeapBytes/2, "RSS should be of the order of the heap")
}

func TestSnapshotLatencyWindow(t *testing.T) {
	n := newTestNode()
	observe := func(d time.Duration, k int) {
		for i := 0; i < k; i++ {
			n.ObserveLatency(d)
		}
	}
	requireNear := func(want time.Duration, gotMicros float64) {
		t.Helper()
		wantMicros := float64(want) / float64(time.Microsecond)
		require.InEpsilon(t, wantMicros, gotMicros, 1.0/32)
	}

	observe(time.Millisecond, 100)
	s1 := n.Snapshot(testStart.Add(time.Second))
	requireNear(time.Millisecond, s1.LatencyP50)
	requireNear(time.Millisecond, s1.LatencyP999)
	require.Equal(t, uint64(100), s1.LatencyCount)
	require.InDelta(t, 100*1000.0, s1.LatencySum, 1e-6)

	observe(10*time.Millisecond, 100)
	s2 := n.Snapshot(testStart.Add(2 * time.Second))
	requireNear(10*time.Millisecond, s2.LatencyP50) // the first batch is outside the window
	require.Equal(t, uint64(200), s2.LatencyCount)  // the count is cumulative

	// A reader 0.5 s later does not shrink the window to nothing: it still
	// sees the batch since the previous baseline.
	s3 := n.Snapshot(testStart.Add(2500 * time.Millisecond))
	requireNear(10*time.Millisecond, s3.LatencyP99)

	// A full quiet second later the window is empty.
	s4 := n.Snapshot(testStart.Add(3500 * time.Millisecond))
	require.Zero(t, s4.LatencyP50)
	require.Equal(t, uint64(200), s4.LatencyCount)

	// A clock that goes backwards yields an empty window, not garbage.
	observe(time.Second, 10)
	s5 := n.Snapshot(testStart.Add(time.Second))
	require.Zero(t, s5.LatencyP99)
	require.Zero(t, s5.CPUPercent)
}

func TestNodeUpdatesDoNotAllocate(t *testing.T) {
	n := newTestNode()
	allocs := testing.AllocsPerRun(1000, func() {
		n.AddMessagesIn(1)
		n.AddBytesIn(100)
		n.AddMessagesOut(1)
		n.AddBytesOut(100)
		n.AddConnections(1)
		n.SetStored(5)
		n.ObserveLatency(250 * time.Microsecond)
	})
	require.Zero(t, allocs)
}

func BenchmarkNode(b *testing.B) {
	n := newTestNode()
	b.Run("AddMessagesIn", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n.AddMessagesIn(1)
		}
	})
	b.Run("AddMessagesIn/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.AddMessagesIn(1)
			}
		})
	})
	b.Run("AddConnections", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n.AddConnections(1)
		}
	})
	b.Run("ObserveLatency", func(b *testing.B) {
		b.ReportAllocs()
		d := 250 * time.Microsecond
		for b.Loop() {
			n.ObserveLatency(d)
		}
	})
	b.Run("ObserveLatency/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.ObserveLatency(250 * time.Microsecond)
			}
		})
	})
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		now := testStart
		for b.Loop() {
			now = now.Add(time.Second)
			_ = n.Snapshot(now)
		}
	})
}
