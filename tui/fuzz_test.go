package tui

import (
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/pubsub/pubsub/stats"
)

// FuzzView feeds arbitrary snapshot payloads, as they would arrive on
// $SYS/stats/#, through ParseSnapshot into the model and renders it at an
// arbitrary size: nothing may panic, and no line may be wider than the
// terminal.
func FuzzView(f *testing.F) {
	f.Add(fixtureNodes[0].snapshotAt(1).Marshal(), fixtureNodes[1].snapshotAt(2).Marshal(), uint8(120), uint8(30))
	f.Add([]byte(`{"node":"a","time":"2025-06-01T12:00:00Z","messages_in":18446744073709551615,"connections":-9223372036854775808}`),
		[]byte(`{"node":"a","time":"2025-06-01T12:00:01Z","messages_in":0,"uptime_seconds":1e300}`), uint8(80), uint8(24))
	f.Add([]byte(`{"node":"東京-ノード-非常に長い名前です","time":"2025-06-01T12:00:00Z","cpu_percent":1e308}`),
		[]byte(`{"node":"b","time":"9999-12-31T23:59:59Z","latency_p99_us":1e308,"rss_bytes":18446744073709551615}`), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, first, second []byte, width, height uint8) {
		m := New(Options{Interval: time.Second, Server: "fuzz"})
		m = send(m, tea.WindowSizeMsg{Width: int(width), Height: int(height)})
		for i, payload := range [][]byte{first, second} {
			if s, err := stats.ParseSnapshot(payload); err == nil {
				m = send(m, SnapshotMsg(s))
			}
			m = send(m, TickMsg(t0.Add(time.Duration(i)*time.Second)))
		}
		m = send(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("s")}, tea.KeyMsg{Type: tea.KeyEnd})
		for i, line := range strings.Split(m.View(), "\n") {
			if w := ansi.StringWidth(line); w > int(width) && width > 0 {
				t.Fatalf("line %d is %d wide at width %d: %q", i, w, width, line)
			}
		}
		if _, err := m.Cluster().JSON(t0); err != nil {
			t.Fatalf("JSON: %v", err)
		}
	})
}
