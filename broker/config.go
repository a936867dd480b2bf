package broker

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pubsub/pubsub/broker/topic"
)

// Config is everything a node reads at start. Precedence (DESIGN §9):
// defaults < config file < environment (PUBSUB_ + yaml path in upper case,
// plus Eventhub's historical names) < flags. Every field has a yaml tag; the
// tag path is the key named in error messages and in docs/configuration.md.
type Config struct {
	Listen    string `yaml:"listen"`
	DataDir   string `yaml:"data_dir"`
	NodeName  string `yaml:"node_name"`
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	NoAuth    bool   `yaml:"no_auth"`
	// Debug serves Go's profiler on /debug/pprof/ (off by default).
	Debug  bool   `yaml:"debug"`
	Secret string `yaml:"secret"`

	Keys    KeysConfig    `yaml:"keys"`
	Limits  LimitsConfig  `yaml:"limits"`
	Stats   StatsConfig   `yaml:"stats"`
	Storage StorageConfig `yaml:"storage"`
	TLS     TLSConfig     `yaml:"tls"`
	JSONRPC JSONRPCConfig `yaml:"jsonrpc"`
	Cluster ClusterConfig `yaml:"cluster"`

	// Version is the build version, reported in stats; not configurable.
	Version string `yaml:"-"`
}

// TLSConfig serves MQTT, WebSocket and HTTP over TLS on a second port, with
// the same one-port sniffing as the plain listener (docs/tls.md). TLS is on
// when a certificate (files or PEM) or an ACME host is configured.
type TLSConfig struct {
	// Listen is the TLS address; empty means ":8443" once TLS is on.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are PEM files (the certificate file may carry
	// the chain after the leaf). SIGHUP re-reads them (Server.ReloadTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CertPEM and KeyPEM hold the PEM text itself, for platforms that hand
	// secrets over as environment variables (PUBSUB_TLS_CERT_PEM,
	// PUBSUB_TLS_KEY_PEM). A value written on one line with literal "\n"
	// separators is accepted too.
	CertPEM string `yaml:"cert_pem"`
	KeyPEM  string `yaml:"key_pem"`
	// Host lists the DNS names to obtain certificates for over ACME (Let's
	// Encrypt) with golang.org/x/crypto/acme/autocert. The CA must reach
	// this node on port 443 (tls.listen) or port 80 (listen).
	Host StringList `yaml:"host"`
	// ACMECache keeps the ACME account key and certificates across
	// restarts (created 0700); empty means DATA_DIR/acme.
	ACMECache string `yaml:"acme_cache"`
	// ACMEEmail is given to the CA for expiry and problem notices; optional.
	ACMEEmail string `yaml:"acme_email"`
}

// ClusterConfig joins the node to a cluster (DESIGN §7,
// docs/clustering.md). Clustering is off while Listen is empty.
type ClusterConfig struct {
	// Listen is the gossip address, host:port (UDP and TCP), e.g. ":7946".
	Listen string `yaml:"listen"`
	// Advertise is the gossip address other nodes use, when it differs.
	Advertise string `yaml:"advertise"`
	// PeerListen is where peer links (the messages themselves) listen;
	// default the gossip host with port 7947.
	PeerListen string `yaml:"peer_listen"`
	// Seed lists nodes to join, host:port; a DNS name stands for every
	// address it resolves to (a Kubernetes headless service). Re-joined
	// every rejoin_interval so partitions heal.
	Seed StringList `yaml:"seed"`
	// Passphrase encrypts gossip and authenticates peer links; every node
	// needs the same one.
	Passphrase string `yaml:"passphrase"`
	// Label keeps clusters sharing a network apart.
	Label string `yaml:"label"`
	// RejoinInterval between re-joins of the seeds (default 30s).
	RejoinInterval Duration `yaml:"rejoin_interval"`
}

// StorageConfig controls message history (DESIGN §6, docs/storage.md).
type StorageConfig struct {
	// Provider is "memory" (default, bounded by max_bytes) or "disk"
	// (data_dir/store, survives restarts).
	Provider string `yaml:"provider"`
	// Sync is "always" (fsync before a QoS 1 PUBACK) or an interval: a crash
	// loses at most that much of the latest writes.
	Sync string `yaml:"sync"`
	// MaxBytes bounds stored history; the oldest is evicted first. 0 = the
	// provider's default (256 MiB in memory, unbounded on disk).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxPerTopic caps messages kept per topic; 0 = no cap.
	MaxPerTopic int `yaml:"max_per_topic"`
	// MaxTTL caps how long any message is kept; 0 = no cap.
	MaxTTL Duration `yaml:"max_ttl"`
	// DefaultTTL is how long JSON-RPC publishes and storage.record topics
	// are kept (Eventhub's default_cache_ttl, 60 s).
	DefaultTTL Duration `yaml:"default_ttl"`
	// Record lists filters whose messages are always stored.
	Record []string `yaml:"record"`
	// MaxRequestLimit caps one history request (Eventhub's
	// max_cache_request_limit).
	MaxRequestLimit int `yaml:"max_request_limit"`
}

// JSONRPCConfig tunes the Eventhub-compatible endpoints: JSON-RPC over
// WebSocket and Server-Sent Events (docs/eventhub.md). Each field is one of
// Eventhub's settings, read from its environment name too.
type JSONRPCConfig struct {
	// PingInterval is how often idle JSON-RPC WebSockets get a ping frame
	// and SSE streams a comment line, so proxies keep them open
	// (Eventhub's ping_interval, 30 s). 0 turns keepalives off.
	PingInterval Duration `yaml:"ping_interval"`
	// HandshakeTimeout bounds reading an HTTP request head, WebSocket
	// upgrades included (Eventhub's handshake_timeout, 5 s; C10).
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// EnableSSE serves `Accept: text/event-stream` requests (Eventhub's
	// enable_sse; on by default here).
	EnableSSE bool `yaml:"enable_sse"`
	// EnableKVStore serves the get, set and del methods (enable_kvstore).
	EnableKVStore bool `yaml:"enable_kvstore"`
	// EnableCache keeps JSON-RPC publishes for storage.default_ttl and
	// answers history (subscribe since, eventlog, SSE replay). Eventhub's
	// enable_cache; on by default here.
	EnableCache bool `yaml:"enable_cache"`
	// RequestRate bounds the requests one JSON-RPC connection may make per
	// second, with bursts of twice that (D8); requests past it get a
	// -32000 error. 0 = no limit.
	RequestRate int `yaml:"request_rate"`
}

// StatsConfig controls the node's figures (DESIGN §8).
type StatsConfig struct {
	// Interval between snapshots on $SYS/stats/<node> and to StatsD.
	Interval Duration     `yaml:"interval"`
	StatsD   StatsDConfig `yaml:"statsd"`
}

// StatsDConfig sends the figures to a StatsD server when Address is set.
type StatsDConfig struct {
	Address    string   `yaml:"address"`     // host:port (UDP)
	Prefix     string   `yaml:"prefix"`      // default "pubsub"
	TagsFormat string   `yaml:"tags_format"` // "", "datadog" or "influxdb"
	Tags       []string `yaml:"tags"`        // "key=value" pairs
}

// KeysConfig tunes channel-key verification (DESIGN §5, docs/keys.md).
type KeysConfig struct {
	// RequireExp refuses keys without an expiry.
	RequireExp bool `yaml:"require_exp"`
	// Secrets are older secrets still accepted for verification while keys
	// signed with them are re-issued (rotation without downtime).
	Secrets []string `yaml:"secrets"`
	// EventhubSecret is Eventhub's JWT_SECRET, used when `secret` is unset.
	// It may be shorter than 32 bytes, for migration only (a warning says
	// how to rotate).
	EventhubSecret string `yaml:"eventhub_secret"`
}

// LimitsConfig bounds what one client can make the node hold. Each limit is
// there because an unbounded version broke a trusted broker
// (reliability-cases.md groups A, B and H).
type LimitsConfig struct {
	// MaxConnections refuses CONNECT with return code 3 beyond this many
	// clients (H5). 0 means no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxPacketSize caps the MQTT remaining length and WebSocket messages;
	// a larger packet closes the connection before its body is read (A3).
	MaxPacketSize ByteSize `yaml:"max_packet_size"`
	// ConnectTimeout closes sockets that have not completed CONNECT (H4).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxKeepalive clamps the client's keepalive (B8); 0 keeps the client's.
	MaxKeepalive Duration `yaml:"max_keepalive"`
	// MaxInflight is the number of unacknowledged QoS 1/2 messages the node
	// sends one client before it queues the rest (B10).
	MaxInflight int `yaml:"max_inflight"`
	// MaxQueued bounds the messages kept for one session while it cannot be
	// sent to (offline, or inflight window full); beyond it the oldest is
	// dropped and counted (H6).
	MaxQueued int `yaml:"max_queued"`
	// MaxPendingBytes is the outbound bytes a connection may have waiting
	// for its socket; crossing it closes the client as a slow consumer (H1).
	MaxPendingBytes ByteSize `yaml:"max_pending_bytes"`
	// WriteTimeout is the longest one socket write may block; crossing it
	// closes the client as a slow consumer (H1).
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxSubscriptions per client; more get SUBACK 0x80 (H7). 0 = no limit.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxRetained topics on the node; new retained topics beyond it are
	// refused (logged), overwrites still work (H8). 0 = no limit.
	MaxRetained int `yaml:"max_retained"`
}

// DefaultConfig returns the configuration of `pubsub serve` with no flags.
func DefaultConfig() Config {
	return Config{
		Listen:    ":8080",
		DataDir:   "./pubsub-data",
		LogLevel:  "info",
		LogFormat: "auto",
		Limits: LimitsConfig{
			MaxPacketSize:    1 << 20,
			ConnectTimeout:   Duration(10 * time.Second),
			MaxInflight:      32,
			MaxQueued:        1000,
			MaxPendingBytes:  8 << 20,
			WriteTimeout:     Duration(5 * time.Second),
			MaxSubscriptions: 10000,
			MaxRetained:      1_000_000,
		},
		Stats: StatsConfig{Interval: Duration(time.Second)},
		Storage: StorageConfig{
			Provider:        "memory",
			Sync:            "100ms",
			DefaultTTL:      Duration(60 * time.Second),
			MaxRequestLimit: 100,
		},
		JSONRPC: JSONRPCConfig{
			PingInterval:     Duration(30 * time.Second),
			HandshakeTimeout: Duration(5 * time.Second),
			EnableSSE:        true,
			EnableKVStore:    true,
			EnableCache:      true,
			RequestRate:      1000,
		},
	}
}

// ConfigError names the key that made a configuration invalid.
type ConfigError struct {
	Key    string
	Source string // "file:line", "env NAME", "flag", or ""
	Err    error
}

func (e *ConfigError) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("config %s (%s): %v", e.Key, e.Source, e.Err)
	}
	return fmt.Sprintf("config %s: %v", e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfigFile merges a YAML (or JSON, a YAML subset) file into c. Unknown
// keys and wrong types stop the start with the key and line (I1). CRLF line
// endings and a UTF-8 BOM are accepted (I7).
func LoadConfigFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// eventhubEnv maps Eventhub's environment names (read in either case) to our
// keys, so an Eventhub deployment's environment keeps working.
var eventhubEnv = map[string]string{
	"LISTEN_PORT":             "listen",
	"JWT_SECRET":              "keys.eventhub_secret",
	"DISABLE_AUTH":            "no_auth",
	"PING_INTERVAL":           "jsonrpc.ping_interval",     // seconds
	"HANDSHAKE_TIMEOUT":       "jsonrpc.handshake_timeout", // seconds
	"MAX_CACHE_REQUEST_LIMIT": "storage.max_request_limit",
	"DEFAULT_CACHE_TTL":       "storage.default_ttl", // seconds
	"ENABLE_SSE":              "jsonrpc.enable_sse",
	"ENABLE_KVSTORE":          "jsonrpc.enable_kvstore",
	"ENABLE_CACHE":            "jsonrpc.enable_cache",
}

// ApplyEnv overlays environment variables: PUBSUB_<PATH> for every key
// (PUBSUB_LIMITS_MAX_INFLIGHT), then Eventhub's names where PUBSUB_ is unset.
func ApplyEnv(c *Config, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	err := walkConfig(reflect.ValueOf(c).Elem(), "", func(key string, v reflect.Value) error {
		name := "PUBSUB_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		val, ok := lookup(name)
		if !ok {
			return nil
		}
		set[key] = true
		if err := setFromString(v, val); err != nil {
			return &ConfigError{Key: key, Source: "env " + name, Err: err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for name, key := range eventhubEnv {
		if set[key] {
			continue
		}
		val, ok := lookup(name)
		if !ok {
			val, ok = lookup(strings.ToLower(name))
		}
		if !ok {
			continue
		}
		if key == "listen" {
			// Eventhub's LISTEN_PORT is a bare port number.
			if _, err := strconv.Atoi(val); err == nil {
				val = ":" + val
			}
		}
		if err := SetConfigValue(c, key, val); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Source = "env " + name
			}
			return err
		}
	}
	return nil
}

// SetConfigValue sets one key, by its dotted yaml path, from a string (used
// for flags and environment).
func SetConfigValue(c *Config, key, val string) error {
	found := false
	err := walkConfig(reflect.ValueOf(c).Elem(), "", func(k string, v reflect.Value) error {
		if k != key {
			return nil
		}
		found = true
		if err := setFromString(v, val); err != nil {
			return &ConfigError{Key: key, Err: err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return &ConfigError{Key: key, Err: errors.New("unknown key")}
	}
	return nil
}

// ConfigKeys lists every dotted key, for docs and completion.
func ConfigKeys() []string {
	var keys []string
	c := DefaultConfig()
	_ = walkConfig(reflect.ValueOf(&c).Elem(), "", func(k string, _ reflect.Value) error {
		keys = append(keys, k)
		return nil
	})
	return keys
}

func walkConfig(v reflect.Value, prefix string, fn func(key string, v reflect.Value) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(Duration(0)) {
			if err := walkConfig(fv, key, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(key, fv); err != nil {
			return err
		}
	}
	return nil
}

func setFromString(v reflect.Value, s string) error {
	switch v.Addr().Interface().(type) {
	case *Duration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case *ByteSize:
		n, err := parseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(n)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		v.SetInt(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", v.Type())
		}
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Validate checks values that parse but make no sense, naming the key (I1).
// It runs before any port is bound.
func (c *Config) Validate() error {
	bad := func(key string, format string, args ...any) error {
		return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen", "want host:port or :port, got %q", c.Listen)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		return bad("log_format", "want auto, text or json, got %q", c.LogFormat)
	}
	switch c.Storage.Provider {
	case "memory", "disk":
	default:
		return bad("storage.provider", "want memory or disk, got %q", c.Storage.Provider)
	}
	if _, err := parseSync(c.Storage.Sync); err != nil {
		return bad("storage.sync", "%v", err)
	}
	if c.Storage.MaxBytes < 0 || c.Storage.MaxPerTopic < 0 || c.Storage.MaxTTL < 0 {
		return bad("storage", "max_bytes, max_per_topic and max_ttl must be >= 0")
	}
	if c.Storage.DefaultTTL < 0 {
		return bad("storage.default_ttl", "must be >= 0, got %s", c.Storage.DefaultTTL)
	}
	if c.Storage.MaxRequestLimit < 1 {
		return bad("storage.max_request_limit", "must be >= 1, got %d", c.Storage.MaxRequestLimit)
	}
	for i, f := range c.Storage.Record {
		if err := topic.ValidateFilter(f); err != nil {
			return bad(fmt.Sprintf("storage.record[%d]", i), "%v", err)
		}
	}
	if c.JSONRPC.PingInterval < 0 {
		return bad("jsonrpc.ping_interval", "must be >= 0 (0 = no keepalive), got %s", c.JSONRPC.PingInterval)
	}
	if c.JSONRPC.RequestRate < 0 {
		return bad("jsonrpc.request_rate", "must be >= 0 (0 = no limit), got %d", c.JSONRPC.RequestRate)
	}
	if c.JSONRPC.HandshakeTimeout <= 0 {
		return bad("jsonrpc.handshake_timeout", "must be > 0, got %s", c.JSONRPC.HandshakeTimeout)
	}
	if c.Stats.Interval < Duration(100*time.Millisecond) {
		return bad("stats.interval", "must be at least 100ms, got %s", c.Stats.Interval)
	}
	if c.Stats.StatsD.Address != "" {
		if err := c.Stats.StatsD.sinkConfig().Validate(); err != nil {
			return bad("stats.statsd", "%v", err)
		}
	}
	l := c.Limits
	if l.MaxConnections < 0 {
		return bad("limits.max_connections", "must be >= 0 (0 = no limit), got %d", l.MaxConnections)
	}
	if l.MaxPacketSize < 64 || l.MaxPacketSize > 268435455 {
		return bad("limits.max_packet_size", "must be between 64 B and 256 MiB (the MQTT maximum), got %d", l.MaxPacketSize)
	}
	if l.ConnectTimeout <= 0 {
		return bad("limits.connect_timeout", "must be > 0, got %s", l.ConnectTimeout)
	}
	if l.MaxKeepalive < 0 {
		return bad("limits.max_keepalive", "must be >= 0, got %s", l.MaxKeepalive)
	}
	if l.MaxInflight < 1 || l.MaxInflight > 65535 {
		return bad("limits.max_inflight", "must be between 1 and 65535, got %d", l.MaxInflight)
	}
	if l.MaxQueued < 1 {
		return bad("limits.max_queued", "must be >= 1 (messages kept per offline session), got %d", l.MaxQueued)
	}
	if l.MaxPendingBytes < 4096 {
		return bad("limits.max_pending_bytes", "must be >= 4 KiB, got %d", l.MaxPendingBytes)
	}
	if l.WriteTimeout <= 0 {
		return bad("limits.write_timeout", "must be > 0, got %s", l.WriteTimeout)
	}
	if l.MaxSubscriptions < 0 {
		return bad("limits.max_subscriptions", "must be >= 0 (0 = no limit), got %d", l.MaxSubscriptions)
	}
	if l.MaxRetained < 0 {
		return bad("limits.max_retained", "must be >= 0 (0 = no limit), got %d", l.MaxRetained)
	}
	// Certificates are read and matched here, so a broken pair stops the
	// start before any port is bound (I3).
	return c.TLS.validate(c.Listen)
}

// Duration is a time.Duration written as "10s" in YAML and printed the same way.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML prints "10s" rather than nanoseconds.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML accepts "10s" or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Duration(time.Duration(n) * time.Second), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 10s or 5m, got %q", s)
	}
	return Duration(d), nil
}

// StringList is a list of strings written as a YAML sequence, a single
// scalar, or comma-separated text ("a.example.com,b.example.com"), which is
// also how the environment and flags spell it.
type StringList []string

// UnmarshalYAML accepts a sequence or a (comma-separated) scalar.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var parts []string
		for _, p := range strings.Split(n.Value, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		*l = parts
		return nil
	}
	var items []string
	if err := n.Decode(&items); err != nil {
		return err
	}
	*l = items
	return nil
}

// ByteSize is a size in bytes written as "1MiB", "512KiB" or a plain number.
type ByteSize int64

// MarshalYAML prints the size in the largest exact binary unit.
func (b ByteSize) MarshalYAML() (any, error) {
	if str := b.String(); str[len(str)-1] == 'B' {
		return str, nil
	}
	return int64(b), nil // a plain number, not the string "0"
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML accepts "1MiB", "1MB" (taken as MiB), "1024".
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(s)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			mult = u.size
			s = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as 1048576, 512KiB or 1MiB, got %q", s)
	}
	return n * mult, nil
}
