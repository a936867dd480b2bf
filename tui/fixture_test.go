package tui

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/stats"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// requireGolden compares got with testdata/<name>.golden.
func requireGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./tui -update to create it")
	require.Equal(t, string(want), got)
}

// fixtureNode describes a node of the test cluster: its identity, the
// per-second rates it runs at and when it stops reporting.
type fixtureNode struct {
	name, address string
	started       time.Time
	msgsInPS      float64
	fanout        float64 // messages out per message in
	payload       uint64  // bytes per message
	conns, subs   int64
	stopAfter     int // last second it reports; -1 never stops
	latencyP99    float64
	cpu           float64
	rss           uint64
	goroutines    int
	peers         int64
}

var fixtureNodes = []fixtureNode{
	{name: "alpha", address: "10.0.0.1:8080", started: t0.Add(-26 * time.Hour), msgsInPS: 12_000, fanout: 3, payload: 200,
		conns: 1520, subs: 4100, stopAfter: -1, latencyP99: 850, cpu: 45.5, rss: 180 << 20, goroutines: 3100, peers: 3},
	{name: "bravo", address: "10.0.0.2:8080", started: t0.Add(-3*time.Hour - 4*time.Minute), msgsInPS: 800, fanout: 10, payload: 1024,
		conns: 310, subs: 999, stopAfter: -1, latencyP99: 12_500, cpu: 7.25, rss: 64 << 20, goroutines: 640, peers: 3},
	{name: "charlie-with-a-very-long-node-name", address: "[2001:db8::3]:8080", started: t0.Add(-12*time.Minute - 5*time.Second), msgsInPS: 0.5, fanout: 1, payload: 64,
		conns: 2, subs: 2, stopAfter: -1, latencyP99: 0, cpu: 0.1, rss: 22 << 20, goroutines: 48, peers: 3},
	{name: "delta", address: "10.0.0.4:8080", started: t0.Add(-40 * time.Second), msgsInPS: 100, fanout: 1, payload: 10,
		conns: 7, subs: 7, stopAfter: 1, latencyP99: 300, cpu: 1, rss: 30 << 20, goroutines: 60, peers: 3},
}

// snapshotAt is node's snapshot at second i of the fixture. Traffic
// swells and ebbs so the sparkline has a shape.
func (n fixtureNode) snapshotAt(i int) stats.Snapshot {
	at := t0.Add(time.Duration(i) * time.Second)
	// Cumulative messages: the rate times a load factor per second.
	load := []float64{1, 1, 1.5, 2, 1.2, 0.6, 0.8, 1, 1, 1, 1, 1, 1}
	var in float64
	for s := 0; s <= i && s < len(load); s++ {
		in += n.msgsInPS * load[s]
	}
	in += n.msgsInPS * 3600 // history before the fixture starts
	msgsIn := uint64(in)
	msgsOut := uint64(in * n.fanout)
	count := msgsOut
	if n.latencyP99 == 0 {
		count = 0
	}
	return stats.Snapshot{
		Schema: stats.SchemaVersion, Node: n.name, Address: n.address, Version: "v1.0.0",
		Time: at, Uptime: at.Sub(n.started).Seconds(),
		Connections: n.conns, Subscriptions: n.subs, Peers: n.peers,
		MessagesIn: msgsIn, MessagesOut: msgsOut, BytesIn: msgsIn * n.payload, BytesOut: msgsOut * n.payload,
		Dropped: uint64(i), SlowConsumers: 1,
		LatencyP50: n.latencyP99 / 4, LatencyP99: n.latencyP99, LatencyP999: n.latencyP99 * 2, LatencyCount: count,
		CPUPercent: n.cpu, RSSBytes: n.rss, Goroutines: n.goroutines,
	}
}

// send feeds msgs to m in order and returns the resulting model.
func send(m Model, msgs ...tea.Msg) Model {
	for _, msg := range msgs {
		next, _ := m.Update(msg)
		m = next.(Model)
	}
	return m
}

// press is a key press as bubbletea delivers it.
func press(s string) tea.KeyMsg {
	switch s {
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "pgdown":
		return tea.KeyMsg{Type: tea.KeyPgDown}
	case "end":
		return tea.KeyMsg{Type: tea.KeyEnd}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// runFixture plays seconds 0..last of the fixture into m: each second the
// reporting nodes' snapshots, then the tick.
func runFixture(m Model, nodes []fixtureNode, last int) Model {
	for i := 0; i <= last; i++ {
		for _, n := range nodes {
			if n.stopAfter < 0 || i <= n.stopAfter {
				m = send(m, SnapshotMsg(n.snapshotAt(i)))
			}
		}
		m = send(m, TickMsg(t0.Add(time.Duration(i)*time.Second)))
	}
	return m
}

// sized returns a model of the given size, connected to a test server.
func sized(width, height int) Model {
	m := New(Options{Interval: time.Second, Server: "localhost:8080"})
	return send(m, tea.WindowSizeMsg{Width: width, Height: height}, ConnStatusMsg{Connected: true})
}
