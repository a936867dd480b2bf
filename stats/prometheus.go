package stats

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// collector exposes a Snapshot, read at scrape time, as pubsub_* metrics.
type collector struct {
	source func() Snapshot
}

// metricKind says how a snapshot field is exposed.
type metricKind int

const (
	kindCounter metricKind = iota
	kindGauge
)

// metricDef is one metric read straight from a snapshot field.
type metricDef struct {
	desc  *prometheus.Desc
	kind  metricKind
	value func(*Snapshot) float64
}

// The names follow the Prometheus conventions: base units, _total on
// counters, _bytes/_seconds suffixes. There are deliberately no per-topic
// or per-client labels: their cardinality is unbounded.
var (
	metricDefs = []metricDef{
		gaugeDef("pubsub_connections", "Open client connections.", func(s *Snapshot) float64 { return float64(s.Connections) }),
		gaugeDef("pubsub_subscriptions", "Active subscriptions.", func(s *Snapshot) float64 { return float64(s.Subscriptions) }),
		gaugeDef("pubsub_retained_messages", "Retained messages.", func(s *Snapshot) float64 { return float64(s.Retained) }),
		gaugeDef("pubsub_stored_messages", "Messages in the store.", func(s *Snapshot) float64 { return float64(s.Stored) }),
		gaugeDef("pubsub_stored_bytes", "Size of the store in bytes.", func(s *Snapshot) float64 { return float64(s.StoredBytes) }),
		gaugeDef("pubsub_peers", "Connected cluster peers.", func(s *Snapshot) float64 { return float64(s.Peers) }),
		gaugeDef("pubsub_uptime_seconds", "Seconds since the node started.", func(s *Snapshot) float64 { return s.Uptime }),
		counterDef("pubsub_connections_accepted_total", "Client connections accepted.", func(s *Snapshot) float64 { return float64(s.ConnectionsTotal) }),
		counterDef("pubsub_messages_in_total", "Messages received from publishers and peers.", func(s *Snapshot) float64 { return float64(s.MessagesIn) }),
		counterDef("pubsub_messages_out_total", "Messages delivered to subscribers.", func(s *Snapshot) float64 { return float64(s.MessagesOut) }),
		counterDef("pubsub_in_bytes_total", "Payload bytes received.", func(s *Snapshot) float64 { return float64(s.BytesIn) }),
		counterDef("pubsub_out_bytes_total", "Payload bytes delivered.", func(s *Snapshot) float64 { return float64(s.BytesOut) }),
		counterDef("pubsub_dropped_messages_total", "Messages dropped.", func(s *Snapshot) float64 { return float64(s.Dropped) }),
		counterDef("pubsub_slow_consumers_total", "Connections closed as slow consumers.", func(s *Snapshot) float64 { return float64(s.SlowConsumers) }),
	}
	latencyDesc = prometheus.NewDesc("pubsub_delivery_latency_seconds",
		"Publish-to-deliver latency. Quantiles cover the window since the previous snapshot; count and sum are cumulative.", nil, nil)
	infoDesc = prometheus.NewDesc("pubsub_node_info",
		"Node identity; always 1.", []string{"node", "address", "version"}, nil)
)

func gaugeDef(name, help string, value func(*Snapshot) float64) metricDef {
	return metricDef{desc: prometheus.NewDesc(name, help, nil, nil), kind: kindGauge, value: value}
}

func counterDef(name, help string, value func(*Snapshot) float64) metricDef {
	return metricDef{desc: prometheus.NewDesc(name, help, nil, nil), kind: kindCounter, value: value}
}

// NewCollector returns a prometheus.Collector that calls source once per
// scrape and exposes the snapshot as pubsub_* metrics: counters as
// counters, gauges as gauges, latency as a summary. Process figures are left
// to the standard Go and process collectors (see NewRegistry).
func NewCollector(source func() Snapshot) prometheus.Collector {
	return &collector{source: source}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDefs {
		ch <- d.desc
	}
	ch <- latencyDesc
	ch <- infoDesc
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.source()
	for _, d := range metricDefs {
		valueType := prometheus.GaugeValue
		if d.kind == kindCounter {
			valueType = prometheus.CounterValue
		}
		ch <- constMetric(d.desc, valueType, d.value(&s))
	}
	summary, err := prometheus.NewConstSummary(latencyDesc, s.LatencyCount, s.LatencySum/1e6, map[float64]float64{
		0.5:   s.LatencyP50 / 1e6,
		0.99:  s.LatencyP99 / 1e6,
		0.999: s.LatencyP999 / 1e6,
	})
	if err != nil {
		summary = prometheus.NewInvalidMetric(latencyDesc, err)
	}
	ch <- summary
	ch <- constMetric(infoDesc, prometheus.GaugeValue, 1, s.Node, s.Address, s.Version)
}

// constMetric reports a construction error to the registry, which fails the
// scrape with a message, instead of panicking like MustNewConstMetric.
func constMetric(desc *prometheus.Desc, valueType prometheus.ValueType, value float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, valueType, value, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}

// NewRegistry returns a registry of its own (not the global default, so
// tests and embedders get exactly these metrics) holding the pubsub
// collector and the standard Go runtime and process collectors.
func NewRegistry(source func() Snapshot) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// The three collectors have disjoint, constant descriptors, so
	// registration cannot fail.
	reg.MustRegister(
		NewCollector(source),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
