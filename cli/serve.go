package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/pubsub/pubsub/broker"
)

type serveOptions struct {
	version     string // build version, reported in stats and cluster membership
	configPath  string
	printConfig bool
	// overrides holds the flags the user set, by config key; flags win over
	// file and environment (DESIGN §9).
	overrides map[string]string
}

// serveFlags maps flag names to config keys.
var serveFlags = []struct{ flag, key, usage string }{
	{"listen", "listen", "address for MQTT, WebSocket and HTTP (host:port)"},
	{"data-dir", "data_dir", "directory for everything the node keeps"},
	{"node-name", "node_name", "this node's name in the cluster (default: host name)"},
	{"log-level", "log_level", "debug, info, warn or error"},
	{"log-format", "log_format", "auto (text on a terminal, JSON otherwise), text or json"},
	{"cluster-listen", "cluster.listen", "gossip address (host:port) to cluster on; empty: single node (passphrase: PUBSUB_CLUSTER_PASSPHRASE)"},
	{"cluster-seed", "cluster.seed", "nodes to join, comma-separated host:port (a DNS name may stand for many)"},
	{"storage", "storage.provider", "message store: memory (lost on exit) or disk (DATA_DIR/store, survives restarts)"},
	{"storage-sync", "storage.sync", `disk store durability: "always" (fsync before each PUBACK) or an interval such as 100ms`},
	{"tls-listen", "tls.listen", "address for MQTT, WebSocket and HTTP over TLS (default :8443 once a certificate is set)"},
	{"tls-cert", "tls.cert_file", "TLS certificate (PEM, leaf first then chain); SIGHUP reloads it"},
	{"tls-key", "tls.key_file", "TLS private key (PEM); SIGHUP reloads it"},
	{"tls-host", "tls.host", "DNS names to get certificates for over ACME (Let's Encrypt), comma-separated"},
}

func newServeCommand(streams Streams, info BuildInfo) *cobra.Command {
	opts := serveOptions{overrides: map[string]string{}, version: info.Version}
	var noAuth bool
	flagValues := make([]string, len(serveFlags))
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker node",
		Long: `Run a broker node. MQTT 3.1.1 over TCP and WebSocket and the HTTP endpoints
share one port. Configuration: defaults < config file < PUBSUB_* environment
< flags; 'pubsub serve --print-config' shows the result.`,
		Example: `  pubsub serve
  pubsub serve --listen 127.0.0.1:1883 --log-level debug
  pubsub serve --storage disk --data-dir /var/lib/pubsub --storage-sync always
  PUBSUB_LIMITS_MAX_INFLIGHT=100 pubsub serve --config pubsub.yaml
  pubsub serve --print-config > pubsub.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for i, f := range serveFlags {
				if cmd.Flags().Changed(f.flag) {
					opts.overrides[f.key] = flagValues[i]
				}
			}
			if cmd.Flags().Changed("no-auth") {
				opts.overrides["no_auth"] = fmt.Sprint(noAuth)
			}
			return runServe(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	def := broker.DefaultConfig()
	defaults := map[string]string{"listen": def.Listen, "data_dir": def.DataDir, "log_level": def.LogLevel, "log_format": def.LogFormat,
		"storage.provider": def.Storage.Provider, "storage.sync": def.Storage.Sync}
	for i, f := range serveFlags {
		fs.StringVar(&flagValues[i], f.flag, defaults[f.key], f.usage)
	}
	fs.BoolVar(&noAuth, "no-auth", false, "accept every client without a key (development only)")
	fs.StringVarP(&opts.configPath, "config", "c", "", "config file (YAML or JSON; default ./pubsub.yaml if present)")
	fs.BoolVar(&opts.printConfig, "print-config", false, "print the effective configuration as YAML and exit")
	return cmd
}

// loadConfig applies the four layers and validates, before any port is bound.
func loadConfig(opts serveOptions, streams Streams) (broker.Config, error) {
	cfg := broker.DefaultConfig()
	path := opts.configPath
	if path == "" {
		path = streams.getenv("PUBSUB_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("pubsub.yaml"); err == nil {
			path = "pubsub.yaml"
		}
	}
	if path != "" {
		if err := broker.LoadConfigFile(&cfg, path); err != nil {
			return cfg, err
		}
	}
	lookup := streams.Env
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	if err := broker.ApplyEnv(&cfg, lookup); err != nil {
		return cfg, err
	}
	for key, val := range opts.overrides {
		if err := broker.SetConfigValue(&cfg, key, val); err != nil {
			var ce *broker.ConfigError
			if errors.As(err, &ce) {
				ce.Source = "flag"
			}
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

func runServe(ctx context.Context, opts serveOptions, streams Streams) error {
	cfg, err := loadConfig(opts, streams)
	cfg.Version = opts.version
	if err != nil {
		// A bad configuration is the caller's to fix, like a bad flag.
		return &exitError{code: ExitUsage, err: err}
	}
	if opts.printConfig {
		printable := cfg
		redact := func(v *string) {
			if *v != "" {
				*v = "<redacted>"
			}
		}
		redact(&printable.Secret)
		redact(&printable.Keys.EventhubSecret)
		redact(&printable.TLS.KeyPEM)
		printable.Keys.Secrets = append([]string(nil), cfg.Keys.Secrets...)
		for i := range printable.Keys.Secrets {
			redact(&printable.Keys.Secrets[i])
		}
		enc := yaml.NewEncoder(streams.Out)
		enc.SetIndent(2)
		defer enc.Close()
		return enc.Encode(printable)
	}
	logger := newLogger(streams.ErrOut, cfg.LogLevel, cfg.LogFormat)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	srv, err := broker.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	if key, err := srv.FreshMasterKey(); err != nil {
		return err
	} else if key != "" {
		// Printed once, to the terminal, never logged: the operator needs
		// a first key to mint others with.
		fmt.Fprintf(streams.ErrOut, "\nNew secret created in %s.\nMaster key (shown once, keep it safe; mint narrower keys with 'pubsub keygen'):\n\n  %s\n\nTry:\n  PUBSUB_KEY=%s pubsub sub 'chat/#'\n\n", cfg.DataDir, key, key)
	}
	if cfg.NoAuth {
		logger.Warn("AUTHENTICATION IS OFF: every client may publish and subscribe to everything (--no-auth); never run this on a reachable network")
	}
	fmt.Fprintf(streams.ErrOut, "pubsub node %s listening on %s (MQTT, WebSocket, HTTP)\n", srv.NodeName(), srv.Addr())
	if cfg.NoAuth {
		fmt.Fprintf(streams.ErrOut, "  try: pubsub sub -s %s '#'   and   pubsub pub -s %s hello world\n", srv.Addr(), srv.Addr())
	}
	if addr := srv.TLSAddr(); addr != nil {
		fmt.Fprintf(streams.ErrOut, "  tls on %s (mqtts, wss, https): pubsub sub --server tls://HOST:%s '#'\n", addr, portOf(addr.String()))
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the TLS certificate, as certbot and cert-manager
	// deploy hooks expect. A broken pair keeps the old one in service; the
	// node logs why (I8).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if srv.TLSAddr() == nil {
				logger.Info("SIGHUP: nothing to reload (TLS is off)")
				continue
			}
			_ = srv.ReloadTLS() // logs success or failure itself
		case <-ctx.Done():
			logger.Info("shutting down")
			return srv.Close()
		}
	}
}

// portOf is the port of a host:port address, or the address itself.
func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return port
	}
	return addr
}

// newLogger logs text on a terminal and JSON otherwise (DESIGN §10).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	hopts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
