package stats

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// cacheLinePad separates hot words. 128 bytes rather than 64 because x86's
// adjacent-line prefetcher pulls cache lines in pairs and Apple arm64 cores
// use 128-byte lines; either way two counters never share a line.
const cacheLinePad = 128

// minWindow is the shortest window CPU% and latency percentiles are
// computed over. A snapshot taken sooner than this after the previous one
// reuses the older baseline instead of measuring a sliver of time.
const minWindow = time.Second

// counter is a monotonic counter alone on its cache lines.
type counter struct {
	n atomic.Uint64
	_ [cacheLinePad - 8]byte
}

// add ignores k <= 0: a monotonic counter never goes down, and a negative
// argument converted to uint64 would wrap it.
func (c *counter) add(k int64) {
	if k > 0 {
		c.n.Add(uint64(k))
	}
}

// gauge is a signed gauge alone on its cache lines.
type gauge struct {
	n atomic.Int64
	_ [cacheLinePad - 8]byte
}

// Info is a node's identity, fixed for its lifetime.
type Info struct {
	Name    string    // cluster-unique node name
	Address string    // client-facing listen address, as clients should dial it
	Version string    // build version of the binary
	Start   time.Time // when the node started; uptime is measured from here
}

// Node holds one node's live figures. The Add/Set/Observe methods are safe
// for concurrent use, lock-free and allocation-free; Snapshot may be called
// concurrently with them and with itself.
type Node struct {
	info Info

	messagesIn       counter
	bytesIn          counter
	messagesOut      counter
	bytesOut         counter
	dropped          counter
	slowConsumers    counter
	connectionsTotal counter

	connections   gauge
	subscriptions gauge

	// Set by periodic owners (the store, the cluster), not per message, so
	// they share lines.
	retained    atomic.Int64
	stored      atomic.Int64
	storedBytes atomic.Int64
	peers       atomic.Int64

	latency histogram

	mu     sync.Mutex // guards the fields below; taken only by Snapshot
	window snapshotWindow
	sample [len(runtimeMetricNames)]metrics.Sample
	gc     debug.GCStats
	proc   processReader
}

// runtimeMetricNames are read on every snapshot. runtime/metrics is used
// instead of runtime.ReadMemStats because it does not stop the world.
var runtimeMetricNames = [...]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
}

const (
	metricHeapObjects = iota
	metricTotal
	metricReleased
)

// NewNode returns a Node with every figure at zero. A zero info.Start means
// now.
func NewNode(info Info) *Node {
	if info.Start.IsZero() {
		info.Start = time.Now()
	}
	n := &Node{info: info}
	for i, name := range runtimeMetricNames {
		n.sample[i].Name = name
	}
	cpu, _ := n.proc.cpuTime()
	n.window.init(info.Start, cpu)
	return n
}

// Info returns the identity the node was created with.
func (n *Node) Info() Info { return n.info }

// AddMessagesIn counts k messages received from publishers (clients or peers).
func (n *Node) AddMessagesIn(k int64) { n.messagesIn.add(k) }

// AddBytesIn counts k payload bytes received.
func (n *Node) AddBytesIn(k int64) { n.bytesIn.add(k) }

// AddMessagesOut counts k messages delivered to subscribers.
func (n *Node) AddMessagesOut(k int64) { n.messagesOut.add(k) }

// AddBytesOut counts k payload bytes delivered.
func (n *Node) AddBytesOut(k int64) { n.bytesOut.add(k) }

// AddDropped counts k messages dropped (queue full, expired, no permission to deliver).
func (n *Node) AddDropped(k int64) { n.dropped.add(k) }

// AddSlowConsumers counts k connections closed as slow consumers.
func (n *Node) AddSlowConsumers(k int64) { n.slowConsumers.add(k) }

// AddConnectionsTotal counts k accepted connections.
func (n *Node) AddConnectionsTotal(k int64) { n.connectionsTotal.add(k) }

// AddConnections moves the open-connections gauge by delta (+1 on accept, -1 on close).
func (n *Node) AddConnections(delta int64) { n.connections.n.Add(delta) }

// AddSubscriptions moves the subscriptions gauge by delta.
func (n *Node) AddSubscriptions(delta int64) { n.subscriptions.n.Add(delta) }

// SetRetained sets the number of retained messages.
func (n *Node) SetRetained(v int64) { n.retained.Store(v) }

// SetStored sets the number of messages in the store.
func (n *Node) SetStored(v int64) { n.stored.Store(v) }

// SetStoredBytes sets the size of the store in bytes.
func (n *Node) SetStoredBytes(v int64) { n.storedBytes.Store(v) }

// SetPeers sets the number of connected cluster peers.
func (n *Node) SetPeers(v int64) { n.peers.Store(v) }

// ObserveLatency records one publish-to-deliver latency. Negative values
// (clock skew between nodes) count as zero.
func (n *Node) ObserveLatency(d time.Duration) { n.latency.observe(d) }

// Snapshot returns the node's figures as of now. now is injected so callers
// and tests control the clock; it should be monotonic across calls.
func (n *Node) Snapshot(now time.Time) Snapshot {
	s := Snapshot{
		Schema:           SchemaVersion,
		Node:             n.info.Name,
		Address:          n.info.Address,
		Version:          n.info.Version,
		Time:             now,
		Uptime:           nonNegative(now.Sub(n.info.Start).Seconds()),
		Connections:      n.connections.n.Load(),
		Subscriptions:    n.subscriptions.n.Load(),
		Retained:         n.retained.Load(),
		Stored:           n.stored.Load(),
		StoredBytes:      n.storedBytes.Load(),
		Peers:            n.peers.Load(),
		ConnectionsTotal: n.connectionsTotal.n.Load(),
		MessagesIn:       n.messagesIn.n.Load(),
		MessagesOut:      n.messagesOut.n.Load(),
		BytesIn:          n.bytesIn.n.Load(),
		BytesOut:         n.bytesOut.n.Load(),
		Dropped:          n.dropped.n.Load(),
		SlowConsumers:    n.slowConsumers.n.Load(),
		Goroutines:       runtime.NumGoroutine(),
		GOMAXPROCS:       runtime.GOMAXPROCS(0),
	}

	n.mu.Lock()
	defer n.mu.Unlock()

	cpu, cpuOK := n.proc.cpuTime()
	current := &n.window.scratch
	current.at = now
	current.cpu = cpu
	s.LatencyCount, s.LatencySum = n.latency.load(&current.latency)
	base := n.window.advance(now)

	if elapsed := now.Sub(base.at); cpuOK && elapsed > 0 && cpu >= base.cpu {
		s.CPUPercent = 100 * float64(cpu-base.cpu) / float64(elapsed)
	}
	var window [latencyBuckets]uint64
	for i := range window {
		window[i] = current.latency[i] - base.latency[i]
	}
	s.LatencyP50 = percentile(&window, 0.50)
	s.LatencyP99 = percentile(&window, 0.99)
	s.LatencyP999 = percentile(&window, 0.999)

	metrics.Read(n.sample[:])
	s.HeapBytes = sampleUint(n.sample[metricHeapObjects])
	rss, ok := n.proc.rss()
	if !ok {
		// Off Linux: memory the Go runtime has mapped and not returned to the
		// OS, which tracks RSS closely for a Go process without cgo.
		total, released := sampleUint(n.sample[metricTotal]), sampleUint(n.sample[metricReleased])
		if total > released {
			rss = total - released
		}
	}
	s.RSSBytes = rss

	debug.ReadGCStats(&n.gc)
	s.GCCount = uint32(n.gc.NumGC)
	s.GCPauseTotal = n.gc.PauseTotal
	return s
}

func sampleUint(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}

func nonNegative(v float64) float64 {
	if v < 0 {
		return 0
	}
	return v
}

// windowSample is the state a window is measured from.
type windowSample struct {
	at      time.Time
	cpu     time.Duration
	latency [latencyBuckets]uint64
}

// snapshotWindow keeps two baselines so that every window is at least
// minWindow long whatever the mix of callers (see package doc).
type snapshotWindow struct {
	prev, cur windowSample
	scratch   windowSample // the sample being taken; kept here to avoid a 3 KiB stack copy
}

func (w *snapshotWindow) init(at time.Time, cpu time.Duration) {
	w.prev = windowSample{at: at, cpu: cpu}
	w.cur = w.prev
}

// advance records scratch as taken at now and returns the baseline the
// window ending at now starts from.
func (w *snapshotWindow) advance(now time.Time) *windowSample {
	switch {
	case now.Before(w.cur.at):
		// The caller's clock went backwards: restart both baselines here,
		// reporting an empty window rather than a negative one.
		w.prev = w.scratch
		w.cur = w.scratch
	case now.Sub(w.cur.at) >= minWindow:
		w.prev = w.cur
		w.cur = w.scratch
	}
	return &w.prev
}
