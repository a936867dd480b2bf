package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Defaults, applied by New to zero fields of Config.
const (
	DefaultGossipPort = 7946
	DefaultPeerPort   = 7947

	// DefaultRejoinInterval is how often a node re-joins its seeds (and one
	// failed member) so that a partition outlasting memberlist's
	// GossipToTheDeadTime still heals (reliability case G3; serf does the
	// same every 30 s).
	DefaultRejoinInterval = 30 * time.Second

	// DefaultLinkQueueBytes bounds the bytes queued for one peer. A writer
	// holds at most one more batch of this size while it writes, so a peer
	// costs at most twice this much however slow it is (G11).
	DefaultLinkQueueBytes = 32 << 20

	// DefaultMaxFrameBytes is the largest frame (message, query, reply) a
	// link carries; above the broker's largest packet (256 MiB is the MQTT
	// maximum, the broker's default is 1 MiB) messages cannot cross.
	DefaultMaxFrameBytes = 16 << 20

	// DefaultLinkWriteTimeout is how long one batched write to a peer may
	// take before the link is closed as slow and reconnected.
	DefaultLinkWriteTimeout = 10 * time.Second

	// DefaultQueryTimeout bounds Query when its context has no deadline.
	DefaultQueryTimeout = 5 * time.Second

	// DefaultLinkSuspectAfter is how long an alive member's peer link may be
	// down before Members reports the member as suspect.
	DefaultLinkSuspectAfter = 5 * time.Second

	// DefaultReapAfter is how long a dead or departed member stays listed
	// (and a dead one stays a re-join target) before it is forgotten.
	DefaultReapAfter = time.Hour

	// DefaultMaxConcurrentQueries bounds the query handlers running at once;
	// further queries are answered "busy" at once.
	DefaultMaxConcurrentQueries = 64
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("cluster: invalid config")

// Config configures a Node. Only Name is required.
type Config struct {
	// Name identifies the node; it must be unique in the cluster and stable
	// across restarts (a restarted node with the same name replaces its
	// former self). At most 255 bytes of UTF-8.
	Name string

	// BindAddr is the gossip address, "ip:port", used for both UDP and TCP;
	// default "0.0.0.0:7946". Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use, when it differs
	// from BindAddr (NAT, containers). Port 0 means the bound port.
	AdvertiseAddr string

	// PeerAddr is where the peer link listens, "host:port"; default the
	// BindAddr host with port 7947. Port 0 picks a free port. It travels in
	// the node's metadata; an unspecified host (0.0.0.0, ::, empty) is
	// advertised as "the IP this node gossips from".
	PeerAddr string
	// PeerAdvertiseAddr overrides the advertised peer-link address.
	PeerAdvertiseAddr string

	// Seeds are gossip addresses joined at start and re-joined every
	// RejoinInterval, "host[:port]" (default port: this node's gossip
	// port). A DNS name stands for every address it resolves to, such as
	// the pods behind a Kubernetes headless service; this node's own
	// address is skipped, so every node can share one seed list.
	Seeds []string

	// SecretKey enables gossip encryption (AES-GCM, memberlist's keyring)
	// and authenticates peer links. It must be 16, 24 or 32 bytes
	// (AES-128/192/256), or empty to run an open cluster (I5).
	SecretKey []byte

	// Label is a cluster name stamped on every gossip packet and stream and
	// bound into the peer-link handshake; nodes with different labels
	// ignore each other (G6). At most 255 bytes.
	Label string

	// Version is the release the node runs, shown in Members.
	Version string

	// Logger receives the node's logs and memberlist's; nil discards them.
	Logger *slog.Logger

	// OnMessage receives every message that arrives over a peer link, on
	// the link's reading goroutine, in the order the peer sent them. It must
	// not block for long: the link does not read while it runs. Message
	// fields alias the read buffer (see Message). A message that arrived
	// from a peer must never be sent to another peer again: delivery is one
	// hop, and the caller is what enforces it.
	OnMessage func(from string, m Message)

	// OnMemberChange receives a member whenever it joins, updates its
	// metadata, fails or leaves, one at a time and in order, on a goroutine
	// of its own.
	OnMemberChange func(Member)

	// RejoinInterval is the period of re-joining seeds and failed members;
	// default DefaultRejoinInterval. While the node is alone it retries
	// sooner, backing off from half a second up to this interval (I6).
	RejoinInterval time.Duration

	// LinkQueueBytes bounds the bytes queued per peer; default
	// DefaultLinkQueueBytes. A message that does not fit is dropped and
	// counted, and the peer is flagged slow.
	LinkQueueBytes int
	// MaxFrameBytes is the largest frame a link sends or accepts; default
	// DefaultMaxFrameBytes, at most LinkQueueBytes.
	MaxFrameBytes int
	// LinkWriteTimeout is the deadline of one batched write; default
	// DefaultLinkWriteTimeout.
	LinkWriteTimeout time.Duration
	// LinkSuspectAfter; default DefaultLinkSuspectAfter.
	LinkSuspectAfter time.Duration

	// QueryTimeout bounds a Query whose context has no deadline; default
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxConcurrentQueries; default DefaultMaxConcurrentQueries.
	MaxConcurrentQueries int

	// ReapAfter; default DefaultReapAfter.
	ReapAfter time.Duration

	// InterestCacheSize is the number of concrete topics whose interested
	// nodes are cached; 0 means topic.DefaultCacheSize.
	InterestCacheSize int

	// TuneMemberlist, when set, adjusts memberlist's configuration, which
	// starts from memberlist.DefaultLANConfig. Tests shrink the timers
	// (ProbeInterval, GossipInterval, PushPullInterval, ...). The node sets
	// the name, addresses, keys, label, delegates, transport and logger
	// afterwards, so the hook cannot change those.
	TuneMemberlist func(*memberlist.Config)

	// WrapTransport, when set, wraps the gossip transport; tests use it to
	// drop packets between nodes and simulate partitions.
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// withDefaults validates c and returns a copy with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.Name == "" || len(c.Name) > maxNameLen || !utf8.ValidString(c.Name) {
		return bad("name must be 1 to %d bytes of UTF-8", maxNameLen)
	}
	if len(c.SecretKey) > 0 {
		if err := memberlist.ValidateKey(c.SecretKey); err != nil {
			return bad("secret key must be 16, 24 or 32 bytes, got %d", len(c.SecretKey))
		}
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return bad("label longer than %d bytes", memberlist.LabelMaxSize)
	}
	if len(c.Version) > maxVersionLen {
		return bad("version longer than %d bytes", maxVersionLen)
	}

	if c.BindAddr == "" {
		c.BindAddr = net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultGossipPort))
	}
	bindHost, _, err := splitIPPort(c.BindAddr, false)
	if err != nil {
		return bad("bind address %q: %v", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitIPPort(c.AdvertiseAddr, false); err != nil {
			return bad("advertise address %q: %v", c.AdvertiseAddr, err)
		}
	}
	if c.PeerAddr == "" {
		c.PeerAddr = net.JoinHostPort(bindHost.String(), strconv.Itoa(DefaultPeerPort))
	}
	if _, _, err := net.SplitHostPort(c.PeerAddr); err != nil {
		return bad("peer address %q: %v", c.PeerAddr, err)
	}
	if c.PeerAdvertiseAddr != "" {
		if _, port, err := net.SplitHostPort(c.PeerAdvertiseAddr); err != nil || !validPort(port) {
			return bad("peer advertise address %q must be host:port with a port", c.PeerAdvertiseAddr)
		}
	}
	for _, s := range c.Seeds {
		if s == "" {
			return bad("empty seed")
		}
	}

	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"rejoin interval", &c.RejoinInterval, DefaultRejoinInterval},
		{"link write timeout", &c.LinkWriteTimeout, DefaultLinkWriteTimeout},
		{"link suspect after", &c.LinkSuspectAfter, DefaultLinkSuspectAfter},
		{"query timeout", &c.QueryTimeout, DefaultQueryTimeout},
		{"reap after", &c.ReapAfter, DefaultReapAfter},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return bad("%s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"link queue bytes", &c.LinkQueueBytes, DefaultLinkQueueBytes},
		{"max concurrent queries", &c.MaxConcurrentQueries, DefaultMaxConcurrentQueries},
	}
	for _, i := range ints {
		if *i.v < 0 {
			return bad("%s must not be negative", i.name)
		}
		if *i.v == 0 {
			*i.v = i.def
		}
	}
	if c.MaxFrameBytes < 0 {
		return bad("max frame bytes must not be negative")
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = min(DefaultMaxFrameBytes, c.LinkQueueBytes)
	}
	if c.MaxFrameBytes < minFrameBytes {
		return bad("max frame bytes must be at least %d", minFrameBytes)
	}
	if c.MaxFrameBytes > c.LinkQueueBytes {
		return bad("max frame bytes (%d) must not exceed link queue bytes (%d)", c.MaxFrameBytes, c.LinkQueueBytes)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// minFrameBytes keeps room for queries, replies and interest transfers.
const minFrameBytes = 4 << 10

// splitIPPort splits "ip:port". memberlist binds IP literals only, so host
// names are refused here rather than failing later at bind time.
func splitIPPort(addr string, needPort bool) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("host %q is not an IP address", host)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port %q", portStr)
	}
	if needPort && port == 0 {
		return nil, 0, errors.New("port 0")
	}
	return ip, int(port), nil
}
