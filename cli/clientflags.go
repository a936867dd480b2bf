package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/pubsub/pubsub/client"
)

// clientOptions are the connection flags shared by every client command
// (DESIGN §1): --server (PUBSUB_SERVER) and --key (PUBSUB_KEY).
type clientOptions struct {
	server   string
	key      string
	clientID string
	username string
	timeout  time.Duration
	caFile   string
	insecure bool
}

func (o *clientOptions) addFlags(fs *pflag.FlagSet, streams Streams) {
	server := streams.getenv("PUBSUB_SERVER")
	if server == "" {
		server = client.DefaultServer
	}
	fs.StringVarP(&o.server, "server", "s", server, "node address: host:port or tcp://, tls://, ws://, wss:// URL (env PUBSUB_SERVER)")
	fs.StringVarP(&o.key, "key", "k", streams.getenv("PUBSUB_KEY"), "channel key (env PUBSUB_KEY)")
	// The key from the environment is the flag's value, but help must not
	// print it: help text ends up in terminals, logs and bug reports.
	fs.Lookup("key").DefValue = ""
	fs.StringVar(&o.clientID, "id", "", "MQTT client id (default: assigned by the node)")
	fs.StringVarP(&o.username, "username", "u", "", "MQTT user name (the identity shown in presence)")
	fs.DurationVar(&o.timeout, "connect-timeout", 10*time.Second, "how long to wait for the node to accept the connection")
	fs.StringVar(&o.caFile, "ca", "", "PEM file of CAs to trust for tls:// and wss:// (default: the system's)")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the node's TLS certificate (testing only)")
}

// tlsConfig builds the client TLS settings from --ca and --insecure; nil
// means the defaults (system roots).
func (o *clientOptions) tlsConfig() (*tls.Config, error) {
	if o.caFile == "" && !o.insecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // explicit --insecure
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, usageError("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError("--ca %s: no PEM certificates in it", o.caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// options turns the flags into client options (TLS from --ca/--insecure).
func (o *clientOptions) options(persistent bool) (client.Options, error) {
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return client.Options{}, err
	}
	return client.Options{
		Server:         o.server,
		ClientID:       o.clientID,
		Username:       o.username,
		Key:            o.key,
		Persistent:     persistent,
		ConnectTimeout: o.timeout,
		TLSConfig:      tlsCfg,
	}, nil
}

func (o *clientOptions) dial(ctx context.Context, persistent bool) (*client.Client, error) {
	opts, err := o.options(persistent)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.server, err)
	}
	return c, nil
}

func parseQoS(q int) (byte, error) {
	if q < 0 || q > 2 {
		return 0, usageError("--qos %d: must be 0, 1 or 2", q)
	}
	return byte(q), nil
}
