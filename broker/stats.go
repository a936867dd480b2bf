package broker

import (
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pubsub/pubsub/stats"
)

// Node figures (DESIGN §8). The hot path feeds s.stats with single atomic
// adds; every stats.interval the node publishes a snapshot on the system
// channel $SYS/stats/<node>, which routes like any message, so one
// subscriber sees every node of a cluster. The same snapshot feeds StatsD,
// GET /stats and the Prometheus collector.

// StatsTopicPrefix is where snapshots are published; reading it needs a
// key that covers $SYS/stats/# (a master key, or one minted for it).
const StatsTopicPrefix = "$SYS/stats/"

func nodeName(cfg Config) string {
	if cfg.NodeName != "" {
		return cfg.NodeName
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "pubsub"
}

// Snapshot returns the node's figures now.
func (s *Server) Snapshot() stats.Snapshot {
	st := s.store.Stats()
	s.stats.SetRetained(st.Retained)
	s.stats.SetStored(st.Messages)
	s.stats.SetStoredBytes(st.Bytes)
	// The connection and subscription gauges already live in s.online and
	// the trie; carrying them over here keeps the connect and subscribe
	// paths free of a second counter.
	s.stats.AddConnections(s.online.Load() - s.reportedConns.Swap(s.online.Load()))
	subs := int64(s.trie.Len())
	s.stats.AddSubscriptions(subs - s.reportedSubs.Swap(subs))
	return s.stats.Snapshot(time.Now())
}

// NodeName is the node's name in the cluster and in $SYS/stats/<node>.
func (s *Server) NodeName() string { return s.stats.Info().Name }

// statsLoop publishes a snapshot every stats.interval.
func (s *Server) statsLoop() {
	defer s.wg.Done()
	var sink *stats.StatsD
	if sc := s.cfg.Stats.StatsD; sc.Address != "" {
		sink = stats.NewStatsD(sc.sinkConfig(), s.log)
		defer sink.Close()
	}
	t := time.NewTicker(time.Duration(s.cfg.Stats.Interval))
	defer t.Stop()
	topic := []byte(StatsTopicPrefix + s.NodeName())
	enc := new(encoder)
	for {
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		snap := s.Snapshot()
		s.publish(enc, topic, snap.Marshal(), 0, false, nil, false)
		if sink != nil {
			sink.Send(snap)
		}
	}
}

// sinkConfig converts the YAML form (tags as "k=v" strings, which the
// environment can carry) to the stats package's.
func (c StatsDConfig) sinkConfig() stats.StatsDConfig {
	out := stats.StatsDConfig{Address: c.Address, Prefix: c.Prefix, TagsFormat: c.TagsFormat}
	for _, kv := range c.Tags {
		if k, v, ok := cutTag(kv); ok {
			if out.Tags == nil {
				out.Tags = map[string]string{}
			}
			out.Tags[k] = v
		}
	}
	return out
}

func cutTag(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' || kv[i] == ':' {
			return kv[:i], kv[i+1:], i > 0
		}
	}
	return "", "", false
}

// serveStats answers GET /stats and /metrics?format=json with the snapshot.
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(s.Snapshot().Marshal())
}

// metricsHandler serves Prometheus text, or the JSON snapshot with
// ?format=json (Eventhub's /metrics?format=json).
func (s *Server) metricsHandler() http.Handler {
	prom := promhttp.HandlerFor(stats.NewRegistry(s.Snapshot), promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") == "json" {
			s.serveStats(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		prom.ServeHTTP(w, r)
	})
}
