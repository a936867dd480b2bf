package cli

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/client"
)

// The bench payload starts with a fixed header so subscribers can measure
// publish-to-deliver latency and account for every message:
//
//	[0:8)   send time, Unix nanoseconds, big endian (int64)
//	[8:12)  publisher number (uint32)
//	[12:16) sequence number within that publisher, from 0 (uint32)
//
// The rest of the payload is filler up to --size bytes.
const benchHeaderLen = 16

const (
	// benchConnectParallel bounds how many connections are being set up at
	// once, so --subs 10000 does not open 10000 handshakes in one burst.
	benchConnectParallel = 16
	// benchBatchBytes is roughly how much a QoS 0 publisher enqueues before
	// it flushes when it is not rate-limited: large enough to amortise the
	// write syscall, small enough to keep latency honest.
	benchBatchBytes = 16 << 10
	// benchMaxBatch caps a batch in messages (for tiny payloads).
	benchMaxBatch = 256
	// benchProgressEvery is how often the terminal progress line refreshes.
	benchProgressEvery = 250 * time.Millisecond
	// benchMessageBuffer is each subscriber's client-side queue (messages);
	// generous so the reading goroutine never waits on the counting one.
	benchMessageBuffer = 8192
)

type benchOptions struct {
	client     clientOptions
	pubs       int
	subs       int
	msgs       int
	size       int
	qos        int
	topic      string
	rate       int
	json       bool
	timeout    time.Duration
	cpuProfile string
}

func newBenchCommand(streams Streams) *cobra.Command {
	var opts benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency with many publishers and subscribers",
		Long: `Run a load test against a node (or any MQTT 3.1.1 broker): --subs subscribers
subscribe to one topic, then --pubs publishers publish --msgs messages in
total (split evenly) of --size bytes. Every subscriber should get every
message, so the run expects msgs x subs deliveries; it ends when all have
arrived or --timeout passes, and then reports what was lost instead of
waiting on.

Each payload starts with the send time and a sequence number, so the
subscribers measure publish-to-deliver latency (p50/p90/p99/max) and count
lost and duplicated messages. With --rate each publisher is held to that
many messages per second, which is how to compare brokers at a load both
sustain; without it they publish as fast as the connection takes them
(QoS 0 in batches, QoS 1 and 2 one acknowledged message at a time).

Human output is a table per client and an aggregate; --json prints one
JSON document on stdout instead. Progress goes to stderr, on a terminal only.
--id, when given, prefixes the client ids (ID-pub-1, ID-sub-1, ...).
Exit code 1 when anything was lost, a client was dropped or --timeout passed.`,
		Example: `  pubsub bench --pubs 1 --subs 1 --msgs 100000             # one-to-one throughput
  pubsub bench --pubs 1 --subs 100 --msgs 20000 --rate 2000 # fan-out, 200k deliveries/s
  pubsub bench --pubs 50 --subs 1 --msgs 200000 --rate 400  # fan-in
  pubsub bench --qos 1 --size 1024 --json | jq .aggregate
  pubsub bench -s 127.0.0.1:1883 --pubs 4 --subs 4          # any MQTT broker (e.g. Mosquitto)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	opts.client.addFlags(fs, streams)
	fs.IntVar(&opts.pubs, "pubs", 1, "number of publishing connections")
	fs.IntVar(&opts.subs, "subs", 1, "number of subscribing connections (0: publish only)")
	fs.IntVarP(&opts.msgs, "msgs", "n", 100_000, "messages published in total, split across the publishers")
	fs.IntVar(&opts.size, "size", 128, "payload size in bytes (at least 16: send time and sequence number)")
	fs.IntVarP(&opts.qos, "qos", "q", 0, "quality of service for publishing and subscribing: 0, 1 or 2")
	fs.StringVarP(&opts.topic, "topic", "t", "", "topic to use (default: bench/<random>)")
	fs.IntVar(&opts.rate, "rate", 0, "messages per second per publisher (0: as fast as possible)")
	fs.BoolVar(&opts.json, "json", false, "print one JSON document on stdout instead of tables")
	fs.DurationVarP(&opts.timeout, "timeout", "W", 60*time.Second, "give up waiting for deliveries after this long and report what was lost")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to FILE")
	_ = fs.MarkHidden("cpuprofile")
	return cmd
}

// validate checks the flags; every failure is a usage error (exit code 2).
func (o *benchOptions) validate() error {
	if _, err := parseQoS(o.qos); err != nil {
		return err
	}
	switch {
	case o.pubs < 1:
		return usageError("--pubs %d: need at least one publisher", o.pubs)
	case o.subs < 0:
		return usageError("--subs %d: must be >= 0", o.subs)
	case o.msgs < 1:
		return usageError("--msgs %d: must be at least 1", o.msgs)
	case (o.msgs+o.pubs-1)/o.pubs > math.MaxUint32:
		return usageError("--msgs %d: at most %d per publisher", o.msgs, uint64(math.MaxUint32))
	case o.size < benchHeaderLen:
		return usageError("--size %d: must be at least %d (the payload carries send time and sequence number)", o.size, benchHeaderLen)
	case o.size > mqtt.MaxRemaining-2-len(o.topic)-len("bench/0123456789abcdef"):
		return usageError("--size %d: larger than an MQTT packet can carry", o.size)
	case o.rate < 0:
		return usageError("--rate %d: must be >= 0 (0: as fast as possible)", o.rate)
	case o.timeout <= 0:
		return usageError("--timeout %s: must be positive", o.timeout)
	}
	if o.topic != "" {
		// Publishing needs a concrete topic: no wildcards [MQTT-3.3.2-2].
		if err := topic.ValidateTopic([]byte(o.topic)); err != nil {
			return usageError("--topic %q: %v", o.topic, err)
		}
	}
	return nil
}

// benchHeader is the decoded start of a bench payload.
type benchHeader struct {
	sentAt int64 // Unix nanoseconds
	pub    uint32
	seq    uint32
}

var errShortBenchPayload = errors.New("bench: payload shorter than the 16-byte header")

func putBenchHeader(b []byte, h benchHeader) {
	binary.BigEndian.PutUint64(b[0:8], uint64(h.sentAt))
	binary.BigEndian.PutUint32(b[8:12], h.pub)
	binary.BigEndian.PutUint32(b[12:16], h.seq)
}

func parseBenchHeader(b []byte) (benchHeader, error) {
	if len(b) < benchHeaderLen {
		return benchHeader{}, errShortBenchPayload
	}
	return benchHeader{
		sentAt: int64(binary.BigEndian.Uint64(b[0:8])),
		pub:    binary.BigEndian.Uint32(b[8:12]),
		seq:    binary.BigEndian.Uint32(b[12:16]),
	}, nil
}

// latencyHistogram counts nanosecond latencies in log-linear buckets, the
// HdrHistogram layout: 128 linear sub-buckets per power of two, so every
// recorded value is known to within 1/128 (< 0.8%) in fixed memory
// (~34 KiB) however many messages arrive. Values at or above 2^40 ns
// (18 minutes) are clamped.
type latencyHistogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
	sum    float64
}

const (
	histSubBits   = 7
	histSub       = 1 << histSubBits
	histMaxBits   = 40
	histMaxValue  = 1<<histMaxBits - 1
	histBuckets   = (histMaxBits-histSubBits)*histSub + histSub
	histExpOffset = histSubBits + 1
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	shift := max(0, bits.Len64(uint64(v))-histExpOffset)
	return shift<<histSubBits + int(v>>shift)
}

// histUpper is the highest value that lands in bucket i.
func histUpper(i int) int64 {
	shift := max(0, i>>histSubBits-1)
	mantissa := int64(i - shift<<histSubBits)
	return (mantissa+1)<<shift - 1
}

func (h *latencyHistogram) record(ns int64) {
	if ns < 0 {
		// Only possible if the clock stepped backwards mid-run.
		ns = 0
	}
	h.counts[histIndex(ns)]++
	h.n++
	h.sum += float64(ns)
	if ns > h.max {
		h.max = ns
	}
}

func (h *latencyHistogram) merge(o *latencyHistogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at or below which a fraction q of the
// recorded latencies fall (0 when nothing was recorded).
func (h *latencyHistogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histUpper(i), h.max)
		}
	}
	return h.max
}

// benchPublisher is one publishing connection and what it achieved.
type benchPublisher struct {
	name  string
	index uint32
	count int // messages this publisher is to send
	c     *client.Client

	sent     atomic.Int64
	finished time.Time
	err      error
}

// benchSubscriber is one subscribing connection and its accounting. Only
// its own goroutine touches the fields, except received (read by the
// progress line).
type benchSubscriber struct {
	name string
	c    *client.Client

	received   atomic.Int64 // every message, duplicates included
	unique     int64
	duplicates int64
	foreign    int64 // payloads that are not bench messages of this run
	bytes      int64
	next       []uint32 // next expected sequence number, per publisher
	last       time.Time
	latency    latencyHistogram
	dropped    error // the connection ended before the run did
}

// account records one delivered payload. A message older than the newest
// seen from its publisher is a duplicate: MQTT keeps the order of one
// publisher's messages on a topic [MQTT-4.6.0-6], so a smaller sequence
// number can only be a redelivery.
func (s *benchSubscriber) account(payload []byte, now time.Time) {
	s.received.Add(1)
	s.bytes += int64(len(payload))
	s.last = now
	h, err := parseBenchHeader(payload)
	if err != nil || int(h.pub) >= len(s.next) {
		s.foreign++
		return
	}
	if h.seq < s.next[h.pub] {
		s.duplicates++
		return
	}
	s.next[h.pub] = h.seq + 1
	s.unique++
	s.latency.record(now.UnixNano() - h.sentAt)
}

// benchRun is one bench execution in progress.
type benchRun struct {
	opts  benchOptions
	topic string
	qos   byte
	pubs  []*benchPublisher
	subs  []*benchSubscriber

	start time.Time
	// want is how many unique messages each subscriber waits for: --msgs
	// until the publishers finish, then what they actually sent.
	want        atomic.Int64
	pubsDone    chan struct{}
	timedOut    bool
	interrupted bool
	end         time.Time
}

func runBench(ctx context.Context, opts benchOptions, streams Streams) (err error) {
	if err := opts.validate(); err != nil {
		return err
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("--cpuprofile: %w", cerr)
			}
		}()
	}
	qos, _ := parseQoS(opts.qos)
	r := &benchRun{opts: opts, topic: opts.topic, qos: qos, pubsDone: make(chan struct{})}
	if r.topic == "" {
		r.topic = "bench/" + randomHex(8)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	defer r.closeAll()
	if err := r.connect(ctx); err != nil {
		return err
	}
	var progress *benchProgress
	if !opts.json && isTerminal(streams.ErrOut) {
		progress = startBenchProgress(r, streams.ErrOut)
	}
	r.execute(ctx)
	if progress != nil {
		progress.stop()
	}
	rep := r.report()
	if opts.json {
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeBenchHuman(streams.Out, rep)
	}
	return rep.failure()
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// dialBench connects one bench client with a derived client id, so
// --id prefix yields prefix-pub-1, prefix-sub-1, ...
func (r *benchRun) dialBench(ctx context.Context, name string) (*client.Client, error) {
	o := r.opts.client
	id := ""
	if o.clientID != "" {
		id = o.clientID + "-" + name
	}
	copts, err := o.options(false)
	if err != nil {
		return nil, err
	}
	copts.ClientID = id
	copts.Buffer = benchMessageBuffer
	c, err := client.Dial(ctx, copts)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w", name, o.server, err)
	}
	return c, nil
}

// connect opens every connection and subscribes every subscriber before a
// single message is published, so no subscriber misses the start.
func (r *benchRun) connect(ctx context.Context) error {
	o := r.opts
	per, extra := o.msgs/o.pubs, o.msgs%o.pubs
	for i := range o.pubs {
		p := &benchPublisher{name: "pub-" + strconv.Itoa(i+1), index: uint32(i), count: per}
		if i < extra {
			p.count++
		}
		r.pubs = append(r.pubs, p)
	}
	for i := range o.subs {
		r.subs = append(r.subs, &benchSubscriber{name: "sub-" + strconv.Itoa(i+1), next: make([]uint32, o.pubs)})
	}

	sem := make(chan struct{}, benchConnectParallel)
	var wg sync.WaitGroup
	errs := make([]error, len(r.subs)+len(r.pubs))
	for i, s := range r.subs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = r.connectSubscriber(ctx, s)
		}()
	}
	for i, p := range r.pubs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := r.dialBench(ctx, p.name)
			p.c, errs[len(r.subs)+i] = c, err
		}()
	}
	wg.Wait()
	// One error is enough to say what to fix; the rest are usually the same.
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *benchRun) connectSubscriber(ctx context.Context, s *benchSubscriber) error {
	c, err := r.dialBench(ctx, s.name)
	if err != nil {
		return err
	}
	s.c = c
	codes, err := c.Subscribe(ctx, client.Subscription{Filter: r.topic, QoS: r.qos})
	if err != nil {
		return fmt.Errorf("%s: subscribe %s: %w", s.name, r.topic, err)
	}
	if len(codes) != 1 || codes[0] == mqtt.SubackFailure {
		return fmt.Errorf("%s: subscribe %q refused by the node (check --key and --topic)", s.name, r.topic)
	}
	return nil
}

func (r *benchRun) closeAll() {
	for _, p := range r.pubs {
		if p.c != nil {
			p.c.Close()
		}
	}
	for _, s := range r.subs {
		if s.c != nil {
			s.c.Close()
		}
	}
}

// execute publishes and collects until every subscriber has everything,
// --timeout passes or the user interrupts.
func (r *benchRun) execute(ctx context.Context) {
	r.want.Store(int64(r.opts.msgs))
	runCtx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	r.start = time.Now()

	var subsWG sync.WaitGroup
	for _, s := range r.subs {
		subsWG.Add(1)
		go func() {
			defer subsWG.Done()
			r.collect(runCtx, s)
		}()
	}
	var pubsWG sync.WaitGroup
	for _, p := range r.pubs {
		pubsWG.Add(1)
		go func() {
			defer pubsWG.Done()
			r.publish(runCtx, p)
		}()
	}
	pubsWG.Wait()
	var sent int64
	for _, p := range r.pubs {
		sent += p.sent.Load()
	}
	r.want.Store(sent)
	close(r.pubsDone)
	subsWG.Wait()
	r.end = time.Now()
	if runCtx.Err() != nil && !r.complete() {
		if ctx.Err() != nil {
			r.interrupted = true
		} else {
			r.timedOut = true
		}
	}
}

// complete reports whether every publisher sent everything and every
// subscriber got it; call only after the goroutines finished.
func (r *benchRun) complete() bool {
	for _, p := range r.pubs {
		if p.sent.Load() != int64(p.count) {
			return false
		}
	}
	for _, s := range r.subs {
		if s.unique != int64(r.opts.msgs) {
			return false
		}
	}
	return true
}

// publish sends p's share. Rate-limited publishers follow a schedule
// (message i is due at start + i/rate), so a late wake-up sends what is due
// at once instead of drifting below the asked rate.
func (r *benchRun) publish(ctx context.Context, p *benchPublisher) {
	defer func() { p.finished = time.Now() }()
	payload := make([]byte, r.opts.size)
	for i := benchHeaderLen; i < len(payload); i++ {
		payload[i] = byte('a' + i%26)
	}
	batch := min(benchMaxBatch, max(1, benchBatchBytes/r.opts.size))
	rate := float64(r.opts.rate)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	for sent := 0; sent < p.count; {
		if ctx.Err() != nil {
			return
		}
		n := min(batch, p.count-sent)
		if rate > 0 {
			due := int(time.Since(r.start).Seconds()*rate) + 1
			if sent >= due {
				next := r.start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				timer.Reset(time.Until(next))
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
				continue
			}
			n = min(n, due-sent)
		}
		for k := range n {
			putBenchHeader(payload, benchHeader{sentAt: time.Now().UnixNano(), pub: p.index, seq: uint32(sent + k)})
			var err error
			if r.qos == 0 {
				err = p.c.Enqueue(r.topic, payload, false)
			} else {
				err = p.c.Publish(ctx, r.topic, payload, r.qos, false)
			}
			if err != nil {
				if ctx.Err() == nil {
					p.err = fmt.Errorf("publish failed after %d messages: %w", sent+k, err)
				}
				return
			}
			if r.qos > 0 {
				p.sent.Add(1)
			}
		}
		if r.qos == 0 {
			if err := p.c.Flush(); err != nil {
				p.err = fmt.Errorf("publish failed after %d messages: %w", sent, err)
				return
			}
			p.sent.Add(int64(n))
		}
		sent += n
	}
}

// collect counts s's deliveries until it has every message the publishers
// sent, the run ends, or the node drops the connection.
func (r *benchRun) collect(ctx context.Context, s *benchSubscriber) {
	msgs := s.c.Messages()
	pubsDone := r.pubsDone
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				s.dropped = s.c.Err()
				if s.dropped == nil {
					s.dropped = client.ErrClosed
				}
				return
			}
			s.account(m.Payload, time.Now())
			if s.unique >= r.want.Load() {
				return
			}
		case <-pubsDone:
			// The target may have shrunk to what was actually sent.
			if s.unique >= r.want.Load() {
				return
			}
			pubsDone = nil
		case <-ctx.Done():
			return
		}
	}
}

// benchProgress redraws one status line on a terminal.
type benchProgress struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func startBenchProgress(r *benchRun, w io.Writer) *benchProgress {
	p := &benchProgress{done: make(chan struct{})}
	total := int64(r.opts.msgs) * int64(len(r.subs))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(benchProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				var sent, got int64
				for _, pub := range r.pubs {
					sent += pub.sent.Load()
				}
				for _, s := range r.subs {
					got += s.received.Load()
				}
				fmt.Fprintf(w, "\r\033[Kpublished %s/%s  delivered %s/%s  %s",
					groupDigits(sent), groupDigits(int64(r.opts.msgs)), groupDigits(got), groupDigits(total),
					time.Since(r.start).Round(100*time.Millisecond))
			case <-p.done:
				fmt.Fprint(w, "\r\033[K")
				return
			}
		}
	}()
	return p
}

func (p *benchProgress) stop() {
	close(p.done)
	p.wg.Wait()
}

// benchReport is the --json document. Rates are per second, sizes in
// bytes, times in seconds and latencies in microseconds; the field names
// carry the unit.
type benchReport struct {
	Config      benchConfig       `json:"config"`
	Publishers  []benchPubStats   `json:"publishers"`
	Subscribers []benchSubStats   `json:"subscribers"`
	Aggregate   benchAggregate    `json:"aggregate"`
	Sent        int64             `json:"sent"`
	Unsent      int64             `json:"unsent"`
	Received    int64             `json:"received"`
	Expected    int64             `json:"expected"`
	Lost        int64             `json:"lost"`
	Duplicates  int64             `json:"duplicates"`
	Foreign     int64             `json:"foreign"`
	Dropped     int               `json:"dropped_subscribers"`
	TimedOut    bool              `json:"timed_out"`
	Interrupted bool              `json:"interrupted"`
	Elapsed     float64           `json:"elapsed_s"`
	latency     *latencyHistogram // merged, for the human summary
}

type benchConfig struct {
	Server  string  `json:"server"`
	Pubs    int     `json:"pubs"`
	Subs    int     `json:"subs"`
	Msgs    int     `json:"msgs"`
	Size    int     `json:"size"`
	QoS     int     `json:"qos"`
	Topic   string  `json:"topic"`
	Rate    int     `json:"rate"`
	Timeout float64 `json:"timeout_s"`
}

type benchPubStats struct {
	Name       string  `json:"name"`
	Sent       int64   `json:"sent"`
	Elapsed    float64 `json:"elapsed_s"`
	MsgsPerSec float64 `json:"msgs_per_s"`
	MiBPerSec  float64 `json:"mib_per_s"`
	Error      string  `json:"error,omitempty"`
}

type benchSubStats struct {
	Name       string         `json:"name"`
	Received   int64          `json:"received"`
	Lost       int64          `json:"lost"`
	Duplicates int64          `json:"duplicates"`
	Elapsed    float64        `json:"elapsed_s"`
	MsgsPerSec float64        `json:"msgs_per_s"`
	MiBPerSec  float64        `json:"mib_per_s"`
	Latency    benchLatencies `json:"latency_us"`
	Dropped    bool           `json:"dropped"`
	Error      string         `json:"error,omitempty"`
}

type benchLatencies struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type benchAggregate struct {
	Publish benchThroughput `json:"publish"`
	Deliver benchThroughput `json:"deliver"`
	Latency benchLatencies  `json:"latency_us"`
}

type benchThroughput struct {
	Msgs       int64   `json:"msgs"`
	Elapsed    float64 `json:"elapsed_s"`
	MsgsPerSec float64 `json:"msgs_per_s"`
	MiBPerSec  float64 `json:"mib_per_s"`
}

func latencies(h *latencyHistogram) benchLatencies {
	us := func(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }
	l := benchLatencies{P50: us(h.quantile(0.50)), P90: us(h.quantile(0.90)), P99: us(h.quantile(0.99)), Max: us(h.max)}
	if h.n > 0 {
		l.Mean = us(int64(h.sum / float64(h.n)))
	}
	return l
}

func throughput(msgs int64, size int, elapsed time.Duration) benchThroughput {
	t := benchThroughput{Msgs: msgs, Elapsed: seconds(elapsed)}
	if elapsed > 0 {
		t.MsgsPerSec = math.Round(float64(msgs) / elapsed.Seconds())
		t.MiBPerSec = round3(float64(msgs) * float64(size) / (1 << 20) / elapsed.Seconds())
	}
	return t
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// seconds gives d in seconds to the microsecond: a short run must not
// report zero time.
func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1e6 }

// report summarises a finished run.
func (r *benchRun) report() *benchReport {
	o := r.opts
	rep := &benchReport{
		Config: benchConfig{
			Server: o.client.server, Pubs: o.pubs, Subs: o.subs, Msgs: o.msgs, Size: o.size,
			QoS: o.qos, Topic: r.topic, Rate: o.rate, Timeout: o.timeout.Seconds(),
		},
		Expected:    int64(o.msgs) * int64(o.subs),
		TimedOut:    r.timedOut,
		Interrupted: r.interrupted,
		Elapsed:     seconds(r.end.Sub(r.start)),
		latency:     new(latencyHistogram),
		Publishers:  []benchPubStats{},
		Subscribers: []benchSubStats{},
	}
	var lastPub time.Time
	for _, p := range r.pubs {
		sent := p.sent.Load()
		rep.Sent += sent
		t := throughput(sent, o.size, p.finished.Sub(r.start))
		ps := benchPubStats{Name: p.name, Sent: sent, Elapsed: t.Elapsed, MsgsPerSec: t.MsgsPerSec, MiBPerSec: t.MiBPerSec}
		if p.err != nil {
			ps.Error = p.err.Error()
		}
		rep.Publishers = append(rep.Publishers, ps)
		if p.finished.After(lastPub) {
			lastPub = p.finished
		}
	}
	rep.Unsent = int64(o.msgs) - rep.Sent
	rep.Aggregate.Publish = throughput(rep.Sent, o.size, lastPub.Sub(r.start))

	var lastSub time.Time
	var delivered int64
	for _, s := range r.subs {
		// Lost counts what was published and never arrived; what the
		// publishers never sent is reported as unsent instead.
		lost := max(0, rep.Sent-s.unique)
		var t benchThroughput
		if !s.last.IsZero() {
			t = throughput(s.received.Load(), o.size, s.last.Sub(r.start))
		}
		ss := benchSubStats{
			Name: s.name, Received: s.received.Load(), Lost: lost, Duplicates: s.duplicates,
			Elapsed: t.Elapsed, MsgsPerSec: t.MsgsPerSec, MiBPerSec: t.MiBPerSec,
			Latency: latencies(&s.latency), Dropped: s.dropped != nil,
		}
		if s.dropped != nil {
			ss.Error = fmt.Sprintf("connection closed by the node after %d messages (%v): dropped as a slow consumer? lower --rate or raise the node's limits.max_pending_bytes", s.received.Load(), s.dropped)
			rep.Dropped++
		}
		rep.Subscribers = append(rep.Subscribers, ss)
		rep.Received += s.received.Load()
		delivered += s.unique
		rep.Lost += lost
		rep.Duplicates += s.duplicates
		rep.Foreign += s.foreign
		rep.latency.merge(&s.latency)
		if s.last.After(lastSub) {
			lastSub = s.last
		}
	}
	if len(r.subs) > 0 {
		rep.Aggregate.Deliver = throughput(rep.Received, o.size, lastSub.Sub(r.start))
	}
	rep.Aggregate.Latency = latencies(rep.latency)
	return rep
}

// failure turns what went wrong into the command's error (exit code 1), or
// nil for a clean run.
func (rep *benchReport) failure() error {
	var problems []string
	if rep.Interrupted {
		problems = append(problems, "interrupted")
	}
	if rep.TimedOut {
		problems = append(problems, fmt.Sprintf("--timeout %s passed", time.Duration(rep.Config.Timeout*float64(time.Second))))
	}
	if rep.Lost > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d deliveries lost", rep.Lost, rep.Sent*int64(rep.Config.Subs)))
	}
	if rep.Unsent > 0 {
		problems = append(problems, fmt.Sprintf("%d messages not published", rep.Unsent))
	}
	if rep.Dropped > 0 {
		problems = append(problems, fmt.Sprintf("%d subscribers dropped by the node", rep.Dropped))
	}
	for _, p := range rep.Publishers {
		if p.Error != "" {
			problems = append(problems, p.Name+": "+p.Error)
			break
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("bench: " + strings.Join(problems, "; "))
}

func writeBenchHuman(w io.Writer, rep *benchReport) {
	c := rep.Config
	rate := "unlimited"
	if c.Rate > 0 {
		rate = groupDigits(int64(c.Rate)) + " msgs/s per publisher"
	}
	fmt.Fprintf(w, "%d publishers -> %d subscribers on %s: %s msgs x %d B, QoS %d, rate %s\n\n",
		c.Pubs, c.Subs, c.Topic, groupDigits(int64(c.Msgs)), c.Size, c.QoS, rate)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CLIENT\tMSGS\tMSGS/S\tMiB/S\tP50\tP90\tP99\tMAX\tLOST\tDUP\t")
	for _, p := range rep.Publishers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t\t\t\t\t\t\t\n", p.Name, groupDigits(p.Sent), groupDigits(int64(p.MsgsPerSec)), p.MiBPerSec)
	}
	for _, s := range rep.Subscribers {
		l := s.Latency
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name, groupDigits(s.Received),
			groupDigits(int64(s.MsgsPerSec)), s.MiBPerSec, fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99),
			fmtMicros(l.Max), groupDigits(s.Lost), groupDigits(s.Duplicates))
	}
	tw.Flush()
	fmt.Fprintln(w)

	pub := rep.Aggregate.Publish
	fmt.Fprintf(w, "publish  %s msgs in %s: %s msgs/s, %.2f MiB/s\n",
		groupDigits(pub.Msgs), fmtSeconds(pub.Elapsed), groupDigits(int64(pub.MsgsPerSec)), pub.MiBPerSec)
	if c.Subs > 0 {
		d, l := rep.Aggregate.Deliver, rep.Aggregate.Latency
		fmt.Fprintf(w, "deliver  %s of %s msgs in %s: %s msgs/s, %.2f MiB/s\n",
			groupDigits(rep.Received), groupDigits(rep.Expected), fmtSeconds(d.Elapsed), groupDigits(int64(d.MsgsPerSec)), d.MiBPerSec)
		fmt.Fprintf(w, "latency  p50 %s  p90 %s  p99 %s  max %s\n", fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99), fmtMicros(l.Max))
	}
	fmt.Fprintf(w, "result   lost %s, duplicates %s", groupDigits(rep.Lost), groupDigits(rep.Duplicates))
	if rep.Unsent > 0 {
		fmt.Fprintf(w, ", unsent %s", groupDigits(rep.Unsent))
	}
	if rep.Foreign > 0 {
		fmt.Fprintf(w, ", %s foreign messages on the topic", groupDigits(rep.Foreign))
	}
	switch {
	case rep.Interrupted:
		fmt.Fprint(w, " (interrupted)")
	case rep.TimedOut:
		fmt.Fprintf(w, " (--timeout passed after %s)", fmtSeconds(rep.Elapsed))
	}
	fmt.Fprintln(w)
	for _, s := range rep.Subscribers {
		if s.Dropped {
			fmt.Fprintf(w, "DROPPED  %s: %s\n", s.Name, s.Error)
		}
	}
	for _, p := range rep.Publishers {
		if p.Error != "" {
			fmt.Fprintf(w, "FAILED   %s: %s\n", p.Name, p.Error)
		}
	}
}

// fmtMicros prints a latency given in microseconds with three significant
// digits and a fitting unit.
func fmtMicros(us float64) string {
	d := time.Duration(us * float64(time.Microsecond))
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return strconv.FormatFloat(us, 'f', precisionFor(us), 64) + "µs"
	case d < time.Second:
		ms := us / 1e3
		return strconv.FormatFloat(ms, 'f', precisionFor(ms), 64) + "ms"
	default:
		s := us / 1e6
		return strconv.FormatFloat(s, 'f', precisionFor(s), 64) + "s"
	}
}

func fmtSeconds(s float64) string { return fmtMicros(s * 1e6) }

// precisionFor gives the decimals that show three significant digits of v
// (1 <= v < 1000).
func precisionFor(v float64) int {
	switch {
	case v < 10:
		return 2
	case v < 100:
		return 1
	default:
		return 0
	}
}

// groupDigits writes n with thousands separators: 1234567 -> 1,234,567.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
