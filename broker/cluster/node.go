package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as this node sees it.
type State uint8

const (
	// StateAlive: the member gossips and its peer link is up (or has not
	// been down for LinkSuspectAfter).
	StateAlive State = iota
	// StateSuspect: memberlist still has the member alive, but its peer
	// link has been down for longer than LinkSuspectAfter, so messages to
	// it queue up. memberlist does not publish its own internal suspicion
	// through any delegate, so the node reports the evidence it has.
	StateSuspect
	// StateDead: the failure detector declared the member dead.
	StateDead
	// StateLeft: the member left gracefully (Leave).
	StateLeft
)

var stateNames = [...]string{"alive", "suspect", "dead", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText makes State print as its name in JSON and YAML.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Member is a node of the cluster as this node sees it.
type Member struct {
	Name       string
	GossipAddr string // ip:port
	PeerAddr   string // host:port of the peer link; empty if unknown
	Version    string
	State      State
	Since      time.Time // when the member entered State (for alive: joined)
}

// Node is one member of a cluster: membership and failure detection
// (memberlist), interest gossip, peer links and scatter/gather queries.
// Create it with New, then Start; all methods are safe for concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	interest *interest
	queries  *queries
	links    *links
	// broadcasts holds the gossip this node spreads: at most one interest
	// message per node, since a newer one replaces the queued older one.
	broadcasts *memberlist.TransmitLimitedQueue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	inbox    chan []byte   // NotifyMsg payloads, copied
	announce chan struct{} // cap 1: local interest changed
	events   *eventQueue   // nil without OnMemberChange

	handlersMu sync.RWMutex
	handlers   map[string]Handler
	querySlots chan struct{}

	aliveCount atomic.Int32 // alive members, this node included

	malformedGossip atomic.Uint64
	droppedGossip   atomic.Uint64

	// lookupIP resolves seed names; a field so tests can fake DNS.
	lookupIP func(ctx context.Context, host string) ([]net.IPAddr, error)

	// mu guards the fields below. Taken inside memberlist's node lock by the
	// event callbacks; never held while calling into memberlist or links.
	mu         sync.Mutex
	ml         *memberlist.Memberlist
	meta       []byte
	members    map[string]*Member
	started    bool
	leaving    bool
	stopped    bool
	fetching   map[string]bool // interest fetches in flight, by node
	departing  map[string]bool // peers that announced they are leaving
	joinWarned bool
}

// inboxSize bounds gossip waiting to be applied; memberlist retransmits
// and push/pull repairs what is dropped when it is full.
const inboxSize = 256

// deadNodeReclaimTime lets a node that restarts under the same name at a
// different address (a rescheduled pod) take its name back once its former
// self has been dead this long; memberlist's default (0) refuses it forever
// as an address conflict.
const deadNodeReclaimTime = 5 * time.Second

// aloneRetryMin is the first retry delay while no seed answered (I6).
const aloneRetryMin = 500 * time.Millisecond

// New validates cfg and returns a node that is not yet started.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.SecretKey = slices.Clone(cfg.SecretKey)
	cfg.Seeds = slices.Clone(cfg.Seeds)
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.Name),
		interest:   newInterest(cfg.Name, cfg.InterestCacheSize, time.Now()),
		queries:    newQueries(),
		ctx:        ctx,
		cancel:     cancel,
		inbox:      make(chan []byte, inboxSize),
		announce:   make(chan struct{}, 1),
		handlers:   make(map[string]Handler),
		querySlots: make(chan struct{}, cfg.MaxConcurrentQueries),
		members:    make(map[string]*Member),
		fetching:   make(map[string]bool),
		departing:  make(map[string]bool),
		lookupIP:   net.DefaultResolver.LookupIPAddr,
	}
	n.broadcasts = &memberlist.TransmitLimitedQueue{
		// Our own count, not memberlist's NumMembers: that takes
		// memberlist's node lock, which its event callbacks hold while
		// they wait for ours.
		NumNodes:       func() int { return max(int(n.aliveCount.Load()), 1) },
		RetransmitMult: memberlist.DefaultLANConfig().RetransmitMult,
	}
	n.links = newLinks(n)
	if cfg.OnMemberChange != nil {
		n.events = newEventQueue(cfg.OnMemberChange)
	}
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Start binds the peer link and gossip ports, starts gossiping and begins
// joining the seeds in the background. Unreachable seeds are not an error:
// the node runs alone and keeps retrying (I6). A node starts once.
func (n *Node) Start() (err error) {
	n.mu.Lock()
	if n.started || n.stopped {
		n.mu.Unlock()
		return errors.New("cluster: node already started")
	}
	n.started = true
	n.mu.Unlock()

	ln, err := net.Listen("tcp", n.cfg.PeerAddr)
	if err != nil {
		return fmt.Errorf("cluster: peer link: %w", err)
	}
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	meta := nodeMeta{peerAddr: advertisedPeerAddr(n.cfg.PeerAdvertiseAddr, ln.Addr()), version: n.cfg.Version}
	n.mu.Lock()
	n.meta = meta.appendTo(nil)
	n.mu.Unlock()

	mc, err := n.memberlistConfig()
	if err != nil {
		return err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		return fmt.Errorf("cluster: gossip: %w", err)
	}
	n.mu.Lock()
	n.ml = ml
	n.mu.Unlock()

	n.links.start(ln)
	n.wg.Add(3)
	go n.applyGossip()
	go n.announceLoop()
	go n.maintain()
	if n.events != nil {
		n.wg.Add(1)
		go n.events.run(n.ctx, &n.wg)
	}
	self := n.self()
	n.log.Info("cluster node started", "gossip_addr", self.GossipAddr, "peer_addr", self.PeerAddr,
		"encrypted", len(n.cfg.SecretKey) > 0, "seeds", len(n.cfg.Seeds))
	return nil
}

// memberlistConfig builds memberlist's configuration and transport.
func (n *Node) memberlistConfig() (*memberlist.Config, error) {
	bindIP, bindPort, _ := splitIPPort(n.cfg.BindAddr, false) // validated by New
	logger := newMemberlistLogger(n.log)
	nt, err := newNetTransport(bindIP.String(), bindPort, logger)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	if n.cfg.TuneMemberlist != nil {
		n.cfg.TuneMemberlist(mc)
	}
	if mc.DeadNodeReclaimTime <= 0 {
		mc.DeadNodeReclaimTime = deadNodeReclaimTime
	}
	n.broadcasts.RetransmitMult = mc.RetransmitMult // nothing gossips before Create
	mc.Name = n.cfg.Name
	mc.BindAddr = bindIP.String()
	mc.BindPort = nt.GetAutoBindPort()
	mc.AdvertiseAddr, mc.AdvertisePort = "", mc.BindPort
	if n.cfg.AdvertiseAddr != "" {
		ip, port, _ := splitIPPort(n.cfg.AdvertiseAddr, false)
		mc.AdvertiseAddr = ip.String()
		if port != 0 {
			mc.AdvertisePort = port
		}
	}
	mc.SecretKey = n.cfg.SecretKey
	mc.Keyring = nil
	mc.Label = n.cfg.Label
	mc.SkipInboundLabelCheck = false
	d := &delegate{n: n}
	mc.Delegate, mc.Events, mc.Alive = d, d, d
	mc.Merge, mc.Conflict, mc.Ping = nil, nil, nil
	mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = 1, 1, 1
	mc.Logger, mc.LogOutput = logger, nil
	mc.Transport = nt
	if n.cfg.WrapTransport != nil {
		mc.Transport = n.cfg.WrapTransport(nt)
	}
	return mc, nil
}

// newNetTransport binds memberlist's UDP and TCP listeners. Port 0 asks
// the kernel for a TCP port and then binds UDP to the same number, which
// can collide, so that case retries as memberlist's own setup does.
func newNetTransport(ip string, port int, logger *log.Logger) (*memberlist.NetTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{ip},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// advertisedPeerAddr is the peer-link address put in the node metadata.
func advertisedPeerAddr(override string, bound net.Addr) string {
	if override != "" {
		return override
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String()
	}
	port := strconv.Itoa(tcp.Port)
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return net.JoinHostPort("", port) // receivers use our gossip IP
	}
	return net.JoinHostPort(tcp.IP.String(), port)
}

func (n *Node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ml != nil && !n.stopped
}

func (n *Node) gossip() *memberlist.Memberlist {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	return n.ml
}

// Join contacts the given gossip addresses ("host[:port]"; names resolve
// to all their addresses) and merges state with each. It returns how many
// answered; an error only when none did. Seeds given here are not re-joined
// periodically, but every member learned from them is re-joined while it
// is failed, which heals partitions just the same.
func (n *Node) Join(ctx context.Context, seeds []string) (int, error) {
	ml := n.gossip()
	if ml == nil {
		return 0, ErrNotRunning
	}
	addrs := n.resolveSeeds(ctx, seeds)
	if len(addrs) == 0 {
		return 0, errors.New("cluster: join: no seed address resolved")
	}
	count, err := ml.Join(addrs)
	if err != nil {
		return count, fmt.Errorf("cluster: join: %w", err)
	}
	return count, nil
}

// Leave announces that this node leaves, waiting up to timeout for the
// announcement to reach another member, and stops re-joining. The node
// keeps gossiping until Shutdown; others list it as left, not dead.
func (n *Node) Leave(timeout time.Duration) error {
	n.mu.Lock()
	n.leaving = true
	n.mu.Unlock()
	ml := n.gossip()
	if ml == nil {
		return ErrNotRunning
	}
	// Tell the peers first, over the links, and give them up to half the
	// time to acknowledge: memberlist's leave looks like a failure to them.
	began := time.Now()
	ctx, cancel := context.WithTimeout(n.ctx, timeout/2)
	n.ask(ctx, n.alivePeers(), kindLeave, nil)
	cancel()
	if err := ml.Leave(max(timeout-time.Since(began), time.Millisecond)); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops the node without a leave announcement (others detect the
// failure), closes every link and waits for the node's goroutines. Call
// Leave first for a graceful exit. Shutdown is idempotent.
func (n *Node) Shutdown() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	ml := n.ml
	n.mu.Unlock()

	n.cancel()
	var err error
	if ml != nil {
		err = ml.Shutdown()
	}
	n.links.close()
	n.wg.Wait()
	return err
}

// Members returns every member this node knows, itself included, sorted
// by name. Failed and departed members stay listed for Config.ReapAfter.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, *m)
	}
	n.mu.Unlock()
	now := time.Now()
	for i := range out {
		m := &out[i]
		if m.State != StateAlive || m.Name == n.cfg.Name || m.PeerAddr == "" {
			continue
		}
		if p := n.links.lookup(m.Name); p != nil && p.downFor(now) > n.cfg.LinkSuspectAfter {
			m.State = StateSuspect
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LocalMember returns this node as the cluster sees it (addresses are
// known once Start returned).
func (n *Node) LocalMember() Member { return n.self() }

// self returns this node's member entry.
func (n *Node) self() Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m := n.members[n.cfg.Name]; m != nil {
		return *m
	}
	return Member{Name: n.cfg.Name}
}

// alivePeers returns the names of the other alive members.
func (n *Node) alivePeers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	peers := make([]string, 0, len(n.members))
	for name, m := range n.members {
		if name != n.cfg.Name && m.State == StateAlive {
			peers = append(peers, name)
		}
	}
	return peers
}

// memberAlive records a joined or updated member. Called with memberlist's
// node lock held: no calls back into memberlist.
func (n *Node) memberAlive(node *memberlist.Node) {
	meta, err := decodeMeta(node.Meta)
	if err != nil {
		n.log.Warn("cluster member metadata unreadable", "member", node.Name, "err", err)
	}
	m := Member{
		Name:       node.Name,
		GossipAddr: net.JoinHostPort(node.Addr.String(), strconv.Itoa(int(node.Port))),
		Version:    meta.version,
		State:      StateAlive,
		Since:      time.Now(),
	}
	if meta.peerAddr != "" {
		m.PeerAddr = resolvePeerAddr(meta.peerAddr, node.Addr)
	}
	n.mu.Lock()
	old := n.members[m.Name]
	wasAlive := old != nil && old.State == StateAlive
	if wasAlive {
		m.Since = old.Since
	} else {
		delete(n.departing, m.Name) // back: a stale intent no longer applies
	}
	n.members[m.Name] = &m
	n.mu.Unlock()

	if !wasAlive {
		n.aliveCount.Add(1)
	}
	if m.Name != n.cfg.Name {
		n.interest.memberUp(m.Name)
		n.links.upsert(m.Name, m.PeerAddr)
	}
	if !wasAlive {
		n.log.Info("cluster member alive", "member", m.Name, "gossip_addr", m.GossipAddr, "version", m.Version)
	}
	n.events.push(m)
}

// memberGone records a failed or departed member and drops its interest
// and link at once. memberlist's node lock is held.
func (n *Node) memberGone(node *memberlist.Node) {
	// node.State is not maintained by memberlist (its own state lives
	// elsewhere), so a leave is known from the leave intent (kindLeave).
	state := StateDead
	now := time.Now()
	n.mu.Lock()
	if n.departing[node.Name] || (node.Name == n.cfg.Name && n.leaving) {
		state = StateLeft
	}
	delete(n.departing, node.Name)
	m := n.members[node.Name]
	if m == nil {
		m = &Member{Name: node.Name}
		n.members[node.Name] = m
	}
	wasAlive := m.State == StateAlive
	m.State, m.Since = state, now
	cp := *m
	n.mu.Unlock()

	if wasAlive {
		n.aliveCount.Add(-1)
	}
	if node.Name != n.cfg.Name {
		n.interest.memberDown(node.Name, now)
		n.links.remove(node.Name)
	}
	n.log.Info("cluster member "+state.String(), "member", node.Name)
	n.events.push(cp)
}

// markLeaving records a peer's leave intent.
func (n *Node) markLeaving(name string) {
	n.mu.Lock()
	n.departing[name] = true
	n.mu.Unlock()
}

// maintain re-joins seeds and failed members and forgets old ones. While
// the node is alone it retries with backoff from aloneRetryMin; otherwise
// every RejoinInterval, so a partition longer than memberlist's
// GossipToTheDeadTime (after which nobody gossips to the other side) heals
// anyway (G3, memberlist issue #222).
func (n *Node) maintain() {
	defer n.wg.Done()
	retry := aloneRetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-timer.C:
		}
		attempted := n.rejoin()
		n.reap(time.Now())
		next := n.cfg.RejoinInterval
		if attempted && n.aliveCount.Load() <= 1 {
			next = min(retry, next)
			retry = min(2*retry, n.cfg.RejoinInterval)
		} else {
			retry = aloneRetryMin
		}
		timer.Reset(next)
	}
}

// rejoin joins the seeds that are not alive members and one random failed
// member, as serf's reconnect does. It reports whether it tried anything.
func (n *Node) rejoin() bool {
	n.mu.Lock()
	ml := n.ml
	leaving := n.leaving || n.stopped
	aliveAddrs := make(map[string]bool, len(n.members))
	var failed []string
	for _, m := range n.members {
		switch m.State {
		case StateAlive:
			aliveAddrs[m.GossipAddr] = true
		case StateDead:
			failed = append(failed, m.GossipAddr)
		}
	}
	n.mu.Unlock()
	if ml == nil || leaving {
		return false
	}

	ctx, cancel := context.WithTimeout(n.ctx, handshakeTimeout)
	defer cancel()
	var targets []string
	for _, addr := range n.resolveSeeds(ctx, n.cfg.Seeds) {
		if !aliveAddrs[addr] {
			targets = append(targets, addr)
		}
	}
	if len(failed) > 0 {
		addr := failed[rand.N(len(failed))]
		if !slices.Contains(targets, addr) && !aliveAddrs[addr] {
			targets = append(targets, addr)
		}
	}
	if len(targets) == 0 {
		return false
	}
	count, err := ml.Join(targets)
	alone := n.aliveCount.Load() <= 1
	n.mu.Lock()
	warn := err != nil && alone && !n.joinWarned
	if warn {
		n.joinWarned = true
	}
	if !alone {
		n.joinWarned = false
	}
	n.mu.Unlock()
	switch {
	case warn:
		n.log.Warn("cluster seeds unreachable; running as a single node and retrying", "targets", len(targets), "err", err)
	case err != nil:
		n.log.Debug("cluster re-join failed", "targets", len(targets), "err", err)
	default:
		n.log.Debug("cluster re-joined", "contacted", count)
	}
	return true
}

// reap forgets members that failed or left more than ReapAfter ago, and
// interest tombstones as old.
func (n *Node) reap(now time.Time) {
	n.mu.Lock()
	for name, m := range n.members {
		if m.State != StateAlive && name != n.cfg.Name && now.Sub(m.Since) > n.cfg.ReapAfter {
			delete(n.members, name)
		}
	}
	n.mu.Unlock()
	n.interest.sweep(now, n.cfg.ReapAfter)
}

// resolveSeeds turns seeds into distinct ip:port gossip addresses,
// resolving names to every address they have (a headless service lists
// all its pods) and leaving out this node's own address.
func (n *Node) resolveSeeds(ctx context.Context, seeds []string) []string {
	own := n.self().GossipAddr
	defaultPort := strconv.Itoa(DefaultGossipPort)
	if _, port, err := net.SplitHostPort(own); err == nil {
		defaultPort = port
	}
	var out []string
	add := func(ip net.IP, port string) {
		addr := net.JoinHostPort(ip.String(), port)
		if addr != own && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	for _, seed := range seeds {
		host, port, err := net.SplitHostPort(seed)
		if err != nil { // no port
			host, port = strings.Trim(seed, "[]"), defaultPort
		}
		if ip := net.ParseIP(host); ip != nil {
			add(ip, port)
			continue
		}
		addrs, err := n.lookupIP(ctx, host)
		if err != nil {
			n.log.Debug("cluster seed did not resolve", "seed", seed, "err", err)
			continue
		}
		for _, a := range addrs {
			add(a.IP, port)
		}
	}
	return out
}

// Stats are the node's cluster counters.
type Stats struct {
	AliveMembers int
	// MalformedGossip counts gossip payloads (NotifyMsg, push/pull state)
	// rejected by validation (G10).
	MalformedGossip uint64
	// DroppedGossip counts gossip dropped because the apply queue was full.
	DroppedGossip uint64
	// LinkAuthFailures counts peer links refused in either direction.
	LinkAuthFailures uint64
	// SlowLinkCloses counts links closed because a write missed
	// LinkWriteTimeout (G11).
	SlowLinkCloses uint64
	Peers          []PeerStats
}

// PeerStats describes the link to one peer.
type PeerStats struct {
	Name        string
	Connected   bool
	Slow        bool // the queue overflowed or a write timed out, not yet drained
	QueuedBytes int
	Sent        uint64 // frames written
	Received    uint64 // messages received
	Dropped     uint64 // frames dropped: queue full, link failed mid-write, peer gone
}

// Stats returns the node's counters and the state of every peer link.
func (n *Node) Stats() Stats {
	s := Stats{
		AliveMembers:     int(n.aliveCount.Load()),
		MalformedGossip:  n.malformedGossip.Load(),
		DroppedGossip:    n.droppedGossip.Load(),
		LinkAuthFailures: n.links.authFailures.Load(),
		SlowLinkCloses:   n.links.slowCloses.Load(),
	}
	for _, p := range *n.links.peers.Load() {
		p.mu.Lock()
		ps := PeerStats{Name: p.name, Connected: p.conn != nil, QueuedBytes: len(p.pending)}
		p.mu.Unlock()
		ps.Slow = p.slow.Load()
		ps.Sent, ps.Received, ps.Dropped = p.sent.Load(), p.received.Load(), p.dropped.Load()
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(a, b PeerStats) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// Send queues m for the peer named peer and returns at once: ErrQueueFull
// if the peer's queue is full (the message is dropped and counted),
// ErrUnknownPeer if there is no such alive member. Messages to one peer
// arrive in the order they were sent, unless a link breaks in between.
//
// A message that arrived from a peer must not be sent on: delivery is one
// hop, and the caller is what guarantees it, by sending only messages
// published by its own clients.
func (n *Node) Send(peer string, m Message) error {
	return n.links.send(peer, &m)
}

// eventQueue delivers member changes to the OnMemberChange callback in
// order, off memberlist's locks. Membership changes are rare, so the
// queue is an unbounded slice rather than a channel that could drop one.
type eventQueue struct {
	fn     func(Member)
	mu     sync.Mutex
	items  []Member
	signal chan struct{}
}

func newEventQueue(fn func(Member)) *eventQueue {
	return &eventQueue{fn: fn, signal: make(chan struct{}, 1)}
}

// push is a no-op on a nil queue (no callback configured).
func (q *eventQueue) push(m Member) {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.signal:
		}
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		for _, m := range items {
			if ctx.Err() != nil {
				return
			}
			q.fn(m)
		}
	}
}
