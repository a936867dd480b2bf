package tui

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/stretchr/testify/require"
)

func TestTickCarriesTheTime(t *testing.T) {
	m := sized(120, 30)
	next, cmd := m.Update(TickMsg(t0.Add(42 * time.Second)))
	require.Equal(t, t0.Add(42*time.Second), next.(Model).now)
	require.NotNil(t, cmd, "each tick schedules the next")
	require.Contains(t, next.View(), "12:00:42")
}

func TestInitTicksAtOnce(t *testing.T) {
	cmd := New(Options{}).Init()
	require.NotNil(t, cmd)
	batch, ok := cmd().(tea.BatchMsg)
	require.True(t, ok)
	var ticked bool
	for _, c := range batch {
		if _, ok := c().(TickMsg); ok {
			ticked = true
		}
	}
	require.True(t, ticked, "Init must produce an immediate TickMsg")
}

func TestQuitKeys(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		t.Run(k, func(t *testing.T) {
			_, cmd := sized(80, 24).Update(press(k))
			require.NotNil(t, cmd)
			require.IsType(t, tea.QuitMsg{}, cmd())
		})
	}
	_, cmd := sized(80, 24).Update(press("x"))
	require.Nil(t, cmd, "unbound keys do nothing")
}

func TestSortKeys(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	names := func(m Model) []string {
		var out []string
		for _, r := range m.rows {
			out = append(out, r.Node)
		}
		return out
	}
	require.Equal(t, colName, m.sortBy)
	require.Equal(t, []string{"alpha", "bravo", "charlie-with-a-very-long-node-name", "delta"}, names(m))

	reversed := send(m, press("r"))
	require.Equal(t, []string{"charlie-with-a-very-long-node-name", "bravo", "alpha", "delta"}, names(reversed),
		"down nodes stay last")
	require.Equal(t, []string{"alpha", "bravo", "charlie-with-a-very-long-node-name", "delta"}, names(m),
		"the earlier model is unchanged")

	for range colConnections {
		m = send(m, press("s"))
	}
	require.Equal(t, colConnections, m.sortBy)
	require.Equal(t, []string{"alpha", "bravo", "charlie-with-a-very-long-node-name", "delta"}, names(m), "largest first")

	for col := colConnections; col < columnCount; col++ {
		m = send(m, press("s"))
	}
	require.Equal(t, colName, m.sortBy, "s cycles back to the first column")
	require.False(t, m.reverse, "a new sort column starts in its natural order")
}

func TestPause(t *testing.T) {
	m := send(runFixture(sized(120, 30), fixtureNodes, 2), press("p"))
	frozen := m.rows
	for _, n := range fixtureNodes {
		m = send(m, SnapshotMsg(n.snapshotAt(3)))
	}
	m = send(m, TickMsg(t0.Add(3*time.Second)))
	require.Equal(t, frozen, m.rows, "paused: ticks do not refresh")
	require.Contains(t, m.View(), "PAUSED")
	historyLenBefore := len(m.history)

	m = send(m, press("p"))
	require.NotEqual(t, frozen, m.rows, "unpausing shows the present at once")
	require.NotContains(t, m.View(), "PAUSED")
	require.Len(t, m.history, historyLenBefore, "the sparkline advances only on ticks")
}

func TestHelpToggle(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	require.NotContains(t, m.View(), "scroll up")
	m = send(m, press("?"))
	require.Contains(t, m.View(), "scroll up")
	m = send(m, press("?"))
	require.NotContains(t, m.View(), "scroll up")
}

func TestConnStatus(t *testing.T) {
	m := sized(120, 30)
	m = send(m, ConnStatusMsg{Connected: false, Err: errors.New(strings.Repeat("x", 1000))})
	require.Contains(t, m.View(), "disconnected: xxx")
	require.LessOrEqual(t, len(m.conn.err), maxErrorLen+len("…"))
	m = send(m, ConnStatusMsg{Connected: true})
	require.Contains(t, m.View(), "● connected")
}

func TestSnapshotBeforeFirstTick(t *testing.T) {
	m := New(Options{Interval: time.Second})
	m = send(m, SnapshotMsg(fixtureNodes[0].snapshotAt(0)), TickMsg(t0))
	require.Len(t, m.rows, 1)
	require.True(t, m.rows[0].Up, "stamped with its own time, not the zero time")
}

func TestHistoryIsBounded(t *testing.T) {
	m := sized(80, 24)
	for i := range historyLen + 10 {
		m = send(m, TickMsg(t0.Add(time.Duration(i)*time.Second)))
	}
	require.Len(t, m.history, historyLen)
}

// TestProgram runs the model in a real bubbletea program with scripted
// input, as `pubsub top` does, and checks it exits on q.
func TestProgram(t *testing.T) {
	input, typing := io.Pipe()
	var output strings.Builder
	p := tea.NewProgram(New(Options{Interval: time.Hour, Server: "test"}),
		tea.WithInput(input), tea.WithOutput(&output), tea.WithoutSignalHandler())
	done := make(chan error, 1)
	var final tea.Model
	go func() {
		var err error
		final, err = p.Run()
		done <- err
	}()
	p.Send(SnapshotMsg(fixtureNodes[0].snapshotAt(0)))
	p.Send(TickMsg(t0))
	_, err := typing.Write([]byte("q"))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Fatal("program did not quit on q")
	}
	_ = typing.Close()
	require.Equal(t, 1, final.(Model).Cluster().Len())
}

// TestBatchedRunes: letters typed quickly arrive as one message ("ss"); each
// counts as a key press.
func TestBatchedRunes(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 2)
	one := send(send(m, press("s")), press("s"))
	both := send(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("ss")})
	require.Equal(t, one.sortBy, both.sortBy)
	require.NotEqual(t, m.sortBy, both.sortBy)
	sr := send(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("sr")})
	require.True(t, sr.reverse)
}
