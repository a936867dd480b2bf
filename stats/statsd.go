package stats

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alexcesaro/statsd"
)

// StatsD tag formats accepted in StatsDConfig.TagsFormat.
const (
	TagsNone     = ""
	TagsDatadog  = "datadog"
	TagsInfluxDB = "influxdb"
)

const (
	// statsdRedialInterval paces reconnection attempts after a failed dial,
	// so an absent StatsD server costs one dial per half minute, not one
	// per snapshot.
	statsdRedialInterval = 30 * time.Second
	// statsdMaxNodes bounds the per-node delta state of a relay; the node
	// sent least recently is forgotten first.
	statsdMaxNodes = 1024
	// statsdStartSlack tolerates clock skew when deciding whether a node
	// started after this sink (see Send).
	statsdStartSlack = 5 * time.Second
)

// StatsDConfig configures the StatsD sink.
type StatsDConfig struct {
	Address    string            // host:port of the StatsD server (UDP)
	Prefix     string            // prepended to every bucket; default "pubsub"
	TagsFormat string            // TagsNone, TagsDatadog or TagsInfluxDB
	Tags       map[string]string // sent with every metric when TagsFormat is set
}

// Validate reports a configuration that cannot work, so that it can stop a
// node at start (DESIGN §9). NewStatsD itself never fails.
func (c StatsDConfig) Validate() error {
	if c.Address == "" {
		return errors.New("stats.statsd.address: empty")
	}
	switch c.TagsFormat {
	case TagsNone, TagsDatadog, TagsInfluxDB:
	default:
		return fmt.Errorf("stats.statsd.tags_format: %q is not one of \"\", %q, %q", c.TagsFormat, TagsDatadog, TagsInfluxDB)
	}
	if strings.ContainsAny(c.Prefix, statsdReserved) {
		return fmt.Errorf("stats.statsd.prefix: %q contains one of %q", c.Prefix, statsdReserved)
	}
	for k, v := range c.Tags {
		if k == "" || strings.ContainsAny(k, statsdReserved) || strings.ContainsAny(v, statsdReserved) {
			return fmt.Errorf("stats.statsd.tags: %q=%q is empty or contains one of %q", k, v, statsdReserved)
		}
	}
	return nil
}

// statsdReserved are the characters that delimit the StatsD line protocol
// and its tag extensions; names containing them would corrupt the line.
const statsdReserved = ":|@#,=\n\r\t "

// StatsD sends snapshots to a StatsD server. It is safe for concurrent use.
type StatsD struct {
	cfg     StatsDConfig
	logger  *slog.Logger
	created time.Time
	redial  time.Duration
	dial    func() (*statsd.Client, error)

	mu           sync.Mutex
	client       *statsd.Client // nil while not connected
	lastDial     time.Time
	dialLogged   bool
	writeLogged  bool
	closed       bool
	nodes        map[string]*statsdNode
	sendSequence uint64
}

// statsdNode is what a sink remembers of one node to turn counters into
// per-interval deltas.
type statsdNode struct {
	client   *statsd.Client // the sink's client, cloned with this node's tag or prefix
	last     Snapshot
	lastSend uint64 // sendSequence of the last Send, for eviction
}

// NewStatsD returns a sink for cfg. It dials at once; when that fails (no
// route, bad address) the failure is logged once and the dial retried at
// most every 30 s from Send, so a missing StatsD server never stops a node.
// An invalid cfg is logged and yields a sink that sends nothing.
func NewStatsD(cfg StatsDConfig, logger *slog.Logger) *StatsD {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "pubsub"
	}
	s := &StatsD{
		cfg:     cfg,
		logger:  logger.With(slog.String("statsd_address", cfg.Address)),
		created: time.Now(),
		redial:  statsdRedialInterval,
		nodes:   make(map[string]*statsdNode),
	}
	if err := cfg.Validate(); err != nil {
		s.logger.Error("statsd disabled: invalid configuration", slog.Any("error", err))
		s.closed = true
		return s
	}
	s.dial = s.newClient
	s.mu.Lock()
	s.connectLocked(s.created)
	s.mu.Unlock()
	return s
}

func (s *StatsD) newClient() (*statsd.Client, error) {
	opts := []statsd.Option{
		statsd.Address(s.cfg.Address),
		statsd.Prefix(s.cfg.Prefix),
		// No flush goroutine: Send flushes once per snapshot, which is the
		// natural batch, and Close then leaves nothing running.
		statsd.FlushPeriod(0),
		statsd.ErrorHandler(s.writeError),
	}
	switch s.cfg.TagsFormat {
	case TagsDatadog:
		opts = append(opts, statsd.TagsFormat(statsd.Datadog))
	case TagsInfluxDB:
		opts = append(opts, statsd.TagsFormat(statsd.InfluxDB))
	}
	if s.cfg.TagsFormat != TagsNone && len(s.cfg.Tags) > 0 {
		pairs := make([]string, 0, 2*len(s.cfg.Tags))
		for _, k := range slices.Sorted(maps.Keys(s.cfg.Tags)) {
			pairs = append(pairs, k, s.cfg.Tags[k])
		}
		opts = append(opts, statsd.Tags(pairs...))
	}
	return statsd.New(opts...)
}

// connectLocked dials if not connected and the redial interval has passed.
// s.mu must be held.
func (s *StatsD) connectLocked(now time.Time) {
	if s.client != nil || s.closed || (!s.lastDial.IsZero() && now.Sub(s.lastDial) < s.redial) {
		return
	}
	s.lastDial = now
	client, err := s.dial()
	if err != nil {
		if !s.dialLogged {
			s.dialLogged = true
			s.logger.Warn("statsd unreachable; metrics not sent, retrying quietly", slog.Any("error", err))
		}
		return
	}
	if s.dialLogged {
		s.logger.Info("statsd reachable again")
	}
	s.dialLogged = false
	s.writeLogged = false
	s.client = client
	clear(s.nodes) // clones of an old client are unusable
}

// writeError is the client's error handler. The client only writes from
// Flush and Close, which this type calls from Send and Close, so s.mu is
// held here; the handler must not call back into the client, whose own
// lock is held too.
func (s *StatsD) writeError(err error) {
	if s.writeLogged {
		return
	}
	s.writeLogged = true
	s.logger.Warn("statsd write failed; further write errors not logged", slog.Any("error", err))
}

// Send writes one snapshot: counters as the increase since the previous
// Send for the same node, gauges as values, latency percentiles as timings
// in milliseconds. Metrics are named <prefix>.<metric> with a node tag when
// a tag format is set, and <prefix>.<node>.<metric> otherwise.
//
// The first snapshot of a node that started before this sink existed only
// sets the baseline: a relay joining a long-running cluster must not
// report the cluster's whole history as one interval. A node that started
// after the sink (the node's own sink) counts from zero.
func (s *StatsD) Send(snap Snapshot) {
	if snap.Node == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.connectLocked(time.Now())
	if s.client == nil {
		return
	}
	s.sendSequence++

	node, seen := s.nodes[snap.Node]
	if !seen {
		node = s.addNodeLocked(snap.Node)
	}
	prev := node.last
	switch {
	case !seen && !s.startedAfterSink(snap):
		node.last = snap
		node.lastSend = s.sendSequence
		return
	case !seen, snap.Uptime < prev.Uptime:
		// A new node or a restarted one: its counters count from zero.
		prev = Snapshot{}
	}
	node.last = snap
	node.lastSend = s.sendSequence

	c := node.client
	c.Count("connections_total", delta(snap.ConnectionsTotal, prev.ConnectionsTotal))
	c.Count("messages_in", delta(snap.MessagesIn, prev.MessagesIn))
	c.Count("messages_out", delta(snap.MessagesOut, prev.MessagesOut))
	c.Count("bytes_in", delta(snap.BytesIn, prev.BytesIn))
	c.Count("bytes_out", delta(snap.BytesOut, prev.BytesOut))
	c.Count("dropped", delta(snap.Dropped, prev.Dropped))
	c.Count("slow_consumers", delta(snap.SlowConsumers, prev.SlowConsumers))
	c.Count("gc_count", delta(uint64(snap.GCCount), uint64(prev.GCCount)))

	c.Gauge("connections", snap.Connections)
	c.Gauge("subscriptions", snap.Subscriptions)
	c.Gauge("retained", snap.Retained)
	c.Gauge("stored", snap.Stored)
	c.Gauge("stored_bytes", snap.StoredBytes)
	c.Gauge("peers", snap.Peers)
	c.Gauge("uptime_seconds", snap.Uptime)
	c.Gauge("cpu_percent", snap.CPUPercent)
	c.Gauge("rss_bytes", snap.RSSBytes)
	c.Gauge("heap_bytes", snap.HeapBytes)
	c.Gauge("goroutines", snap.Goroutines)

	// Timings only when there were deliveries in the window: a zero would
	// be aggregated by the server as a real, very fast delivery.
	if delta(snap.LatencyCount, prev.LatencyCount) > 0 {
		c.Timing("latency_p50", snap.LatencyP50/1e3)
		c.Timing("latency_p99", snap.LatencyP99/1e3)
		c.Timing("latency_p999", snap.LatencyP999/1e3)
	}
	c.Flush()
}

// startedAfterSink reports whether snap's node started after the sink was
// created, judged on the node's clock with some slack for skew.
func (s *StatsD) startedAfterSink(snap Snapshot) bool {
	start := snap.Time.Add(-time.Duration(snap.Uptime * float64(time.Second)))
	return !start.Before(s.created.Add(-statsdStartSlack))
}

// addNodeLocked creates the state for a node, evicting the node sent least
// recently when the table is full. s.mu must be held.
func (s *StatsD) addNodeLocked(name string) *statsdNode {
	if len(s.nodes) >= statsdMaxNodes {
		var oldest string
		var oldestSend uint64
		for k, v := range s.nodes {
			if oldest == "" || v.lastSend < oldestSend {
				oldest, oldestSend = k, v.lastSend
			}
		}
		delete(s.nodes, oldest)
	}
	var client *statsd.Client
	if s.cfg.TagsFormat != TagsNone {
		client = s.client.Clone(statsd.Tags("node", statsdName(name)))
	} else {
		client = s.client.Clone(statsd.Prefix(statsdName(name)))
	}
	n := &statsdNode{client: client}
	s.nodes[name] = n
	return n
}

// statsdName makes a node name safe as a bucket component or tag value:
// reserved characters and the bucket separator become '_'.
func statsdName(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r < 0x20 || strings.ContainsRune(statsdReserved, r) {
			return '_'
		}
		return r
	}, name)
}

// delta is the increase of a monotonic counter; a decrease means the
// counter restarted, and then cur is the increase since the restart.
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// Close flushes and releases the connection. Send after Close does nothing.
func (s *StatsD) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	clear(s.nodes)
}
