package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

const (
	// columnGap is the space between table columns.
	columnGap = 1
	// nameMinWidth is how far a long node name is truncated to make room
	// for more columns before columns are dropped instead.
	nameMinWidth = 16
)

// styles are the few looks the screen uses. With NoColor they carry only
// bold and faint, which NO_COLOR permits.
type styles struct {
	title, label, value, good, bad, paused, header, sorted, down, spark, dim lipgloss.Style
}

func newStyles(noColor bool) styles {
	plain := lipgloss.NewStyle()
	s := styles{
		title:  plain.Bold(true),
		label:  plain.Faint(true),
		value:  plain.Bold(true),
		good:   plain,
		bad:    plain.Bold(true),
		paused: plain.Bold(true).Reverse(true),
		header: plain.Bold(true),
		sorted: plain.Bold(true).Underline(true),
		down:   plain.Faint(true),
		spark:  plain,
		dim:    plain.Faint(true),
	}
	if noColor {
		return s
	}
	// The 16 basic colours follow the user's terminal theme, and need no
	// background detection.
	s.title = s.title.Foreground(lipgloss.Color("6"))
	s.good = s.good.Foreground(lipgloss.Color("2"))
	s.bad = s.bad.Foreground(lipgloss.Color("1"))
	s.paused = s.paused.Foreground(lipgloss.Color("3"))
	s.sorted = s.sorted.Foreground(lipgloss.Color("6"))
	s.down = s.down.Foreground(lipgloss.Color("1"))
	s.spark = s.spark.Foreground(lipgloss.Color("6"))
	return s
}

// screenLayout is how the height is shared out.
type screenLayout struct {
	spark     bool // the sparkline and the blank line under it are shown
	footer    bool // the help is shown
	tableRows int  // lines for table rows, header excluded
}

// layout fits the screen into m.height, giving up the sparkline, then the
// help, before the table loses its last row.
func (m Model) layout() screenLayout {
	const summaryLines, sparkLines, tableHeader = 3, 2, 1
	footerLines := lipgloss.Height(m.help.View(m.keys))
	l := screenLayout{spark: true, footer: true}
	l.tableRows = m.height - summaryLines - sparkLines - tableHeader - footerLines
	if l.tableRows < 3 {
		l.spark = false
		l.tableRows += sparkLines
	}
	if l.tableRows < 1 {
		l.footer = false
		l.tableRows += footerLines
	}
	l.tableRows = max(l.tableRows, 1)
	return l
}

// View implements tea.Model. It is a pure function of the model: the same
// model at the same size renders the same text.
func (m Model) View() string {
	l := m.layout()
	lines := []string{m.titleLine(), m.totalsLine(), m.ratesLine()}
	if l.spark {
		lines = append(lines, m.sparkLine(), "")
	}
	lines = append(lines, m.tableLines(l.tableRows)...)
	if l.footer {
		lines = append(lines, strings.Split(m.help.View(m.keys), "\n")...)
	}
	for i, line := range lines {
		lines[i] = ansi.Truncate(line, m.width, "…")
	}
	return strings.Join(lines, "\n")
}

// titleLine: what is monitored and how it is going, left; when and how
// often, right.
func (m Model) titleLine() string {
	st := m.styles
	left := st.title.Render("pubsub top")
	if m.opts.Server != "" {
		left += "  " + sanitize(m.opts.Server)
	}
	switch {
	case !m.conn.known:
		left += "  " + st.dim.Render("connecting…")
	case m.conn.connected:
		left += "  " + st.good.Render("● connected")
	default:
		text := "✕ disconnected"
		if m.conn.err != "" {
			text += ": " + m.conn.err
		}
		left += "  " + st.bad.Render(text)
	}

	clock := "--:--:--"
	if !m.now.IsZero() {
		clock = m.now.Format(time.TimeOnly)
	}
	right := clock + st.dim.Render(" · every "+m.opts.Interval.String())
	if m.paused {
		right = st.paused.Render(" PAUSED ") + " " + right
	}
	return spread(left, right, m.width)
}

// spread puts left and right on one line of width cells, dropping right
// when both do not fit.
func spread(left, right string, width int) string {
	gap := width - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 2 {
		return left
	}
	return left + strings.Repeat(" ", gap) + right
}

func (m Model) totalsLine() string {
	st, t := m.styles, m.totals
	nodes := fmt.Sprintf("%d/%d up", t.NodesUp, t.Nodes)
	nodeStyle := st.value
	if t.NodesUp < t.Nodes {
		nodeStyle = st.bad
	}
	parts := []string{
		st.label.Render("nodes ") + nodeStyle.Render(nodes),
		st.label.Render("conns ") + st.value.Render(formatCount(t.Connections)),
		st.label.Render("subs ") + st.value.Render(formatCount(t.Subscriptions)),
		st.label.Render("slow consumers ") + st.value.Render(formatSI(float64(t.SlowConsumers))),
		st.label.Render("dropped ") + st.value.Render(formatSI(float64(t.Dropped))) +
			st.label.Render(" ("+formatSI(t.DroppedPS)+"/s)"),
	}
	return strings.Join(parts, "   ")
}

func (m Model) ratesLine() string {
	st, t := m.styles, m.totals
	side := func(label string, msgs, bytes float64) string {
		return st.label.Render(label) + st.value.Render(formatSI(msgs)) + st.label.Render(" msg/s  ") +
			st.value.Render(formatByteRate(bytes))
	}
	return side("in  ", t.MessagesInPS, t.BytesInPS) + "     " + side("out  ", t.MessagesOutPS, t.BytesOutPS)
}

// sparkLine draws cluster msgs/s in over the last refreshes, as wide as the
// screen allows, with the peak it is scaled to.
func (m Model) sparkLine() string {
	st := m.styles
	label := st.label.Render("msg/s in ")
	width := m.width - lipgloss.Width(label)
	visible := m.history
	peak := 0.0
	for pass := 0; pass < 2; pass++ {
		// The suffix width depends on the peak of what is visible, which
		// depends on the width left by the suffix: two passes settle it.
		suffix := " peak " + formatSI(peak)
		n := max(0, width-lipgloss.Width(suffix))
		visible = m.history[max(0, len(m.history)-n):]
		peak = 0
		for _, v := range visible {
			peak = max(peak, finite(v))
		}
	}
	suffix := st.label.Render(" peak ") + st.value.Render(formatSI(peak))
	n := max(0, width-lipgloss.Width(suffix))
	return label + st.spark.Render(sparkline(visible, n)) + suffix
}

// fittedColumn is a column chosen for the current width.
type fittedColumn struct {
	col   column
	width int
}

// fitColumns picks the columns that fit in width, in priority order, and
// returns them in display order. Columns go before a line would wrap; the
// node name always stays, truncated if it must.
func fitColumns(rows []NodeRow, width int) []fittedColumn {
	var chosen [columnCount]int // width per column, 0 = dropped
	nameFloor := min(columnWidth(colName, rows), nameMinWidth)
	used := 0
	for _, col := range columnPriority {
		w := columnWidth(col, rows)
		need := w
		if used > 0 {
			need += columnGap
		}
		if col == colName && need > width {
			chosen[col] = max(1, width)
			break
		}
		if over := used + need - width; over > 0 {
			// Long names give way to figures, down to nameMinWidth.
			if chosen[colName]-over < nameFloor {
				break
			}
			chosen[colName] -= over
			used -= over
		}
		chosen[col] = w
		used += need
	}
	var fitted []fittedColumn
	for col := range columnCount {
		if chosen[col] > 0 {
			fitted = append(fitted, fittedColumn{col: col, width: chosen[col]})
		}
	}
	return fitted
}

// columnWidth is a column's width: fixed, or sized to its cells within
// bounds. There is always room for the title and a sort arrow.
func columnWidth(col column, rows []NodeRow) int {
	def := columns[col]
	titleWidth := lipgloss.Width(def.title) + 1
	if def.width > 0 {
		return max(def.width, titleWidth)
	}
	w := def.minWidth
	for _, r := range rows {
		w = max(w, ansi.StringWidth(sanitize(def.cell(r))))
	}
	return max(min(w, def.maxWidth), titleWidth)
}

// tableLines renders the header and exactly bodyRows lines of rows,
// scrolled to m.offset.
func (m Model) tableLines(bodyRows int) []string {
	st := m.styles
	fitted := fitColumns(m.rows, m.width)

	cells := make([]string, len(fitted))
	for i, fc := range fitted {
		def := columns[fc.col]
		title := def.title
		style := st.header
		if fc.col == m.sortBy {
			ascending := !def.numeric != m.reverse
			if ascending {
				title += "▲"
			} else {
				title += "▼"
			}
			style = st.sorted
		}
		cells[i] = style.Render(align(title, fc.width, def.numeric))
	}
	lines := []string{strings.Join(cells, strings.Repeat(" ", columnGap))}

	if len(m.rows) == 0 {
		lines = append(lines, st.dim.Render("waiting for snapshots on $SYS/stats/# …"))
		return padLines(lines, bodyRows+1)
	}

	shown := m.rows
	overflow := len(m.rows) > bodyRows
	if overflow {
		visible := bodyRows
		if visible > 1 {
			visible-- // the last line is the scroll indicator
		}
		offset := m.clampOffset(m.offset)
		shown = m.rows[offset:min(len(m.rows), offset+visible)]
	}
	for _, r := range shown {
		for i, fc := range fitted {
			def := columns[fc.col]
			cell := align(sanitize(def.cell(r)), fc.width, def.numeric)
			if !r.Up {
				if fc.col == colUptime {
					cell = st.bad.Render(cell)
				} else {
					cell = st.down.Render(cell)
				}
			}
			cells[i] = cell
		}
		lines = append(lines, strings.Join(cells, strings.Repeat(" ", columnGap)))
	}
	if overflow && bodyRows > 1 {
		first := m.clampOffset(m.offset) + 1
		lines = append(lines, st.dim.Render(fmt.Sprintf("nodes %d–%d of %d · ↑/↓ scroll", first, first+len(shown)-1, len(m.rows))))
	}
	return padLines(lines, bodyRows+1)
}

// align pads or truncates s to exactly width cells, right-aligned when
// numeric.
func align(s string, width int, right bool) string {
	s = truncateText(s, width)
	pad := strings.Repeat(" ", max(0, width-ansi.StringWidth(s)))
	if right {
		return pad + s
	}
	return s + pad
}

// truncateText cuts s to width cells, marking the cut with an ellipsis.
func truncateText(s string, width int) string {
	if ansi.StringWidth(s) <= width {
		return s
	}
	return ansi.Truncate(s, width, "…")
}

// padLines extends lines with empty ones to n, so the footer stays at the
// bottom of the screen.
func padLines(lines []string, n int) []string {
	for len(lines) < n {
		lines = append(lines, "")
	}
	return lines
}

// Text renders the cluster as of now as plain text, without colour or
// styling: the totals and one line per node, for `pubsub top --once`.
func (c *Cluster) Text(now time.Time, width int) string {
	m := New(Options{Interval: c.interval})
	m.styles = styles{}
	m.cluster = c
	m.now = now
	m.width = width
	m.refresh()
	lines := []string{m.totalsLine(), m.ratesLine(), ""}
	lines = append(lines, m.tableLines(len(m.rows))...)
	for i, line := range lines {
		lines[i] = strings.TrimRight(ansi.Truncate(line, width, "…"), " ")
	}
	return strings.Join(lines, "\n") + "\n"
}
