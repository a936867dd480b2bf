package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type pubOptions struct {
	client   clientOptions
	topic    string
	message  []byte
	hasMsg   bool
	file     string
	lines    bool
	count    int
	interval time.Duration
	qos      int
	retain   bool
	ttl      time.Duration
}

func newPubCommand(streams Streams) *cobra.Command {
	var opts pubOptions
	cmd := &cobra.Command{
		Use:   "pub TOPIC [MESSAGE]",
		Short: "Publish messages",
		Long: `Publish to TOPIC. The message comes from the argument, from --file, or from
standard input (the whole input as one message, or one message per line with
--lines).

--ttl keeps each message in the node's store for that long, so subscribers
can replay it later (pubsub sub --last/--since). It is sent as the topic's
options level, TOPIC/?ttl=SECONDS (docs/storage.md); with authentication on,
the key needs the 's' permission or the node routes the message without
storing it.`,
		Example: `  pubsub pub sensors/t1 '21.5'
  pubsub pub -q 1 -r status/node1 online
  echo hello | pubsub pub chat/room1
  tail -f app.log | pubsub pub --lines logs/app
  pubsub pub --count 100 --interval 10ms bench/x ping
  pubsub pub --ttl 1h -q 1 sensors/t1 '21.5'   # stored: 'pubsub sub --last 10' replays it`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.topic = args[0]
			if len(args) == 2 {
				opts.message, opts.hasMsg = []byte(args[1]), true
			}
			return runPub(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	opts.client.addFlags(fs, streams)
	fs.StringVarP(&opts.file, "file", "f", "", "read the message from FILE")
	fs.BoolVarP(&opts.lines, "lines", "l", false, "publish each line of standard input (or --file) as a message")
	fs.IntVarP(&opts.count, "count", "n", 1, "publish the message this many times")
	fs.DurationVar(&opts.interval, "interval", 0, "wait this long between messages")
	fs.IntVarP(&opts.qos, "qos", "q", 0, "quality of service: 0, 1 or 2")
	fs.BoolVarP(&opts.retain, "retain", "r", false, "ask the node to retain the message for new subscribers")
	fs.DurationVar(&opts.ttl, "ttl", 0, "store each message for this long (whole seconds, e.g. 90s, 24h) so it can be replayed")
	return cmd
}

func runPub(ctx context.Context, opts pubOptions, streams Streams) error {
	qos, err := parseQoS(opts.qos)
	if err != nil {
		return err
	}
	if opts.count < 1 {
		return usageError("--count %d: must be at least 1", opts.count)
	}
	if opts.hasMsg && opts.file != "" {
		return usageError("give the message as an argument or with --file, not both")
	}
	if opts.hasMsg && opts.lines {
		return usageError("--lines reads standard input or --file; drop the MESSAGE argument")
	}
	if opts.ttl < 0 {
		return usageError("--ttl %s: must be positive", opts.ttl)
	}
	if opts.ttl > 0 {
		// The option counts whole seconds; round up so 500ms still stores.
		secs := int64((opts.ttl + time.Second - 1) / time.Second)
		opts.topic = withTopicOption(opts.topic, "ttl", strconv.FormatInt(secs, 10))
	}
	var in io.Reader = streams.In
	if opts.file != "" {
		f, err := os.Open(opts.file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		in = f
	}
	if opts.client.key == "" && !looksLikeKeyTopic(opts.topic) && isTerminal(streams.ErrOut) {
		// MQTT 3.1.1 has no negative PUBACK: a node with keys on takes the
		// publish and drops it. Say so where a person will read it.
		fmt.Fprintln(streams.ErrOut, "pubsub: no key given (--key or PUBSUB_KEY); a node with channel keys on accepts the connection but drops the message")
	}
	c, err := opts.client.dial(ctx, false)
	if err != nil {
		return err
	}
	defer c.Close()

	send := func(msg []byte) error {
		for i := 0; i < opts.count; i++ {
			if i > 0 && opts.interval > 0 {
				select {
				case <-time.After(opts.interval):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := c.Publish(ctx, opts.topic, msg, qos, opts.retain); err != nil {
				return fmt.Errorf("publish to %s: %w", opts.topic, err)
			}
		}
		return nil
	}
	switch {
	case opts.hasMsg:
		return send(opts.message)
	case opts.lines:
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if err := send(sc.Bytes()); err != nil {
				return err
			}
		}
		return sc.Err()
	default:
		msg, err := io.ReadAll(io.LimitReader(in, 256<<20))
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
		if len(msg) == 0 && opts.file == "" && isTerminalReader(streams.In) {
			return errors.New("no message: give one as an argument, with --file, or on standard input")
		}
		return send(msg)
	}
}

// withTopicOption adds key=value to the options level of a topic or filter
// (DESIGN §4), creating the level when there is none: "a/b" becomes
// "a/b/?ttl=60", "a/b/?last=5" becomes "a/b/?last=5&ttl=60". A topic that
// ends with '/' is an Emitter channel ("KEY/a/b/"), which the options level
// follows directly.
func withTopicOption(t, key, value string) string {
	opt := key + "=" + value
	if i := strings.LastIndex(t, "/?"); i >= 0 && !strings.Contains(t[i+2:], "/") {
		if len(t) == i+2 {
			return t + opt
		}
		return t + "&" + opt
	}
	if strings.HasSuffix(t, "/") {
		return t + "?" + opt
	}
	return t + "/?" + opt
}

func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// looksLikeKeyTopic reports whether the topic carries its own key (the
// Emitter dialect "KEY/channel/"), which makes --key unnecessary.
func looksLikeKeyTopic(t string) bool {
	first, _, _ := strings.Cut(t, "/")
	return strings.Count(first, ".") == 2 && len(first) > 20
}
