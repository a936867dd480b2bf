package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"strconv"
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
	last       int
	since      string
}

func newSubCommand(streams Streams) *cobra.Command {
	var opts subOptions
	cmd := &cobra.Command{
		Use:   "sub FILTER...",
		Short: "Subscribe and print messages",
		Long: `Subscribe to one or more topic filters ('+' matches one level, '#' the rest)
and print each message: "topic payload" per line by default, the payload
alone with --raw, or one JSON object per line with --json.

--last N and --since replay stored messages (published with a ttl, see
pubsub pub --ttl) before live ones: the newest N, or those since a time, for
every filter, oldest first. --since takes a duration back from now (90m) or
an RFC 3339 time; without --last it replays at most the node's
storage.max_request_limit (default 100). They are sent as the filter's
options level, FILTER/?last=N&from=UNIX (docs/storage.md); with
authentication on, the key needs the 'l' permission. A message published
while the subscription is being made may arrive twice, once replayed and
once live.

Exit codes: 0 ok (also on Ctrl-C), 1 error, 2 usage, 3 --timeout passed
before any message arrived.`,
		Example: `  pubsub sub 'chat/#'
  pubsub sub --json 'sensors/+/temperature' | jq .payload
  pubsub sub -C 1 -W 5s status/node1      # wait up to 5s for one message
  pubsub sub --last 10 'sensors/#'        # the 10 newest stored, then live
  pubsub sub --since 1h --json logs/app   # the last hour's stored messages, then live
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
	fs.IntVar(&opts.last, "last", 0, "first replay the newest N stored messages of each filter")
	fs.StringVar(&opts.since, "since", "", "first replay stored messages since DURATION ago (90m) or an RFC 3339 time")
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
	filters, err := historyFilters(opts.filters, opts.last, opts.since, time.Now())
	if err != nil {
		return err
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
	subs := make([]client.Subscription, len(filters))
	for i, f := range filters {
		subs[i] = client.Subscription{Filter: f, QoS: qos}
	}
	// The node sends replayed history before the SUBACK, so messages are
	// read while the subscription completes: waiting for the SUBACK first
	// would stall once more history than the client buffers arrived.
	subscribed := make(chan error, 1)
	go func() {
		codes, err := c.Subscribe(ctx, subs...)
		if err != nil {
			subscribed <- fmt.Errorf("subscribe: %w", err)
			return
		}
		for i, code := range codes {
			if code == mqtt.SubackFailure && i < len(opts.filters) {
				subscribed <- fmt.Errorf("subscribe %q: refused by the node (invalid filter, or the key does not allow it)", opts.filters[i])
				return
			}
		}
		subscribed <- nil
	}()

	out := bufio.NewWriter(streams.Out)
	defer out.Flush()
	enc := json.NewEncoder(out)
	received := 0
	for {
		select {
		case err := <-subscribed:
			if err != nil {
				return err
			}
			subscribed = nil // done; a nil channel is never ready
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

// Emitter's window for option dates (emitter.md §2): the node ignores a
// from/until outside it, which would replay the wrong thing silently.
var (
	minSince = time.Unix(1514764800, 0) // 2018-01-01
	maxSince = time.Unix(3029529600, 0) // 2066-01-01
)

// historyFilters adds the options --last and --since ask for to each
// filter (DESIGN §4): "a/#" with --last 5 becomes "a/#/?last=5".
func historyFilters(filters []string, last int, since string, now time.Time) ([]string, error) {
	if last < 0 || last > 1<<20 {
		return nil, usageError("--last %d: must be between 1 and %d", last, 1<<20)
	}
	var from int64
	if since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return nil, err
		}
		from = t.Unix()
	}
	if last == 0 && from == 0 {
		return filters, nil
	}
	out := make([]string, len(filters))
	for i, f := range filters {
		if last > 0 {
			f = withTopicOption(f, "last", strconv.Itoa(last))
		}
		if from != 0 {
			f = withTopicOption(f, "from", strconv.FormatInt(from, 10))
		}
		out[i] = f
	}
	return out, nil
}

// parseSince reads --since: a duration back from now or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	var t time.Time
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return t, usageError("--since %s: must be a positive duration", v)
		}
		t = now.Add(-d)
	} else if t, err = time.Parse(time.RFC3339, v); err != nil {
		return t, usageError("--since %q: want a duration such as 90m or an RFC 3339 time such as 2024-05-01T12:00:00Z", v)
	}
	switch {
	case t.After(now):
		return t, usageError("--since %s: in the future", v)
	case t.Before(minSince) || t.After(maxSince):
		return t, usageError("--since %s: the node only accepts times from 2018 to 2066; use --last", v)
	}
	return t, nil
}
