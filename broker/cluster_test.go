package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/keys"
	"github.com/pubsub/pubsub/stats"
)

// startClusterNode runs a node with clustering on loopback. Nodes of one
// cluster share the secret, so a key minted on one works on all.
func startClusterNode(t *testing.T, name, secret string, seeds ...string) *broker.Server {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NodeName = name
	cfg.Secret = secret
	cfg.Stats.Interval = broker.Duration(200 * time.Millisecond)
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.Cluster.PeerListen = "127.0.0.1:0"
	cfg.Cluster.Seed = seeds
	cfg.Cluster.Passphrase = "test cluster"
	srv, err := broker.New(cfg, nil)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// TestClusterRoutesBetweenNodes: three nodes joined through one seed; a
// message published on any node reaches subscribers on the others exactly
// once (one hop), and $SYS/stats of every node reaches a monitor connected
// to one of them (DESIGN §7, §8).
func TestClusterRoutesBetweenNodes(t *testing.T) {
	sec, err := keys.GenerateSecret()
	require.NoError(t, err)
	secret := sec.Encode()
	n1 := startClusterNode(t, "n1", secret)
	seed := n1.Cluster().LocalMember().GossipAddr
	n2 := startClusterNode(t, "n2", secret, seed)
	n3 := startClusterNode(t, "n3", secret, seed)
	nodes := []*broker.Server{n1, n2, n3}

	waitFor(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Cluster().Members() {
				if m.State.String() == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})

	master := signKey(t, n1, keys.Claims{Perm: "m", Read: []string{"#"}, Write: []string{"#"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subs := make([]*client.Client, 3)
	for i, n := range nodes {
		subs[i] = dialClient(t, n, master)
		codes, err := subs[i].Subscribe(ctx, client.Subscription{Filter: "room/#", QoS: 1})
		require.NoError(t, err)
		require.Equal(t, []byte{1}, codes)
	}
	// Interest reaches every node.
	waitFor(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Cluster().Interested([]byte("room/x"))) != 2 {
				return false
			}
		}
		return true
	})
	for i, n := range nodes {
		pub := dialClient(t, n, master)
		require.NoError(t, pub.Publish(ctx, fmt.Sprintf("room/from-%d", i+1), []byte("hi"), 1, false))
	}
	for i, c := range subs {
		got := map[string]int{}
		for len(got) < 3 {
			select {
			case m := <-c.Messages():
				got[m.Topic]++
			case <-ctx.Done():
				t.Fatalf("node %d subscriber got %v", i+1, got)
			}
		}
		for topic, n := range got {
			require.Equal(t, 1, n, "%s delivered %d times on node %d", topic, n, i+1)
		}
	}

	// One monitor connection sees every node's stats.
	mon := dialClient(t, n1, master)
	_, err = mon.Subscribe(ctx, client.Subscription{Filter: "$SYS/stats/+"})
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case m := <-mon.Messages():
			snap, err := stats.ParseSnapshot(m.Payload)
			require.NoError(t, err)
			seen[snap.Node] = true
			if snap.Node == "n1" {
				require.GreaterOrEqual(t, snap.Peers, int64(2))
			}
		case <-ctx.Done():
			t.Fatalf("stats seen from %v only", seen)
		}
	}

	// The admin API behind `pubsub cluster members`.
	req, _ := http.NewRequest(http.MethodGet, "http://"+n2.Addr().String()+"/api/cluster/members", nil)
	req.Header.Set("Authorization", "Bearer "+master)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Members []struct {
			Name, State string
			Self        bool
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Len(t, body.Members, 3)
	names := []string{}
	for _, m := range body.Members {
		names = append(names, m.Name+":"+m.State)
	}
	require.ElementsMatch(t, []string{"n1:alive", "n2:alive", "n3:alive"}, names)

	// A non-master key is refused.
	plain := signKey(t, n1, keys.Claims{Perm: "rw", Read: []string{"#"}, Write: []string{"#"}})
	req, _ = http.NewRequest(http.MethodGet, "http://"+n2.Addr().String()+"/api/cluster/members", nil)
	req.Header.Set("Authorization", plain)
	resp2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusForbidden, resp2.StatusCode)

	// A key revoked on one node is refused on every node, and live
	// connections with it end (DESIGN §5: revocation is cluster-wide).
	victim := signKey(t, n1, keys.Claims{Perm: "rw", Read: []string{"#"}, Write: []string{"#"}})
	vc := dialClient(t, n2, victim)
	cl, err := n1.Keyring().Verify(victim)
	require.NoError(t, err)
	require.NoError(t, n1.Revoke(cl.ID, time.Time{}))
	select {
	case <-vc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection with a key revoked on another node still open")
	}
	_, err = client.Dial(ctx, client.Options{Server: n3.Addr().String(), Key: victim})
	var refused *client.ConnackError
	require.ErrorAs(t, err, &refused)
	require.Equal(t, byte(5), refused.Code)

	// A node that leaves stops receiving interest lookups.
	require.NoError(t, n3.Close())
	waitFor(t, 10*time.Second, func() bool {
		return !strings.Contains(strings.Join(n1.Cluster().Interested([]byte("room/x")), ","), "n3")
	})
}
