package stats

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// SchemaVersion is the Snapshot schema this build writes and the newest it
// reads. Fields are only ever added within a schema; a change that would
// mislead an older reader (a renamed field, a changed unit) bumps it.
const SchemaVersion = 1

// MaxSnapshotSize bounds ParseSnapshot's input. A real snapshot is under
// 2 KiB; the bound is generous for added fields and long names.
const MaxSnapshotSize = 64 << 10

// maxIdentityLen bounds node names, addresses and versions in a snapshot.
const maxIdentityLen = 256

// Snapshot is one node's figures at one moment: the payload published on
// $SYS/stats/<node>. Counters (uint64) are monotonic since the node
// started; gauges (int64) are current values. Rates are not included:
// consumers derive them from two snapshots of the same node.
type Snapshot struct {
	Schema int `json:"schema"` // SchemaVersion of the writer

	// Identity.
	Node    string    `json:"node"`           // node name, unique in the cluster
	Address string    `json:"address"`        // client-facing listen address
	Version string    `json:"version"`        // build version
	Time    time.Time `json:"time"`           // when the snapshot was taken (RFC 3339, node clock)
	Uptime  float64   `json:"uptime_seconds"` // seconds since the node started

	// Gauges.
	Connections   int64 `json:"connections"`   // open client connections
	Subscriptions int64 `json:"subscriptions"` // active subscriptions
	Retained      int64 `json:"retained"`      // retained messages
	Stored        int64 `json:"stored"`        // messages in the store
	StoredBytes   int64 `json:"stored_bytes"`  // bytes in the store
	Peers         int64 `json:"peers"`         // connected cluster peers

	// Counters.
	ConnectionsTotal uint64 `json:"connections_total"` // connections accepted
	MessagesIn       uint64 `json:"messages_in"`       // messages received from publishers and peers
	MessagesOut      uint64 `json:"messages_out"`      // messages delivered to subscribers
	BytesIn          uint64 `json:"bytes_in"`          // payload bytes received
	BytesOut         uint64 `json:"bytes_out"`         // payload bytes delivered
	Dropped          uint64 `json:"dropped"`           // messages dropped
	SlowConsumers    uint64 `json:"slow_consumers"`    // connections closed as slow consumers

	// Publish-to-deliver latency. Percentiles cover the window since the
	// previous snapshot (at least one second); count and sum are monotonic.
	LatencyP50   float64 `json:"latency_p50_us"`  // median, microseconds
	LatencyP99   float64 `json:"latency_p99_us"`  // 99th percentile, microseconds
	LatencyP999  float64 `json:"latency_p999_us"` // 99.9th percentile, microseconds
	LatencyCount uint64  `json:"latency_count"`   // observations since start
	LatencySum   float64 `json:"latency_sum_us"`  // sum of observations since start, microseconds

	// Process.
	CPUPercent   float64       `json:"cpu_percent"`       // CPU used over the window, 100 = one core
	RSSBytes     uint64        `json:"rss_bytes"`         // resident set size
	HeapBytes    uint64        `json:"heap_bytes"`        // bytes in heap objects (live and not yet swept)
	Goroutines   int           `json:"goroutines"`        // goroutines alive
	GOMAXPROCS   int           `json:"gomaxprocs"`        // cores the runtime may use: the ceiling for CPUPercent/100
	GCCount      uint32        `json:"gc_count"`          // completed GC cycles
	GCPauseTotal time.Duration `json:"gc_pause_total_ns"` // total stop-the-world pause, nanoseconds
}

// Marshal returns the JSON form of s. Non-finite floats, which JSON cannot
// carry, are written as 0.
func (s Snapshot) Marshal() []byte {
	for _, f := range []*float64{&s.Uptime, &s.LatencyP50, &s.LatencyP99, &s.LatencyP999, &s.LatencySum, &s.CPUPercent} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		// Unreachable: every field has a total JSON encoding once floats
		// are finite. Returning an empty object keeps the contract of a
		// valid JSON payload without a panic.
		return []byte("{}")
	}
	return b
}

// ErrSnapshotTooLarge is returned by ParseSnapshot for input over MaxSnapshotSize.
var ErrSnapshotTooLarge = errors.New("stats: snapshot larger than 64 KiB")

// ParseSnapshot decodes and validates a snapshot from another node,
// possibly of another version: unknown fields are ignored, a newer schema is
// refused. Strings must be printable, because monitors put them on a
// terminal.
func ParseSnapshot(b []byte) (Snapshot, error) {
	if len(b) > MaxSnapshotSize {
		return Snapshot{}, ErrSnapshotTooLarge
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return Snapshot{}, fmt.Errorf("stats: decode snapshot: %w", err)
	}
	if err := s.validate(); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

func (s *Snapshot) validate() error {
	if s.Schema < 0 || s.Schema > SchemaVersion {
		return fmt.Errorf("stats: snapshot schema %d not supported (this build reads up to %d)", s.Schema, SchemaVersion)
	}
	if s.Node == "" {
		return errors.New("stats: snapshot has no node name")
	}
	for _, f := range []struct{ name, value string }{
		{"node", s.Node}, {"address", s.Address}, {"version", s.Version},
	} {
		if err := checkPrintable(f.value); err != nil {
			return fmt.Errorf("stats: snapshot %s: %w", f.name, err)
		}
	}
	if s.Time.IsZero() {
		return errors.New("stats: snapshot has no time")
	}
	for _, f := range []struct {
		name  string
		value float64
	}{
		{"uptime_seconds", s.Uptime}, {"latency_p50_us", s.LatencyP50}, {"latency_p99_us", s.LatencyP99},
		{"latency_p999_us", s.LatencyP999}, {"latency_sum_us", s.LatencySum}, {"cpu_percent", s.CPUPercent},
	} {
		if f.value < 0 {
			return fmt.Errorf("stats: snapshot %s is negative", f.name)
		}
	}
	if s.Goroutines < 0 || s.GOMAXPROCS < 0 || s.GCPauseTotal < 0 {
		return errors.New("stats: snapshot has a negative process figure")
	}
	return nil
}

// checkPrintable refuses strings that could move a terminal's cursor or
// change its state when displayed, and overlong ones.
func checkPrintable(v string) error {
	if len(v) > maxIdentityLen {
		return fmt.Errorf("longer than %d bytes", maxIdentityLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("contains non-printable character %U", r)
		}
	}
	return nil
}
