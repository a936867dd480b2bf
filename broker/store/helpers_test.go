package store

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// epoch is the fake clock's start: a round millisecond well after 2018.
var epoch = time.UnixMilli(1_700_000_000_000)

// fakeClock is an injectable Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// damageLog counts error records, so tests can assert "logged once".
type damageLog struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *damageLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *damageLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *damageLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *damageLog) WithGroup(string) slog.Handler      { return h }

func (h *damageLog) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Message == msg {
			n++
		}
	}
	return n
}

// provider opens a store for the shared suite. reopen closes s and opens the
// same data again (memory: a fresh, empty store), to test persistence.
type provider struct {
	name       string
	persistent bool
	open       func(t testing.TB, opts Options) Store
}

func providers() []provider {
	return []provider{
		{name: "memory", open: func(t testing.TB, opts Options) Store {
			s, err := OpenMemory(opts)
			require.NoError(t, err)
			return s
		}},
		{name: "disk", persistent: true, open: func(t testing.TB, opts Options) Store {
			if opts.FS == nil {
				opts.FS = vfs.NewMem()
			}
			if opts.Dir == "" {
				opts.Dir = "/data"
			}
			s, err := OpenDisk(opts)
			require.NoError(t, err)
			return s
		}},
	}
}

// openWith opens p with opts and closes it when the test ends.
func openWith(t testing.TB, p provider, opts Options) Store {
	t.Helper()
	s := p.open(t, opts)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// msg builds a history message at ms with sequence seq on node 0.
func msg(ms int64, seq uint32, topic, payload string) Message {
	return Message{ID: MakeID(ms, 0, seq), Topic: topic, Payload: []byte(payload), QoS: 1}
}

func ids(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID.String()
	}
	return out
}

func payloads(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Payload)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}
