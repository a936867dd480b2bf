package tui

import (
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/help"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/pubsub/pubsub/stats"
)

// historyLen is how many refreshes of cluster msgs/s the sparkline keeps:
// wider than any terminal, so the line always fills the width it has.
const historyLen = 512

// Options configure the monitor.
type Options struct {
	// Interval is how often nodes publish snapshots, and so how often the
	// screen refreshes and after how much silence (3 intervals) a node is
	// shown as down. Default 1s.
	Interval time.Duration
	// NoColor renders without colours (NO_COLOR set, --no-color, or not a
	// terminal). Bold and faint text remain, as NO_COLOR allows.
	NoColor bool
	// Server is the address the monitor is connected to, for the header.
	Server string
}

// SnapshotMsg delivers a snapshot received on $SYS/stats/<node>. The CLI
// parses payloads with stats.ParseSnapshot and sends the result with
// tea.Program.Send.
type SnapshotMsg stats.Snapshot

// TickMsg is a clock tick. The model never reads the clock itself: Init
// sends one tick at once and every tick schedules the next one an Interval
// later, so tests drive time by sending ticks by hand.
type TickMsg time.Time

// ConnStatusMsg reports the state of the monitor's connection to Server.
type ConnStatusMsg struct {
	Connected bool
	Err       error // why the connection was lost or refused, if known
}

// Model is the bubbletea model of `pubsub top`. It implements tea.Model.
// Snapshots accumulate in a Cluster as they arrive; the table, totals and
// sparkline are recomputed on each tick (unless paused), so the screen
// moves at a steady cadence however the snapshots are spread.
type Model struct {
	opts    Options
	cluster *Cluster
	keys    keyMap
	help    help.Model
	styles  styles

	width, height int
	now           time.Time // time of the latest tick

	paused  bool
	sortBy  column
	reverse bool
	offset  int // first table row shown

	conn connState
	stop *stopper

	// Computed at the latest refresh.
	rows    []NodeRow // sorted for display
	totals  Totals
	history []float64 // cluster messages in per second, oldest first
}

// connState is what the header says about the connection.
type connState struct {
	known     bool // a ConnStatusMsg has arrived
	connected bool
	err       string
}

// New returns a model with no nodes yet, sorted by node name.
func New(opts Options) Model {
	if opts.Interval <= 0 {
		opts.Interval = defaultInterval
	}
	m := Model{
		opts:    opts,
		cluster: NewCluster(opts.Interval),
		keys:    newKeyMap(),
		help:    help.New(),
		styles:  newStyles(opts.NoColor),
		width:   80,
		height:  24,
		sortBy:  colName,
		stop:    &stopper{done: make(chan struct{})},
	}
	if opts.NoColor {
		m.help.Styles = help.Styles{}
		m.help.Styles.ShortKey = lipgloss.NewStyle().Bold(true)
		m.help.Styles.FullKey = lipgloss.NewStyle().Bold(true)
	}
	m.help.Width = m.width
	return m
}

// Cluster returns the cluster the model aggregates, for a JSON dump on exit.
func (m Model) Cluster() *Cluster { return m.cluster }

// Init implements tea.Model: one tick now (so the first screen is drawn
// without waiting an interval) and the window title.
func (m Model) Init() tea.Cmd {
	return tea.Batch(
		func() tea.Msg { return TickMsg(time.Now()) },
		tea.SetWindowTitle("pubsub top"),
	)
}

// scheduleTick asks for the next tick an Interval from now. Unlike
// tea.Tick, the wait ends when the model quits, so no timer goroutine
// outlives the program.
func (m Model) scheduleTick() tea.Cmd {
	interval, stop := m.opts.Interval, m.stop.done
	return func() tea.Msg {
		timer := time.NewTimer(interval)
		defer timer.Stop()
		select {
		case t := <-timer.C:
			return TickMsg(t)
		case <-stop:
			return nil
		}
	}
}

// stopper ends pending tick commands; shared by every copy of a model.
type stopper struct {
	once sync.Once
	done chan struct{}
}

// Close ends the model's pending tick, if any. The model calls it itself
// when it quits; call it when a program running the model is ended from
// outside (tea.Program.Kill, a cancelled context). It is idempotent.
func (m Model) Close() {
	m.stop.once.Do(func() { close(m.stop.done) })
}

// refresh recomputes the table and totals from the cluster as of m.now.
func (m *Model) refresh() {
	rows := m.cluster.Rows(m.now)
	m.totals = totalsOf(rows)
	sortRows(rows, m.sortBy, m.reverse)
	m.rows = rows
	m.offset = m.clampOffset(m.offset)
}

// record appends the current cluster rate to the sparkline history; called
// once per tick so the line's x axis is time.
func (m *Model) record() {
	if len(m.history) == historyLen {
		// Shift into a new array: earlier models share the old one.
		m.history = append(make([]float64, 0, historyLen), m.history[1:]...)
	}
	m.history = append(m.history, m.totals.MessagesInPS)
}

// resort re-sorts the displayed rows after a sort key change, on a copy so
// that earlier models (bubbletea passes models by value) are unaffected.
func (m *Model) resort() {
	rows := make([]NodeRow, len(m.rows))
	copy(rows, m.rows)
	sortRows(rows, m.sortBy, m.reverse)
	m.rows = rows
}

// clampOffset keeps the scroll offset within the rows.
func (m Model) clampOffset(offset int) int {
	visible := m.layout().tableRows
	if len(m.rows) > visible && visible > 1 {
		visible-- // the last line becomes the scroll indicator
	}
	return max(0, min(offset, len(m.rows)-visible))
}
