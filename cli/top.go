package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/stats"
	"github.com/pubsub/pubsub/tui"
)

// statsFilter matches every node's snapshot topic, $SYS/stats/<node>. The
// snapshots route through the cluster like any message (DESIGN §8), so one
// subscription on one node sees the whole cluster.
const statsFilter = broker.StatsTopicPrefix + "+"

const (
	// Reconnect backoff after a lost connection: it doubles from
	// topRetryMin up to topRetryMax, with jitter so that many monitors cut
	// off by one node restart do not reconnect in step.
	topRetryMin = 250 * time.Millisecond
	topRetryMax = 10 * time.Second
	// onceTextWidth is the width of `top --once` text when stdout is not a
	// terminal: wide enough that no column is dropped for a script.
	onceTextWidth = 1000
	// minOnceCheck bounds how often --once re-checks whether it has waited
	// long enough, for very short --interval values.
	minOnceCheck = 10 * time.Millisecond
)

// errStatsRefused is a SUBACK 0x80 for $SYS/stats/+: the key is valid but
// may not read the system channel, which no retry will change.
var errStatsRefused = errors.New("the node refused to send stats: reading $SYS/stats/+ needs a master key, or a key minted for $SYS/stats/# ('pubsub keygen')")

type topOptions struct {
	client   clientOptions
	interval time.Duration
	once     bool
	json     bool
	timeout  time.Duration
	noTUI    bool
	noColor  bool

	statsdAddress    string
	statsdPrefix     string
	statsdTagsFormat string
	statsdTags       []string

	// retryMin and retryMax bound the reconnect backoff; zero means the
	// topRetry defaults. Tests shorten them.
	retryMin, retryMax time.Duration
}

// topMode is what a `pubsub top` invocation does, decided by its flags.
type topMode int

const (
	topModeTUI   topMode = iota // the interactive monitor (with an optional StatsD relay)
	topModeOnce                 // one snapshot of the cluster on stdout, then exit
	topModeRelay                // headless StatsD relay until interrupted
)

func newTopCommand(streams Streams, run func(context.Context, topOptions, Streams) error) *cobra.Command {
	var opts topOptions
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch every node of the cluster live",
		Long: `Show a live table of every node in the cluster: connections, subscriptions,
messages and bytes per second in and out, publish-to-deliver latency, CPU and
memory, with cluster totals and a sparkline of the message rate.

Every node publishes its figures on $SYS/stats/<node> each stats.interval, and
those messages reach every node, so connecting to any one node shows them all.
Reading $SYS needs a master key (the one 'pubsub serve' prints on first start)
or a key minted for $SYS/stats/#. A node silent for three intervals is shown
as down. When the connection drops, top keeps the last figures on screen and
reconnects with backoff.

Keys: s sort column, r reverse, p pause, ↑/↓ scroll, ? help, q quit.

--once prints one snapshot of the cluster (a table, or JSON with --json) after
every node seen has reported twice, so rates are known, or after --timeout.
--statsd relays every node's figures to a StatsD server, for nodes that cannot
reach it themselves; add --no-tui to run the relay headless as a service.

NO_COLOR or --no-color turns colours off.`,
		Example: `  pubsub top --server node1:8080 --key "$MASTER_KEY"
  pubsub top --once                         # the table, once, for a shell
  pubsub top --once --json | jq '.nodes[] | select(.up | not) | .node'
  pubsub top --no-tui --statsd 127.0.0.1:8125          # headless relay
  pubsub top --statsd 127.0.0.1:8125 --statsd-tags-format datadog --statsd-tag env=prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	opts.client.addFlags(fs, streams)
	fs.DurationVarP(&opts.interval, "interval", "i", time.Second, "how often nodes publish stats (their stats.interval): the refresh rate, and 3 intervals of silence mark a node down")
	fs.BoolVar(&opts.once, "once", false, "print one snapshot of the cluster and exit")
	fs.BoolVar(&opts.json, "json", false, "with --once: print JSON instead of a table")
	fs.DurationVarP(&opts.timeout, "timeout", "W", 5*time.Second, "with --once: the longest to wait for two snapshots of every node")
	fs.BoolVar(&opts.noTUI, "no-tui", false, "with --statsd: relay without the interactive view, until interrupted")
	fs.BoolVar(&opts.noColor, "no-color", false, "no colours (also when NO_COLOR is set)")
	fs.StringVar(&opts.statsdAddress, "statsd", "", "relay every node's figures to the StatsD server at host:port (UDP)")
	fs.StringVar(&opts.statsdPrefix, "statsd-prefix", "pubsub", "with --statsd: prefix of every metric name")
	fs.StringVar(&opts.statsdTagsFormat, "statsd-tags-format", "", "with --statsd: tag the node as datadog or influxdb tags (default: node name in the metric name)")
	fs.StringArrayVar(&opts.statsdTags, "statsd-tag", nil, "with --statsd-tags-format: a key=value tag sent with every metric (repeatable)")
	return cmd
}

// mode validates the flag combination and says what to run. Every refusal
// is a usage error (exit 2) naming the flag to change.
func (o topOptions) mode() (topMode, error) {
	if o.interval <= 0 {
		return 0, usageError("--interval %s: must be positive", o.interval)
	}
	if o.timeout <= 0 {
		return 0, usageError("--timeout %s: must be positive", o.timeout)
	}
	if o.json && !o.once {
		return 0, usageError("--json needs --once: the live view is for people, --once --json for scripts")
	}
	if o.statsdAddress == "" {
		switch {
		case o.statsdPrefix != "pubsub", o.statsdTagsFormat != "", len(o.statsdTags) > 0:
			return 0, usageError("--statsd-prefix, --statsd-tags-format and --statsd-tag need --statsd ADDR")
		case o.noTUI && !o.once:
			return 0, usageError("--no-tui needs --statsd ADDR: without the view, top only relays to StatsD (or use --once)")
		}
	} else {
		if o.once {
			return 0, usageError("--statsd relays continuously and cannot go with --once")
		}
		if _, err := o.statsdConfig(); err != nil {
			return 0, err
		}
	}
	switch {
	case o.once:
		return topModeOnce, nil
	case o.noTUI:
		return topModeRelay, nil
	default:
		return topModeTUI, nil
	}
}

// statsdConfig builds and validates the relay's sink configuration.
func (o topOptions) statsdConfig() (stats.StatsDConfig, error) {
	cfg := stats.StatsDConfig{Address: o.statsdAddress, Prefix: o.statsdPrefix, TagsFormat: o.statsdTagsFormat}
	if len(o.statsdTags) > 0 && o.statsdTagsFormat == "" {
		return cfg, usageError("--statsd-tag needs --statsd-tags-format datadog or influxdb: plain StatsD has no tags")
	}
	for _, kv := range o.statsdTags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return cfg, usageError("--statsd-tag %q: want key=value", kv)
		}
		if cfg.Tags == nil {
			cfg.Tags = map[string]string{}
		}
		cfg.Tags[k] = v
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError("--statsd: %v", err)
	}
	return cfg, nil
}

func runTop(ctx context.Context, opts topOptions, streams Streams) error {
	mode, err := opts.mode()
	if err != nil {
		return err
	}
	switch mode {
	case topModeOnce:
		return runTopOnce(ctx, opts, streams)
	case topModeRelay:
		return runTopRelay(ctx, opts, streams)
	default:
		if !isTerminal(streams.Out) {
			return usageError("stdout is not a terminal: use --once (or --once --json) for a snapshot, or --no-tui --statsd ADDR to relay")
		}
		return runTopTUI(ctx, opts, streams)
	}
}

// connectStats dials the node and subscribes to every node's snapshots.
func connectStats(ctx context.Context, opts clientOptions) (*client.Client, error) {
	c, err := opts.dial(ctx, false)
	if err != nil {
		return nil, err
	}
	codes, err := c.Subscribe(ctx, client.Subscription{Filter: statsFilter})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("subscribe %s: %w", statsFilter, err)
	}
	// [MQTT-3.9.3-2] 0x80 in the SUBACK is the node refusing the filter;
	// for a valid filter that means the key may not read it.
	if len(codes) != 1 || codes[0] == mqtt.SubackFailure {
		_ = c.Close()
		if opts.key == "" {
			return nil, fmt.Errorf("%w; no key was given (--key or PUBSUB_KEY)", errStatsRefused)
		}
		return nil, errStatsRefused
	}
	return c, nil
}

// isFatal reports whether a reconnect failure will not go away by itself:
// the key was refused or cannot read $SYS, and only the user can fix that.
func isFatal(err error) bool {
	var ce *client.ConnackError
	if errors.As(err, &ce) {
		// [MQTT-3.2.2.3] 4: bad user name or password, 5: not authorized.
		return ce.Code == 4 || ce.Code == 5
	}
	return errors.Is(err, errStatsRefused)
}

// statsFeed keeps the subscription to $SYS/stats/+ alive: it hands each
// snapshot to onSnapshot and, after a lost connection, reports it through
// onStatus and reconnects with backoff.
type statsFeed struct {
	connect            func(context.Context) (*client.Client, error)
	onSnapshot         func(stats.Snapshot)
	onStatus           func(tui.ConnStatusMsg)
	log                *slog.Logger
	retryMin, retryMax time.Duration
}

func newStatsFeed(opts topOptions, log *slog.Logger) *statsFeed {
	f := &statsFeed{
		connect:  func(ctx context.Context) (*client.Client, error) { return connectStats(ctx, opts.client) },
		log:      log,
		retryMin: opts.retryMin,
		retryMax: opts.retryMax,
	}
	if f.retryMin <= 0 {
		f.retryMin = topRetryMin
	}
	if f.retryMax < f.retryMin {
		f.retryMax = max(topRetryMax, f.retryMin)
	}
	return f
}

// run reads c and, whenever the connection drops, reconnects until ctx ends
// (nil) or a reconnect fails in a way only the user can fix (that error).
// It closes every client it uses.
func (f *statsFeed) run(ctx context.Context, c *client.Client) error {
	delay := f.retryMin
	for {
		f.onStatus(tui.ConnStatusMsg{Connected: true})
		connected := time.Now()
		lost := f.consume(ctx, c)
		_ = c.Close()
		if ctx.Err() != nil {
			return nil
		}
		f.onStatus(tui.ConnStatusMsg{Err: lost})
		// A connection that held for a while was healthy: start the
		// backoff over. One that dropped at once keeps it growing, so a
		// node that accepts and then closes is not hammered.
		if time.Since(connected) >= f.retryMax {
			delay = f.retryMin
		}
		for {
			wait := jitter(delay)
			f.log.Warn("stats connection lost; reconnecting", "error", lost, "retry_in", wait.Round(time.Millisecond))
			if !sleepContext(ctx, wait) {
				return nil
			}
			delay = min(delay*2, f.retryMax)
			var err error
			if c, err = f.connect(ctx); err == nil {
				f.log.Info("stats connection restored")
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if isFatal(err) {
				return err
			}
			lost = err
			f.onStatus(tui.ConnStatusMsg{Err: err})
		}
	}
}

// consume hands c's snapshots on until the connection ends (why) or ctx
// ends (its error).
func (f *statsFeed) consume(ctx context.Context, c *client.Client) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				if err := c.Err(); err != nil {
					return err
				}
				return errors.New("connection closed by the node")
			}
			snap, err := stats.ParseSnapshot(m.Payload)
			if err != nil {
				// A newer schema or a damaged message: skip it, keep the rest.
				f.log.Debug("unreadable snapshot ignored", "topic", m.Topic, "error", err)
				continue
			}
			f.onSnapshot(snap)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// jitter spreads d over [d/2, d).
func jitter(d time.Duration) time.Duration {
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// sleepContext waits d or until ctx ends; it reports whether d passed.
func sleepContext(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runTopTUI runs the interactive monitor, relaying to StatsD as well when
// --statsd is set.
func runTopTUI(ctx context.Context, opts topOptions, streams Streams) error {
	// Connect before taking over the screen, so that a wrong address or
	// key is reported as one plain line. bubbletea handles signals once it
	// runs; until then Ctrl-C ends the wait for the node.
	connectCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	c, err := connectStats(connectCtx, opts.client)
	interrupted := ctx.Err() == nil && connectCtx.Err() != nil
	stopSignals()
	if interrupted {
		return nil
	}
	if err != nil {
		return err
	}

	// Log lines would tear the full-screen view: the feed and the sink stay
	// quiet here, and the header shows the connection state instead.
	quiet := slog.New(slog.DiscardHandler)
	relay, err := openRelay(opts, quiet)
	if err != nil {
		_ = c.Close()
		return err
	}
	if relay != nil {
		defer relay.Close()
	}

	model := tui.New(tui.Options{
		Interval: opts.interval,
		// https://no-color.org: NO_COLOR set and not empty.
		NoColor: opts.noColor || streams.getenv("NO_COLOR") != "",
		Server:  opts.client.server,
	})
	// Closing any copy of the model ends its pending tick, including when
	// the program ends other than by q (a signal, a fatal feed error).
	defer model.Close()
	programOpts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithAltScreen(), tea.WithOutput(streams.Out)}
	if _, isFile := streams.In.(*os.File); !isFile {
		// bubbletea's default input is the process's terminal; anything
		// else (a test's pipe) is passed as it is.
		programOpts = append(programOpts, tea.WithInput(streams.In))
	}
	program := tea.NewProgram(model, programOpts...)

	feed := newStatsFeed(opts, quiet)
	feed.onSnapshot = func(s stats.Snapshot) {
		if relay != nil {
			relay.Send(s)
		}
		program.Send(tui.SnapshotMsg(s))
	}
	// Send is a no-op once the program has ended, so the feed never blocks
	// on a program that is gone.
	feed.onStatus = func(s tui.ConnStatusMsg) { program.Send(s) }
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	feedDone := make(chan error, 1)
	go func() {
		err := feed.run(feedCtx, c)
		if err != nil {
			program.Quit()
		}
		feedDone <- err
	}()

	_, runErr := program.Run()
	stopFeed()
	if feedErr := <-feedDone; feedErr != nil {
		return feedErr
	}
	switch {
	case runErr == nil, errors.Is(runErr, tea.ErrInterrupted):
		// q, or SIGINT/SIGTERM: a normal end, as for `pubsub sub`.
		return nil
	case errors.Is(runErr, tea.ErrProgramKilled) && ctx.Err() != nil:
		return nil
	default:
		return fmt.Errorf("terminal: %w", runErr)
	}
}

// openRelay returns the StatsD sink for --statsd, or nil without it.
func openRelay(opts topOptions, log *slog.Logger) (*stats.StatsD, error) {
	if opts.statsdAddress == "" {
		return nil, nil
	}
	cfg, err := opts.statsdConfig()
	if err != nil {
		return nil, err
	}
	return stats.NewStatsD(cfg, log), nil
}

// runTopRelay forwards every node's snapshots to StatsD without a view,
// until interrupted: the cluster's one exit to a StatsD server its nodes
// cannot reach (DESIGN §8).
func runTopRelay(ctx context.Context, opts topOptions, streams Streams) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := newLogger(streams.ErrOut, "info", "auto")
	c, err := connectStats(ctx, opts.client)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	relay, err := openRelay(opts, logger)
	if err != nil {
		_ = c.Close()
		return err
	}
	defer relay.Close()
	logger.Info("relaying cluster stats to StatsD", "server", opts.client.server, "statsd", opts.statsdAddress)
	feed := newStatsFeed(opts, logger)
	feed.onSnapshot = relay.Send
	feed.onStatus = func(tui.ConnStatusMsg) {} // the feed logs changes itself
	return feed.run(ctx, c)
}

// runTopOnce prints the cluster once: after every node seen has sent two
// snapshots (so its rates exist), or after --timeout with what is known.
func runTopOnce(ctx context.Context, opts topOptions, streams Streams) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	c, err := connectStats(ctx, opts.client)
	if err != nil {
		return err
	}
	defer c.Close()

	cluster := tui.NewCluster(opts.interval)
	subscribed := time.Now()
	check := time.NewTicker(max(opts.interval/4, minOnceCheck))
	defer check.Stop()
wait:
	for !onceReady(cluster, subscribed, time.Now()) {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return fmt.Errorf("connection lost: %v", c.Err())
			}
			if snap, err := stats.ParseSnapshot(m.Payload); err == nil {
				cluster.Add(snap, time.Now())
			}
		case <-check.C:
		case <-ctx.Done():
			break wait
		}
	}

	now := time.Now()
	if cluster.Len() == 0 {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no node reported on %s within %s: check --interval against the nodes' stats.interval, or raise --timeout", statsFilter, opts.timeout)
		}
		return errors.New("interrupted before any node reported")
	}
	for _, row := range cluster.Rows(now) {
		if row.Up && !row.HasRates {
			fmt.Fprintf(streams.ErrOut, "pubsub: warning: node %q reported once within %s; its rates are unknown (has_rates false)\n", row.Node, opts.timeout)
		}
	}
	if opts.json {
		doc, err := cluster.JSON(now)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(streams.Out, "%s\n", doc)
		return err
	}
	_, err = io.WriteString(streams.Out, cluster.Text(now, textWidth(streams.Out)))
	return err
}

// onceReady reports whether --once has seen enough: one full interval
// since subscribing, so every node had its turn to report, and two
// snapshots of every node that is up, so rates exist.
func onceReady(cluster *tui.Cluster, subscribed, now time.Time) bool {
	if cluster.Len() == 0 || now.Sub(subscribed) < cluster.Interval() {
		return false
	}
	for _, row := range cluster.Rows(now) {
		if row.Up && !row.HasRates {
			return false
		}
	}
	return true
}

// textWidth is the terminal's width, or onceTextWidth for a pipe or file.
func textWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok && isTerminal(w) {
		if width, _, err := term.GetSize(f.Fd()); err == nil && width > 0 {
			return width
		}
	}
	return onceTextWidth
}
