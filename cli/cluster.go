package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// clusterOptions drive `pubsub cluster`: it talks to a running node's admin
// API (/api/cluster/*) over HTTP with a master key, as `serf members` talks
// to its agent.
type clusterOptions struct {
	client clientOptions
	json   bool
}

func newClusterCommand(streams Streams) *cobra.Command {
	var opts clusterOptions
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Ask a running node to join a cluster, list members, or leave",
		Long: `Manage a node's cluster membership through its HTTP admin API. The node must
run with cluster.listen set; the key must be a master key.`,
		Example: `  pubsub cluster members
  pubsub cluster join 10.0.0.2:7946 10.0.0.3:7946
  pubsub cluster leave --server node3:8080`,
	}
	opts.client.addFlags(cmd.PersistentFlags(), streams)
	cmd.PersistentFlags().BoolVar(&opts.json, "json", false, "print the node's JSON answer")

	cmd.AddCommand(&cobra.Command{
		Use:   "members",
		Short: "List the cluster's members as this node sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCluster(cmd.Context(), opts, streams, http.MethodGet, "members", nil)
		},
	}, &cobra.Command{
		Use:   "join SEED...",
		Short: "Ask the node to join the cluster through one or more seeds (host:port of their gossip address)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCluster(cmd.Context(), opts, streams, http.MethodPost, "join", map[string]any{"seeds": args})
		},
	}, &cobra.Command{
		Use:   "leave",
		Short: "Ask the node to leave the cluster gracefully",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCluster(cmd.Context(), opts, streams, http.MethodPost, "leave", nil)
		},
	})
	return cmd
}

// adminURL turns --server (host:port or an MQTT-ish URL) into the node's
// HTTP base URL: tls:// and wss:// mean https.
func adminURL(server string) (string, error) {
	if server == "" {
		return "", usageError("--server is empty")
	}
	if !strings.Contains(server, "://") {
		return "http://" + server, nil
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", usageError("--server %q: %v", server, err)
	}
	scheme := "http"
	switch u.Scheme {
	case "tls", "ssl", "mqtts", "wss", "https":
		scheme = "https"
	}
	return scheme + "://" + u.Host, nil
}

func runCluster(ctx context.Context, opts clusterOptions, streams Streams, method, op string, body any) error {
	base, err := adminURL(opts.client.server)
	if err != nil {
		return err
	}
	tlsCfg, err := opts.client.tlsConfig()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.client.timeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+"/api/cluster/"+op, rd)
	if err != nil {
		return err
	}
	if opts.client.key != "" {
		req.Header.Set("Authorization", "Bearer "+opts.client.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("cluster %s: %w", op, err)
	}
	var answer map[string]any
	_ = json.Unmarshal(raw, &answer)
	if resp.StatusCode != http.StatusOK {
		msg, _ := answer["error"].(string)
		if msg == "" {
			msg = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("cluster %s: %s (HTTP %d)", op, msg, resp.StatusCode)
	}
	if opts.json {
		_, err := streams.Out.Write(append(bytes.TrimSpace(raw), '\n'))
		return err
	}
	switch op {
	case "members":
		var m struct {
			Members []struct {
				Name, State, Gossip, Peer, Version string
				Self                               bool
			}
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("cluster members: bad answer: %w", err)
		}
		w := tabwriter.NewWriter(streams.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tSTATE\tGOSSIP\tPEER LINK\tVERSION")
		for _, mm := range m.Members {
			name := mm.Name
			if mm.Self {
				name += " (this node)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", name, mm.State, mm.Gossip, mm.Peer, mm.Version)
		}
		return w.Flush()
	case "join":
		fmt.Fprintf(streams.Out, "joined through %v seed(s)\n", answer["joined"])
	default:
		fmt.Fprintln(streams.Out, "left the cluster")
	}
	return nil
}
