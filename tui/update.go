package tui

import (
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/pubsub/pubsub/stats"
)

// maxErrorLen bounds the connection error shown in the header.
const maxErrorLen = 200

// Update implements tea.Model. It never blocks and never reads the clock:
// time comes from TickMsg, data from SnapshotMsg.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = max(msg.Width, 0), max(msg.Height, 0)
		m.help.Width = m.width
		m.offset = m.clampOffset(m.offset)
		return m, nil

	case tea.KeyMsg:
		return m.updateKey(msg)

	case TickMsg:
		m.now = time.Time(msg)
		if !m.paused {
			m.refresh()
			m.record()
		}
		return m, m.scheduleTick()

	case SnapshotMsg:
		// A snapshot before the first tick is stamped with its own time;
		// the first tick follows at once (Init), so this only matters for
		// the down test of that one snapshot.
		received := m.now
		if received.IsZero() {
			received = msg.Time
		}
		m.cluster.Add(stats.Snapshot(msg), received)
		return m, nil

	case ConnStatusMsg:
		m.conn = connState{known: true, connected: msg.Connected}
		if msg.Err != nil {
			m.conn.err = truncateText(sanitize(msg.Err.Error()), maxErrorLen)
		}
		return m, nil
	}
	return m, nil
}

func (m Model) updateKey(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	// bubbletea delivers letters typed in quick succession (or pasted, or
	// key repeat) as one message with several runes; "ss" must cycle the
	// sort twice, not be ignored. Handle each rune as its own key press.
	if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
		var model tea.Model = m
		var cmds []tea.Cmd
		for _, r := range msg.Runes {
			var cmd tea.Cmd
			model, cmd = model.(Model).updateKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt})
			cmds = append(cmds, cmd)
		}
		return model, tea.Batch(cmds...)
	}
	pageRows := max(1, m.layout().tableRows-1)
	switch {
	case key.Matches(msg, m.keys.Quit):
		m.Close()
		return m, tea.Quit
	case key.Matches(msg, m.keys.Sort):
		m.sortBy = (m.sortBy + 1) % columnCount
		m.reverse = false
		m.resort()
	case key.Matches(msg, m.keys.Reverse):
		m.reverse = !m.reverse
		m.resort()
	case key.Matches(msg, m.keys.Pause):
		m.paused = !m.paused
		if !m.paused && !m.now.IsZero() {
			m.refresh() // show the present at once, not at the next tick
		}
	case key.Matches(msg, m.keys.Help):
		m.help.ShowAll = !m.help.ShowAll
	case key.Matches(msg, m.keys.Up):
		m.offset--
	case key.Matches(msg, m.keys.Down):
		m.offset++
	case key.Matches(msg, m.keys.PageUp):
		m.offset -= pageRows
	case key.Matches(msg, m.keys.PageDown):
		m.offset += pageRows
	case key.Matches(msg, m.keys.Top):
		m.offset = 0
	case key.Matches(msg, m.keys.Bottom):
		m.offset = len(m.rows)
	default:
		return m, nil
	}
	m.offset = m.clampOffset(m.offset)
	return m, nil
}
