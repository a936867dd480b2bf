package broker_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/keys"
	"github.com/pubsub/pubsub/stats"
)

func signKey(t *testing.T, srv *broker.Server, c keys.Claims) string {
	t.Helper()
	k, err := srv.Keyring().Sign(c)
	require.NoError(t, err)
	return k
}

func dialClient(t *testing.T, srv *broker.Server, key string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Server: srv.Addr().String(), Key: key})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStatsSystemChannel: every stats.interval the node publishes its
// snapshot on $SYS/stats/<node>; only a key that covers $SYS/stats/# may
// read it (issue 6).
func TestStatsSystemChannel(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) {
		c.NoAuth = false
		c.NodeName = "node-a"
		c.Stats.Interval = broker.Duration(100 * time.Millisecond)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	plain := dialClient(t, srv, signKey(t, srv, keys.Claims{Perm: "rw", Read: []string{"#"}, Write: []string{"#"}}))
	codes, err := plain.Subscribe(ctx, client.Subscription{Filter: "$SYS/stats/+"})
	require.NoError(t, err)
	require.Equal(t, []byte{0x80}, codes, "a key for # must not read $SYS")

	master := dialClient(t, srv, signKey(t, srv, keys.Claims{Perm: "m", Read: []string{"#"}, Write: []string{"#"}}))
	codes, err = master.Subscribe(ctx, client.Subscription{Filter: "$SYS/stats/+"})
	require.NoError(t, err)
	require.Equal(t, []byte{0}, codes)

	// Traffic, so the counters move.
	require.NoError(t, plain.Publish(ctx, "load/x", []byte("12345678"), 1, false))
	var snap stats.Snapshot
	for snap.MessagesIn == 0 {
		select {
		case m := <-master.Messages():
			require.Equal(t, "$SYS/stats/node-a", m.Topic)
			snap, err = stats.ParseSnapshot(m.Payload)
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatal("no snapshot with traffic on $SYS/stats/node-a")
		}
	}
	require.Equal(t, "node-a", snap.Node)
	require.GreaterOrEqual(t, snap.Connections, int64(2))
	require.GreaterOrEqual(t, snap.BytesIn, uint64(8))
	require.Greater(t, snap.Goroutines, 0)

	// GET /stats serves the same document.
	resp, err := http.Get("http://" + srv.Addr().String() + "/stats")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	httpSnap, err := stats.ParseSnapshot(body)
	require.NoError(t, err)
	require.Equal(t, "node-a", httpSnap.Node)
}

// TestMetricsEndpoint parses /metrics with the Prometheus text parser.
func TestMetricsEndpoint(t *testing.T) {
	srv := startServer(t, nil)
	c := dialClient(t, srv, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Subscribe(ctx, client.Subscription{Filter: "m/#"})
	require.NoError(t, err)
	require.NoError(t, c.Publish(ctx, "m/1", []byte("x"), 1, false))

	resp, err := http.Get("http://" + srv.Addr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	for _, name := range []string{"pubsub_connections", "pubsub_messages_in_total", "pubsub_subscriptions"} {
		require.Contains(t, families, name)
	}
	require.GreaterOrEqual(t, families["pubsub_messages_in_total"].GetMetric()[0].GetCounter().GetValue(), 1.0)
	for name := range families {
		require.False(t, strings.Contains(name, "m/1"), "no per-topic metrics")
	}

	resp2, err := http.Get("http://" + srv.Addr().String() + "/metrics?format=json")
	require.NoError(t, err)
	defer resp2.Body.Close()
	js, _ := io.ReadAll(resp2.Body)
	_, err = stats.ParseSnapshot(js)
	require.NoError(t, err)
}
