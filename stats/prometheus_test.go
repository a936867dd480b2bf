package stats

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// scrape serves the registry over real HTTP, as /metrics does, and parses
// the text exposition format.
func scrape(t *testing.T, source func() Snapshot) map[string]*dto.MetricFamily {
	t.Helper()
	server := httptest.NewServer(promhttp.HandlerFor(NewRegistry(source), promhttp.HandlerOpts{}))
	defer server.Close()
	req, err := http.NewRequest(http.MethodGet, server.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain")
	resp, err := server.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

func TestPrometheusCollector(t *testing.T) {
	var calls atomic.Int32
	snap := sampleSnapshot()
	families := scrape(t, func() Snapshot { calls.Add(1); return snap })
	require.Equal(t, int32(1), calls.Load(), "one snapshot per scrape")

	tests := []struct {
		name  string
		typ   dto.MetricType
		value float64
	}{
		{"pubsub_connections", dto.MetricType_GAUGE, 1},
		{"pubsub_subscriptions", dto.MetricType_GAUGE, 2},
		{"pubsub_retained_messages", dto.MetricType_GAUGE, 3},
		{"pubsub_stored_messages", dto.MetricType_GAUGE, 4},
		{"pubsub_stored_bytes", dto.MetricType_GAUGE, 5},
		{"pubsub_peers", dto.MetricType_GAUGE, 6},
		{"pubsub_uptime_seconds", dto.MetricType_GAUGE, 5.25},
		{"pubsub_connections_accepted_total", dto.MetricType_COUNTER, 7},
		{"pubsub_messages_in_total", dto.MetricType_COUNTER, 8},
		{"pubsub_messages_out_total", dto.MetricType_COUNTER, 9},
		{"pubsub_in_bytes_total", dto.MetricType_COUNTER, 10},
		{"pubsub_out_bytes_total", dto.MetricType_COUNTER, 11},
		{"pubsub_dropped_messages_total", dto.MetricType_COUNTER, 12},
		{"pubsub_slow_consumers_total", dto.MetricType_COUNTER, 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			family := families[tt.name]
			require.NotNil(t, family, "missing %s", tt.name)
			require.Equal(t, tt.typ, family.GetType())
			require.Len(t, family.GetMetric(), 1)
			m := family.GetMetric()[0]
			require.Empty(t, m.GetLabel(), "no labels on %s", tt.name)
			if tt.typ == dto.MetricType_COUNTER {
				require.Equal(t, tt.value, m.GetCounter().GetValue())
			} else {
				require.Equal(t, tt.value, m.GetGauge().GetValue())
			}
		})
	}

	t.Run("latency summary", func(t *testing.T) {
		family := families["pubsub_delivery_latency_seconds"]
		require.NotNil(t, family)
		require.Equal(t, dto.MetricType_SUMMARY, family.GetType())
		summary := family.GetMetric()[0].GetSummary()
		require.Equal(t, uint64(17), summary.GetSampleCount())
		require.InDelta(t, 18.5e-6, summary.GetSampleSum(), 1e-12)
		quantiles := map[float64]float64{}
		for _, q := range summary.GetQuantile() {
			quantiles[q.GetQuantile()] = q.GetValue()
		}
		require.InDeltaMapValues(t, map[float64]float64{0.5: 14.5e-6, 0.99: 15.5e-6, 0.999: 16.5e-6}, quantiles, 1e-12)
	})

	t.Run("node info", func(t *testing.T) {
		family := families["pubsub_node_info"]
		require.NotNil(t, family)
		labels := map[string]string{}
		for _, l := range family.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		require.Equal(t, map[string]string{"node": "node-1", "address": "10.0.0.1:8080", "version": "v1.2.3"}, labels)
	})

	t.Run("standard collectors and nothing else", func(t *testing.T) {
		require.Contains(t, families, "go_goroutines")
		for name := range families {
			ok := strings.HasPrefix(name, "pubsub_") || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
			require.True(t, ok, "unexpected metric %s", name)
		}
	})
}

func TestPrometheusLiveNode(t *testing.T) {
	n := newTestNode()
	n.AddMessagesIn(41)
	n.AddMessagesIn(1)
	families := scrape(t, func() Snapshot { return n.Snapshot(testStart.Add(10 * 1e9)) })
	require.Equal(t, 42.0, families["pubsub_messages_in_total"].GetMetric()[0].GetCounter().GetValue())
}
