package tui

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/stats"
)

func snap(node string, second int, msgsIn uint64) stats.Snapshot {
	return stats.Snapshot{
		Node: node, Time: t0.Add(time.Duration(second) * time.Second), Uptime: float64(100 + second),
		MessagesIn: msgsIn, MessagesOut: 2 * msgsIn, BytesIn: 10 * msgsIn, BytesOut: 20 * msgsIn,
		Connections: 5, Subscriptions: 8, LatencyCount: msgsIn, LatencyP99: 100,
	}
}

func at(second float64) time.Time { return t0.Add(time.Duration(second * float64(time.Second))) }

func TestClusterRates(t *testing.T) {
	tests := []struct {
		name      string
		snapshots []stats.Snapshot
		wantRates bool
		wantIn    float64
	}{
		{"one snapshot: no rates yet", []stats.Snapshot{snap("a", 0, 100)}, false, 0},
		{"rate over one second", []stats.Snapshot{snap("a", 0, 100), snap("a", 1, 150)}, true, 50},
		{"rate over the node's own clock, not arrival", []stats.Snapshot{snap("a", 0, 100), snap("a", 2, 200)}, true, 50},
		{"latest two only", []stats.Snapshot{snap("a", 0, 0), snap("a", 1, 1000), snap("a", 2, 1010)}, true, 10},
		{"duplicate ignored", []stats.Snapshot{snap("a", 0, 100), snap("a", 1, 150), snap("a", 1, 150)}, true, 50},
		{"out of order ignored", []stats.Snapshot{snap("a", 0, 100), snap("a", 2, 200), snap("a", 1, 150)}, true, 50},
		{"restart: no rates until the next snapshot", []stats.Snapshot{snap("a", 0, 1000), func() stats.Snapshot {
			s := snap("a", 1, 3)
			s.Uptime = 1
			return s
		}()}, false, 0},
		{"counter reset without uptime drop is a restart too", []stats.Snapshot{snap("a", 0, 1000), snap("a", 1, 3)}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(time.Second)
			for _, s := range tt.snapshots {
				c.Add(s, s.Time)
			}
			rows := c.Rows(at(2))
			require.Len(t, rows, 1)
			require.Equal(t, tt.wantRates, rows[0].HasRates)
			require.InDelta(t, tt.wantIn, rows[0].MessagesInPS, 1e-9)
			require.InDelta(t, 2*tt.wantIn, rows[0].MessagesOutPS, 1e-9)
			require.InDelta(t, 10*tt.wantIn, rows[0].BytesInPS, 1e-9)
			require.InDelta(t, 20*tt.wantIn, rows[0].BytesOutPS, 1e-9)
		})
	}
}

func TestClusterDownDetection(t *testing.T) {
	c := NewCluster(time.Second)
	c.Add(snap("a", 0, 0), at(0))
	c.Add(snap("a", 1, 10), at(1))
	c.Add(snap("b", 0, 0), at(0))
	c.Add(snap("b", 1, 10), at(1))
	tests := []struct {
		now    float64
		wantUp bool
	}{
		{1, true},
		{3.9, true},
		{4, true}, // silent for exactly 3 intervals: still up
		{4.001, false},
		{3600, false}, // down, never dropped
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.now), func(t *testing.T) {
			c.Add(snap("b", int(tt.now)+1, 10+uint64(tt.now)), at(tt.now)) // b keeps reporting
			rows := c.Rows(at(tt.now))
			require.Len(t, rows, 2)
			require.Equal(t, "a", rows[0].Node)
			require.Equal(t, tt.wantUp, rows[0].Up)
			require.True(t, rows[1].Up)
			require.InDelta(t, tt.now-1, rows[0].SilentFor, 1e-9)
			totals := c.Totals(at(tt.now))
			require.Equal(t, 2, totals.Nodes)
			if tt.wantUp {
				require.Equal(t, 2, totals.NodesUp)
				require.Equal(t, int64(10), totals.Connections)
			} else {
				require.Equal(t, 1, totals.NodesUp)
				require.Equal(t, int64(5), totals.Connections, "a down node's gauges do not count")
				require.False(t, rows[0].HasRates)
			}
		})
	}
	// A node that comes back is up again.
	c.Add(snap("a", 4000, 20), at(4000))
	require.True(t, c.Rows(at(4000))[0].Up)
}

func TestClusterLearnsSlowerIntervals(t *testing.T) {
	// Nodes publish every 5 s although the monitor assumes 1 s: they are
	// not flagged down between two snapshots.
	c := NewCluster(time.Second)
	c.Add(snap("slow", 0, 0), at(0))
	c.Add(snap("slow", 5, 50), at(5))
	require.True(t, c.Rows(at(9))[0].Up)
	require.True(t, c.Rows(at(20))[0].Up)
	require.False(t, c.Rows(at(20.5))[0].Up)
	require.InDelta(t, 10, c.Rows(at(9))[0].MessagesInPS, 1e-9)

	// A node that was quiet for an hour between two snapshots is given at
	// most 3 minutes, not 3 hours.
	c.Add(snap("gap", 0, 0), at(0))
	c.Add(snap("gap", 3600, 1), at(3600))
	require.True(t, c.Rows(at(3600 + 180))[0].Up)
	require.False(t, c.Rows(at(3600 + 181))[0].Up)
}

func TestClusterEviction(t *testing.T) {
	c := NewCluster(time.Second)
	for i := range maxClusterNodes + 5 {
		c.Add(snap(fmt.Sprintf("n%05d", i), 0, 0), at(float64(i)))
	}
	require.Equal(t, maxClusterNodes, c.Len())
	rows := c.Rows(at(maxClusterNodes + 5))
	require.Equal(t, "n00005", rows[0].Node, "the longest silent nodes went first")
}

func TestClusterIgnoresNamelessSnapshots(t *testing.T) {
	c := NewCluster(0)
	c.Add(stats.Snapshot{Time: t0}, t0)
	require.Zero(t, c.Len())
	require.Equal(t, time.Second, c.Interval(), "default interval")
}

func TestClusterJSON(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	b, err := m.Cluster().JSON(t0.Add(5 * time.Second))
	require.NoError(t, err)
	requireGolden(t, "once.json", string(b)+"\n")

	var doc struct {
		Time     time.Time                    `json:"time"`
		Interval float64                      `json:"interval_seconds"`
		Totals   map[string]json.Number       `json:"totals"`
		Nodes    []map[string]json.RawMessage `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	require.True(t, doc.Time.Equal(t0.Add(5*time.Second)))
	require.Equal(t, 1.0, doc.Interval)
	require.Equal(t, json.Number("4"), doc.Totals["nodes"])
	require.Equal(t, json.Number("3"), doc.Totals["nodes_up"])
	require.Len(t, doc.Nodes, 4)
	require.JSONEq(t, `"alpha"`, string(doc.Nodes[0]["node"]))
	require.JSONEq(t, `7200`, string(doc.Nodes[0]["messages_in_per_second"]))
	require.JSONEq(t, `false`, string(doc.Nodes[3]["up"]))

	// Figures a snapshot built in-process may carry but JSON cannot.
	c := NewCluster(time.Second)
	bad := snap("nan", 0, 0)
	bad.CPUPercent = nan()
	c.Add(bad, t0)
	_, err = c.JSON(t0)
	require.NoError(t, err)
}

func TestClusterConcurrentUse(t *testing.T) {
	c := NewCluster(time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			c.Add(snap("a", i, uint64(i)), at(float64(i)))
		}
	}()
	for range 50 {
		_, err := c.JSON(at(1))
		require.NoError(t, err)
	}
	<-done
	require.Equal(t, 1, c.Len())
}
