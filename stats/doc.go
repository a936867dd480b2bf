// Package stats keeps one node's live figures and turns them into the
// forms the rest of pubsub consumes: a JSON Snapshot (published on
// $SYS/stats/<node> and read by `pubsub top`), StatsD lines and a
// Prometheus collector.
//
// # Hot path
//
// The broker updates a Node on every publish and delivery, from many
// goroutines at once. Each counter and gauge is therefore a single atomic
// word padded to its own cache-line pair, so an update is one atomic
// instruction with no lock, no allocation and no false sharing with the
// counter next to it. The publish-to-deliver latency histogram is an array
// of atomic log-linear buckets (16 per power of two from ~1µs to ~17s, at
// most 3.2% error on a reported percentile), so ObserveLatency is two
// atomic adds.
//
// # Snapshots
//
// Snapshot reads everything under a mutex that only readers take. Figures
// that are rates over time (CPU%) and the latency percentiles are computed
// over a window that ends at the snapshot and starts at a baseline at least
// one second old (see minWindow), so several readers at different cadences
// (the $SYS publisher every stats.interval, a Prometheus scrape, a StatsD
// flush) do not shorten each other's windows to nothing. Counters in a
// snapshot are monotonic since the node started; consumers compute rates
// from deltas between two snapshots of the same node.
//
// The JSON form is flat, snake_case, with the unit in the name of every
// field that has one, and only ever grows: a reader ignores fields it does
// not know and ParseSnapshot refuses a schema it cannot read. It is the
// contract between nodes and monitors of different versions.
//
// # Sinks
//
// StatsD sends counters as per-interval deltas (tracked per node, so the
// `pubsub top --statsd` relay can forward a whole cluster), gauges as values
// and latency percentiles as timings. It never fails the node: a failed dial
// is logged once and retried quietly. The Prometheus collector reads a
// snapshot at scrape time and exposes pubsub_* metrics in its own registry,
// never with per-topic labels.
package stats
