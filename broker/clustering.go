package broker

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pubsub/pubsub/broker/cluster"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/keys"
)

// Clustering (DESIGN §7, docs/clustering.md). Membership, interest gossip
// and peer links live in package cluster; this file connects them to the
// node: the subscription trie reports which filters this node holds
// (topic.Trie.OnInterest), publish sends each locally published message to
// the nodes interested in its topic, and messages from peers are delivered
// locally and never sent on (one hop).

// clusterKey derives the 32-byte gossip and peer-link key from
// cluster.passphrase, so operators can use any passphrase while memberlist
// gets the AES-256 key length it needs.
func clusterKey(passphrase string) []byte {
	if passphrase == "" {
		return nil
	}
	sum := sha256.Sum256([]byte("pubsub cluster key v1\x00" + passphrase))
	return sum[:]
}

// peerListen is cluster.peer_listen, or by default the gossip address with
// the next port (7946 -> 7947), so several nodes on one host only need
// distinct cluster.listen ports; port 0 stays 0 (tests).
func peerListen(cc ClusterConfig) string {
	if cc.PeerListen != "" {
		return cc.PeerListen
	}
	host, port, err := net.SplitHostPort(cc.Listen)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// newClusterNode builds (but does not start) the cluster member when
// cluster.listen is set.
func (s *Server) newClusterNode() error {
	cc := s.cfg.Cluster
	if cc.Listen == "" {
		return nil
	}
	node, err := cluster.New(cluster.Config{
		Name:           nodeName(s.cfg),
		BindAddr:       cc.Listen,
		AdvertiseAddr:  cc.Advertise,
		PeerAddr:       peerListen(cc),
		Seeds:          []string(cc.Seed),
		SecretKey:      clusterKey(cc.Passphrase),
		Label:          cc.Label,
		Version:        s.cfg.Version,
		Logger:         s.log.With("component", "cluster"),
		OnMessage:      s.fromPeer,
		OnMemberChange: s.memberChanged,
		RejoinInterval: time.Duration(cc.RejoinInterval),
	})
	if err != nil {
		return &ConfigError{Key: "cluster", Err: err}
	}
	s.cluster = node
	return nil
}

// startCluster binds the gossip and peer-link ports, then advertises what
// the trie holds and keeps it up to date.
func (s *Server) startCluster() error {
	if s.cluster == nil {
		return nil
	}
	if err := s.cluster.Start(); err != nil {
		return fmt.Errorf("%w (cluster.listen %s, cluster.peer_listen %s)", err, s.cfg.Cluster.Listen, peerListen(s.cfg.Cluster))
	}
	if err := s.cluster.Handle(revokeQuery, s.applyRevocation); err != nil {
		return err
	}
	s.trie.OnInterest(func(filter string, present bool) {
		if present {
			if err := s.cluster.AddInterest(filter); err != nil {
				s.log.Warn("cluster interest not advertised", "filter_len", len(filter), "err", err)
			}
			return
		}
		s.cluster.RemoveInterest(filter)
	})
	m := s.cluster.LocalMember()
	s.log.Info("cluster member started", "node", m.Name, "gossip", m.GossipAddr, "peer", m.PeerAddr, "seeds", len(s.cfg.Cluster.Seed))
	return nil
}

// stopCluster leaves gracefully, so peers drop this node at once rather
// than after failure detection.
func (s *Server) stopCluster() {
	if s.cluster == nil {
		return
	}
	if err := s.cluster.Leave(2 * time.Second); err != nil {
		s.log.Debug("cluster leave", "err", err)
	}
	if err := s.cluster.Shutdown(); err != nil {
		s.log.Debug("cluster shutdown", "err", err)
	}
}

// toPeers sends a locally published message to every other node with a
// matching filter. It never blocks: a full peer queue drops and counts.
func (s *Server) toPeers(enc *encoder, t, payload []byte, qos byte, retain bool) {
	peers := s.cluster.AppendInterested(enc.peers[:0], t)
	enc.peers = peers
	if len(peers) == 0 {
		return
	}
	id := s.msgID(enc).Bytes()
	m := cluster.Message{Topic: t, Payload: payload, QoS: qos, Retain: retain, Origin: s.NodeName(), ID: id[:]}
	for _, p := range peers {
		if err := s.cluster.Send(p, m); err != nil {
			s.stats.AddDropped(1)
		}
	}
}

// fromPeer delivers a message that another node's client published. It
// runs on that peer link's reading goroutine; the message's fields alias
// the link's buffer, and publish copies what outlives the call.
func (s *Server) fromPeer(from string, m cluster.Message) {
	enc := encoders.Get().(*encoder)
	defer encoders.Put(enc)
	enc.remote = true
	enc.origin = ""
	if id, err := store.IDFromBytes(m.ID); err == nil {
		enc.next, enc.hasNext = id, true
	}
	s.stats.AddMessagesIn(1)
	s.stats.AddBytesIn(int64(len(m.Payload)))
	s.publish(enc, m.Topic, m.Payload, m.QoS, m.Retain, nil, false)
	enc.remote = false
}

// memberChanged keeps the peers gauge current and logs membership.
func (s *Server) memberChanged(m cluster.Member) {
	s.log.Info("cluster member", "node", m.Name, "state", m.State.String(), "gossip", m.GossipAddr)
	alive := 0
	for _, mm := range s.cluster.Members() {
		if mm.State == cluster.StateAlive && mm.Name != s.NodeName() {
			alive++
		}
	}
	s.stats.SetPeers(int64(alive))
}

// Cluster is the node's cluster member, nil when clustering is off.
func (s *Server) Cluster() *cluster.Node { return s.cluster }

// clusterMember is the JSON form of a member for the admin API.
type clusterMember struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Gossip  string `json:"gossip"`
	Peer    string `json:"peer"`
	Version string `json:"version"`
	Self    bool   `json:"self"`
}

// serveClusterAPI answers the admin API behind `pubsub cluster`:
// GET /api/cluster/members, POST /api/cluster/join {"seeds":[...]},
// POST /api/cluster/leave. It needs a master key.
func (s *Server) serveClusterAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	cl, ok := s.authorizeHTTP(w, r)
	if !ok {
		return
	}
	if !s.cfg.NoAuth && !cl.Perms().Has(keys.PermMaster) {
		writeJSON(http.StatusForbidden, map[string]string{"error": "the cluster API needs a master key"})
		return
	}
	if s.cluster == nil {
		writeJSON(http.StatusConflict, map[string]string{"error": "clustering is off on this node: set cluster.listen"})
		return
	}
	op := strings.TrimPrefix(r.URL.Path, "/api/cluster/")
	switch {
	case op == "members" && r.Method == http.MethodGet:
		self := s.cluster.Name()
		var out []clusterMember
		for _, m := range s.cluster.Members() {
			out = append(out, clusterMember{Name: m.Name, State: m.State.String(), Gossip: m.GossipAddr, Peer: m.PeerAddr, Version: m.Version, Self: m.Name == self})
		}
		writeJSON(http.StatusOK, map[string]any{"members": out})
	case op == "join" && r.Method == http.MethodPost:
		var req struct {
			Seeds []string `json:"seeds"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || len(req.Seeds) == 0 {
			writeJSON(http.StatusBadRequest, map[string]string{"error": `want {"seeds":["host:port",...]}`})
			return
		}
		n, err := s.cluster.Join(r.Context(), req.Seeds)
		if err != nil && n == 0 {
			writeJSON(http.StatusBadGateway, map[string]any{"error": err.Error(), "joined": n})
			return
		}
		writeJSON(http.StatusOK, map[string]any{"joined": n})
	case op == "leave" && r.Method == http.MethodPost:
		if err := s.cluster.Leave(5 * time.Second); err != nil {
			writeJSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(http.StatusOK, map[string]string{"status": "left"})
	default:
		writeJSON(http.StatusNotFound, map[string]string{"error": "GET /api/cluster/members, POST /api/cluster/join, POST /api/cluster/leave"})
	}
}

// revokeQuery is the cluster query that carries a revocation, so a key
// revoked on one node is refused on every node at once (DESIGN §5).
const revokeQuery = "revoke"

type revocationMsg struct {
	JTI     string    `json:"jti"`
	Until   time.Time `json:"until"`
	Revoked bool      `json:"revoked"`
}

// spreadRevocation tells every other node, with a deadline; nodes that miss
// it (down, partitioned) do not learn it, which docs/clustering.md says.
func (s *Server) spreadRevocation(jti string, until time.Time, revoked bool) {
	if s.cluster == nil {
		return
	}
	body, _ := json.Marshal(revocationMsg{JTI: jti, Until: until, Revoked: revoked})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	answers, err := s.cluster.Query(ctx, revokeQuery, body)
	if err != nil {
		s.log.Warn("revocation not spread to the cluster", "jti", jti, "err", err)
		return
	}
	s.log.Info("revocation spread to the cluster", "jti", jti, "revoked", revoked, "nodes", len(answers))
}

// applyRevocation is the handler of revokeQuery on the receiving node.
func (s *Server) applyRevocation(_ context.Context, body []byte) []byte {
	var m revocationMsg
	if err := json.Unmarshal(body, &m); err != nil || m.JTI == "" || len(m.JTI) > 256 {
		return []byte("bad")
	}
	var err error
	if m.Revoked {
		if err = s.revocations.Revoke(m.JTI, m.Until); err == nil {
			s.enforceKeys()
		}
	} else {
		err = s.revocations.Unrevoke(m.JTI)
	}
	if err != nil {
		s.log.Warn("revocation from a peer not saved", "jti", m.JTI, "err", err)
		return []byte("error")
	}
	return []byte("ok")
}
