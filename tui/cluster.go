package tui

import (
	"encoding/json"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pubsub/pubsub/stats"
)

const (
	// downAfterIntervals is how many reporting intervals a node may stay
	// silent before it is shown as down.
	downAfterIntervals = 3
	// maxClusterNodes bounds the table against a flood of node names; the
	// node silent the longest is forgotten first.
	maxClusterNodes = 4096
	defaultInterval = time.Second
	// maxObservedInterval caps the reporting interval learnt from a node's
	// snapshots (see nodeInterval).
	maxObservedInterval = time.Minute
)

// Cluster aggregates the snapshots of every node: the latest and the
// previous one per node (for rates) and when each node was last heard from
// (for down detection). It is safe for concurrent use, so `pubsub top
// --once` can feed it from a subscription callback while reading it.
type Cluster struct {
	interval time.Duration

	mu    sync.Mutex
	nodes map[string]*nodeState
}

type nodeState struct {
	latest, previous stats.Snapshot
	hasPrevious      bool
	lastSeen         time.Time // on the monitor's clock
}

// NewCluster returns an empty Cluster for nodes that report every
// interval (1 s when interval <= 0).
func NewCluster(interval time.Duration) *Cluster {
	if interval <= 0 {
		interval = defaultInterval
	}
	return &Cluster{interval: interval, nodes: make(map[string]*nodeState)}
}

// Interval returns the reporting interval the cluster assumes.
func (c *Cluster) Interval() time.Duration { return c.interval }

// Len returns the number of nodes known, up or down.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Add records a snapshot received at now (the monitor's clock). A snapshot
// no newer than the node's latest (a duplicate or one overtaken in the
// cluster) is ignored. A node that restarted (its uptime or a counter went
// down) starts a new rate baseline.
func (c *Cluster) Add(s stats.Snapshot, now time.Time) {
	if s.Node == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.nodes[s.Node]
	if !ok {
		c.evictLocked()
		c.nodes[s.Node] = &nodeState{latest: s, lastSeen: now}
		return
	}
	if !s.Time.After(st.latest.Time) {
		return
	}
	st.previous, st.latest = st.latest, s
	st.hasPrevious = !restarted(st.previous, s)
	st.lastSeen = now
}

// restarted reports whether next comes from a new incarnation of the node
// that produced prev, so rates between the two would be meaningless.
func restarted(prev, next stats.Snapshot) bool {
	return next.Uptime < prev.Uptime ||
		next.MessagesIn < prev.MessagesIn || next.MessagesOut < prev.MessagesOut ||
		next.BytesIn < prev.BytesIn || next.BytesOut < prev.BytesOut ||
		next.Dropped < prev.Dropped
}

// evictLocked makes room for one node. c.mu must be held.
func (c *Cluster) evictLocked() {
	if len(c.nodes) < maxClusterNodes {
		return
	}
	var oldest string
	var oldestSeen time.Time
	for name, st := range c.nodes {
		if oldest == "" || st.lastSeen.Before(oldestSeen) {
			oldest, oldestSeen = name, st.lastSeen
		}
	}
	delete(c.nodes, oldest)
}

// NodeRow is one node as the monitor shows it. Rates are per second over
// the two latest snapshots, and valid only when HasRates is true (a node
// needs two snapshots of the same incarnation). A node that is down keeps
// its last known figures; its rates are zero.
type NodeRow struct {
	Node     string    `json:"node"`
	Address  string    `json:"address"`
	Version  string    `json:"version"`
	Up       bool      `json:"up"`
	LastSeen time.Time `json:"last_seen"`
	// SilentFor is how long the node has not reported, in seconds.
	SilentFor float64 `json:"silent_seconds"`
	Uptime    float64 `json:"uptime_seconds"`

	Connections   int64 `json:"connections"`
	Subscriptions int64 `json:"subscriptions"`
	Peers         int64 `json:"peers"`

	HasRates      bool    `json:"has_rates"`
	MessagesInPS  float64 `json:"messages_in_per_second"`
	MessagesOutPS float64 `json:"messages_out_per_second"`
	BytesInPS     float64 `json:"bytes_in_per_second"`
	BytesOutPS    float64 `json:"bytes_out_per_second"`
	DroppedPS     float64 `json:"dropped_per_second"`
	Dropped       uint64  `json:"dropped"`
	SlowConsumers uint64  `json:"slow_consumers"`
	HasLatency    bool    `json:"has_latency"` // deliveries happened in the node's latest window
	LatencyP99    float64 `json:"latency_p99_us"`
	CPUPercent    float64 `json:"cpu_percent"`
	RSSBytes      uint64  `json:"rss_bytes"`
	Goroutines    int     `json:"goroutines"`
}

// Totals are the cluster-wide figures. Gauges and rates add up the nodes
// that are up: a down node's connections are gone, and its rates unknown.
type Totals struct {
	Nodes         int     `json:"nodes"`
	NodesUp       int     `json:"nodes_up"`
	Connections   int64   `json:"connections"`
	Subscriptions int64   `json:"subscriptions"`
	MessagesInPS  float64 `json:"messages_in_per_second"`
	MessagesOutPS float64 `json:"messages_out_per_second"`
	BytesInPS     float64 `json:"bytes_in_per_second"`
	BytesOutPS    float64 `json:"bytes_out_per_second"`
	DroppedPS     float64 `json:"dropped_per_second"`
	Dropped       uint64  `json:"dropped"`
	SlowConsumers uint64  `json:"slow_consumers"`
}

// Rows returns one row per known node as of now, sorted by node name.
func (c *Cluster) Rows(now time.Time) []NodeRow {
	c.mu.Lock()
	defer c.mu.Unlock()
	rows := make([]NodeRow, 0, len(c.nodes))
	for _, st := range c.nodes {
		rows = append(rows, c.row(st, now))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Node < rows[j].Node })
	return rows
}

func (c *Cluster) row(st *nodeState, now time.Time) NodeRow {
	s := st.latest
	silent := now.Sub(st.lastSeen)
	row := NodeRow{
		Node: s.Node, Address: s.Address, Version: s.Version,
		Up:        silent <= downAfterIntervals*c.nodeInterval(st),
		LastSeen:  st.lastSeen,
		SilentFor: max(silent, 0).Seconds(),
		Uptime:    finite(s.Uptime),

		Connections: s.Connections, Subscriptions: s.Subscriptions, Peers: s.Peers,
		Dropped: s.Dropped, SlowConsumers: s.SlowConsumers,
		CPUPercent: finite(s.CPUPercent), RSSBytes: s.RSSBytes, Goroutines: s.Goroutines,
		LatencyP99: finite(s.LatencyP99),
	}
	if !st.hasPrevious {
		// Without a previous snapshot the window is unknown; a non-zero
		// percentile still means there were deliveries.
		row.HasLatency = s.LatencyP99 > 0
		return row
	}
	p := st.previous
	row.HasLatency = s.LatencyCount > p.LatencyCount
	if !row.Up {
		return row
	}
	seconds := s.Time.Sub(p.Time).Seconds()
	if seconds <= 0 {
		return row
	}
	row.HasRates = true
	row.MessagesInPS = float64(s.MessagesIn-p.MessagesIn) / seconds
	row.MessagesOutPS = float64(s.MessagesOut-p.MessagesOut) / seconds
	row.BytesInPS = float64(s.BytesIn-p.BytesIn) / seconds
	row.BytesOutPS = float64(s.BytesOut-p.BytesOut) / seconds
	row.DroppedPS = float64(s.Dropped-p.Dropped) / seconds
	return row
}

// nodeInterval is the reporting interval assumed for a node: the
// cluster's, or the node's own when its snapshots come further apart (its
// stats.interval is longer than the monitor was told), up to
// maxObservedInterval so a node that went quiet for long is not given
// forever to come back.
func (c *Cluster) nodeInterval(st *nodeState) time.Duration {
	if !st.hasPrevious {
		return c.interval
	}
	observed := min(st.latest.Time.Sub(st.previous.Time), maxObservedInterval)
	return max(c.interval, observed)
}

// finite maps NaN and ±Inf, which a snapshot built in-process could carry
// but JSON and the table cannot show, to 0.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// Totals returns the cluster-wide figures as of now.
func (c *Cluster) Totals(now time.Time) Totals {
	return totalsOf(c.Rows(now))
}

func totalsOf(rows []NodeRow) Totals {
	t := Totals{Nodes: len(rows)}
	for _, r := range rows {
		if !r.Up {
			continue
		}
		t.NodesUp++
		t.Connections += r.Connections
		t.Subscriptions += r.Subscriptions
		t.MessagesInPS += r.MessagesInPS
		t.MessagesOutPS += r.MessagesOutPS
		t.BytesInPS += r.BytesInPS
		t.BytesOutPS += r.BytesOutPS
		t.DroppedPS += r.DroppedPS
		t.Dropped += r.Dropped
		t.SlowConsumers += r.SlowConsumers
	}
	return t
}

// ClusterView is the document `pubsub top --once --json` prints.
type ClusterView struct {
	Time     time.Time `json:"time"`
	Interval float64   `json:"interval_seconds"`
	Totals   Totals    `json:"totals"`
	Nodes    []NodeRow `json:"nodes"`
}

// View returns the cluster as of now.
func (c *Cluster) View(now time.Time) ClusterView {
	rows := c.Rows(now)
	return ClusterView{Time: now, Interval: c.interval.Seconds(), Totals: totalsOf(rows), Nodes: rows}
}

// JSON returns the --once --json document: {"time", "interval_seconds",
// "totals": {…}, "nodes": [{…}, …]}, nodes sorted by name, indented for
// people and parseable by scripts.
func (c *Cluster) JSON(now time.Time) ([]byte, error) {
	return json.MarshalIndent(c.View(now), "", "  ")
}
