package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/client"
)

type subOptions struct {
	client     clientOptions
	filters    []string
	qos        int
	format     string
	raw, json  bool
	count      int
	timeout    time.Duration
	persistent bool
}

func newSubCommand(streams Streams) *cobra.Command {
	var opts subOptions
	cmd := &cobra.Command{
		Use:   "sub FILTER...",
		Short: "Subscribe and print messages",
		Long: `Subscribe to one or more topic filters ('+' matches one level, '#' the rest)
and print each message: "topic payload" per line by default, the payload
alone with --raw, or one JSON object per line with --json.

Exit codes: 0 ok (also on Ctrl-C), 1 error, 2 usage, 3 --timeout passed
before any message arrived.`,
		Example: `  pubsub sub 'chat/#'
  pubsub sub --json 'sensors/+/temperature' | jq .payload
  pubsub sub -C 1 -W 5s status/node1      # wait up to 5s for one message
  mosquitto_sub -h localhost -p 8080 -t 'chat/#'   # any MQTT client works too`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.filters = args
			return runSub(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	opts.client.addFlags(fs, streams)
	fs.IntVarP(&opts.qos, "qos", "q", 0, "maximum quality of service: 0, 1 or 2")
	fs.StringVar(&opts.format, "format", "line", "output: line (topic payload), raw (payload) or json (NDJSON)")
	fs.BoolVar(&opts.raw, "raw", false, "print the payload only (same as --format raw)")
	fs.BoolVar(&opts.json, "json", false, "print NDJSON: topic, payload, qos, retain, time (same as --format json)")
	fs.IntVarP(&opts.count, "count", "C", 0, "exit after this many messages (0: run until interrupted)")
	fs.DurationVarP(&opts.timeout, "timeout", "W", 0, "exit after this long; exit code 3 if nothing arrived")
	fs.BoolVar(&opts.persistent, "persistent", false, "keep the session (and queue QoS 1/2 messages) while away; needs --id")
	return cmd
}

// subRecord is one line of --json output.
type subRecord struct {
	Topic         string    `json:"topic"`
	Payload       string    `json:"payload,omitempty"`
	PayloadBase64 string    `json:"payload_base64,omitempty"`
	QoS           byte      `json:"qos"`
	Retain        bool      `json:"retain"`
	Time          time.Time `json:"time"`
}

func runSub(ctx context.Context, opts subOptions, streams Streams) error {
	qos, err := parseQoS(opts.qos)
	if err != nil {
		return err
	}
	format := opts.format
	switch {
	case opts.raw && opts.json:
		return usageError("--raw and --json exclude each other")
	case opts.raw:
		format = "raw"
	case opts.json:
		format = "json"
	}
	if format != "line" && format != "raw" && format != "json" {
		return usageError("--format %q: want line, raw or json", format)
	}
	if opts.count < 0 {
		return usageError("--count %d: must be >= 0", opts.count)
	}
	if opts.persistent && opts.client.clientID == "" {
		return usageError("--persistent needs --id: the node finds the session by client id")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.timeout)
		defer cancel()
	}
	c, err := opts.client.dial(ctx, opts.persistent)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &exitError{code: ExitTimeout, err: err}
		}
		return err
	}
	defer c.Close()
	subs := make([]client.Subscription, len(opts.filters))
	for i, f := range opts.filters {
		subs[i] = client.Subscription{Filter: f, QoS: qos}
	}
	codes, err := c.Subscribe(ctx, subs...)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, code := range codes {
		if code == mqtt.SubackFailure && i < len(opts.filters) {
			return fmt.Errorf("subscribe %q: refused by the node (invalid filter, or the key does not allow it)", opts.filters[i])
		}
	}

	out := bufio.NewWriter(streams.Out)
	defer out.Flush()
	enc := json.NewEncoder(out)
	received := 0
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return fmt.Errorf("connection lost: %v", c.Err())
			}
			received++
			switch format {
			case "raw":
				out.Write(m.Payload)
				out.WriteByte('\n')
			case "json":
				rec := subRecord{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Time: time.Now().UTC()}
				if utf8.Valid(m.Payload) {
					rec.Payload = string(m.Payload)
				} else {
					rec.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
				}
				if err := enc.Encode(rec); err != nil {
					return err
				}
			default:
				fmt.Fprintf(out, "%s %s\n", m.Topic, m.Payload)
			}
			// Flush per message when no more are waiting, so a pipe sees
			// each one promptly without a write per message under load.
			if len(c.Messages()) == 0 {
				if err := out.Flush(); err != nil {
					return err
				}
			}
			if opts.count > 0 && received >= opts.count {
				return nil
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && received == 0 {
				return &exitError{code: ExitTimeout, err: fmt.Errorf("no message within %s", opts.timeout)}
			}
			return nil
		}
	}
}
