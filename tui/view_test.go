package tui

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
	"github.com/stretchr/testify/require"
)

func TestViewGolden(t *testing.T) {
	manyNodes := func() []fixtureNode {
		var nodes []fixtureNode
		for i := range 30 {
			n := fixtureNodes[i%2]
			n.name = fmt.Sprintf("node-%02d", i)
			n.msgsInPS = float64(100 * (i + 1))
			nodes = append(nodes, n)
		}
		return nodes
	}
	tests := []struct {
		name          string
		width, height int
		build         func(m Model) Model
	}{
		{"empty-80x24", 80, 24, func(m Model) Model {
			return send(New(Options{Server: "localhost:8080"}), tea.WindowSizeMsg{Width: 80, Height: 24}, TickMsg(t0))
		}},
		{"cluster-120x30", 120, 30, func(m Model) Model { return runFixture(m, fixtureNodes, 5) }},
		{"cluster-80x24", 80, 24, func(m Model) Model { return runFixture(m, fixtureNodes, 5) }},
		{"cluster-200x40", 200, 40, func(m Model) Model { return runFixture(m, fixtureNodes, 5) }},
		{"cluster-40x12", 40, 12, func(m Model) Model { return runFixture(m, fixtureNodes, 5) }},
		{"first-tick-no-rates-120x30", 120, 30, func(m Model) Model { return runFixture(m, fixtureNodes, 0) }},
		{"help-120x30", 120, 30, func(m Model) Model { return send(runFixture(m, fixtureNodes, 5), press("?")) }},
		{"sorted-msgs-in-reversed-120x30", 120, 30, func(m Model) Model {
			m = runFixture(m, fixtureNodes, 5)
			for range colMessagesIn {
				m = send(m, press("s"))
			}
			return send(m, press("r"))
		}},
		{"paused-120x30", 120, 30, func(m Model) Model {
			m = send(runFixture(m, fixtureNodes, 2), press("p"))
			// Ticks and snapshots while paused change nothing on screen
			// but the clock.
			for i := 3; i <= 5; i++ {
				for _, n := range fixtureNodes {
					m = send(m, SnapshotMsg(n.snapshotAt(i)))
				}
				m = send(m, TickMsg(t0.Add(time.Duration(i)*time.Second)))
			}
			return m
		}},
		{"disconnected-80x24", 80, 24, func(m Model) Model {
			m = runFixture(m, fixtureNodes, 5)
			return send(m, ConnStatusMsg{Err: errors.New("dial tcp 127.0.0.1:8080: connect: connection refused\x1b[2J")})
		}},
		{"scrolled-80x24", 80, 24, func(m Model) Model {
			return send(runFixture(m, manyNodes(), 2), press("j"), press("j"), press("down"), press("up"))
		}},
		{"scrolled-end-80x24", 80, 24, func(m Model) Model { return send(runFixture(m, manyNodes(), 2), press("end")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.build(sized(tt.width, tt.height))
			view := m.View()
			requireGolden(t, tt.name, view)
			requireFits(t, view, tt.width, tt.height)
			require.Equal(t, view, m.View(), "View is pure")
		})
	}
}

// requireFits checks the view neither wraps nor scrolls the terminal.
func requireFits(t *testing.T, view string, width, height int) {
	t.Helper()
	lines := strings.Split(view, "\n")
	require.LessOrEqual(t, len(lines), height, "view taller than the terminal")
	for i, line := range lines {
		require.LessOrEqual(t, ansi.StringWidth(line), width, "line %d wraps: %q", i, line)
	}
}

func TestViewFitsEverySize(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	for width := 1; width <= 220; width += 7 {
		for height := 5; height <= 60; height += 5 {
			for _, showAll := range []bool{false, true} {
				m := send(m, tea.WindowSizeMsg{Width: width, Height: height})
				m.help.ShowAll = showAll
				requireFits(t, m.View(), width, height)
			}
		}
	}
}

func TestViewDropsColumnsBeforeWrapping(t *testing.T) {
	m := runFixture(sized(200, 30), fixtureNodes, 5)
	header := func(width int) string {
		m := send(m, tea.WindowSizeMsg{Width: width, Height: 30})
		for _, line := range strings.Split(m.View(), "\n") {
			if strings.HasPrefix(line, "NODE") {
				return line
			}
		}
		t.Fatalf("no table header at width %d", width)
		return ""
	}
	wide, medium, narrow := header(200), header(80), header(30)
	for _, title := range []string{"ADDRESS", "GOROUTINES", "PEERS", "B/S IN", "MSG/S IN"} {
		require.Contains(t, wide, title)
	}
	require.NotContains(t, medium, "GOROUTINES", "lowest priority goes first")
	require.Contains(t, medium, "MSG/S IN")
	require.Contains(t, narrow, "MSG/S IN")
	require.NotContains(t, narrow, "P99")
}

func TestViewColour(t *testing.T) {
	defer lipgloss.SetColorProfile(termenv.Ascii)
	lipgloss.SetColorProfile(termenv.TrueColor)
	colour := regexp.MustCompile(`\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]|10[0-7])(;[0-9;]*)?m`)

	coloured := runFixture(sized(120, 30), fixtureNodes, 5).View()
	require.Regexp(t, colour, coloured, "colour when allowed")

	m := New(Options{Interval: time.Second, NoColor: true, Server: "localhost:8080"})
	m = send(m, tea.WindowSizeMsg{Width: 120, Height: 30}, ConnStatusMsg{Connected: true})
	plain := runFixture(m, fixtureNodes, 5).View()
	require.NotRegexp(t, colour, plain, "NO_COLOR: no colour sequences")
	require.Contains(t, plain, "\x1b[1m", "bold is still allowed")
	require.Equal(t, ansi.Strip(coloured), ansi.Strip(plain), "same text either way")
}

func TestViewSanitisesNetworkText(t *testing.T) {
	m := sized(120, 30)
	snap := fixtureNodes[0].snapshotAt(0)
	snap.Node = "evil\x1b]0;pwned\x07\u202e"
	snap.Address = "\x9b2J"
	m = send(m, SnapshotMsg(snap), TickMsg(t0), ConnStatusMsg{Err: errors.New("bad\r\nline")})
	view := m.View()
	require.NotContains(t, view, "\x1b")
	require.NotContains(t, view, "\x07")
	require.NotContains(t, view, "\u202e")
	require.NotContains(t, view, "\r")
	require.Contains(t, view, "evil\uFFFD]0;pwned\uFFFD\uFFFD")
}

func TestClusterText(t *testing.T) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	text := m.Cluster().Text(t0.Add(5*time.Second), 120)
	requireGolden(t, "once-120", text)
	for _, line := range strings.Split(text, "\n") {
		require.Equal(t, strings.TrimRight(line, " "), line)
		require.LessOrEqual(t, ansi.StringWidth(line), 120)
	}
	require.Equal(t, "nodes 0/0 up   conns 0   subs 0   slow consumers 0   dropped 0 (0/s)",
		strings.Split(NewCluster(0).Text(t0, 120), "\n")[0])
}

func BenchmarkView(b *testing.B) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	b.ReportAllocs()
	for b.Loop() {
		_ = m.View()
	}
}

func BenchmarkTick(b *testing.B) {
	m := runFixture(sized(120, 30), fixtureNodes, 5)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		next, _ := m.Update(TickMsg(t0.Add(time.Duration(i) * time.Second)))
		m = next.(Model)
	}
}
