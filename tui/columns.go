package tui

import (
	"cmp"
	"slices"
	"strconv"
)

// column identifies a table column; the constants are in display order,
// which is also the order `s` cycles through.
type column int

const (
	colName column = iota
	colAddress
	colUptime
	colConnections
	colSubscriptions
	colMessagesIn
	colMessagesOut
	colBytesIn
	colBytesOut
	colLatency
	colCPU
	colRSS
	colGoroutines
	colPeers
	columnCount
)

// columnDef describes how a column is titled, sized, filled and sorted.
type columnDef struct {
	title string
	// width is the fixed width; 0 means sized to the content between
	// minWidth and maxWidth.
	width, minWidth, maxWidth int
	numeric                   bool // right-aligned, sorted largest first
	cell                      func(NodeRow) string
	less                      func(a, b NodeRow) int
}

// columns, indexed by column.
var columns = [columnCount]columnDef{
	colName: {title: "NODE", minWidth: 4, maxWidth: 24,
		cell: func(r NodeRow) string { return r.Node },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Node, b.Node) }},
	colAddress: {title: "ADDRESS", minWidth: 7, maxWidth: 24,
		cell: func(r NodeRow) string { return r.Address },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Address, b.Address) }},
	colUptime: {title: "UPTIME", width: 8, numeric: true,
		cell: func(r NodeRow) string {
			if !r.Up {
				return "down " + formatDuration(r.SilentFor)
			}
			return formatDuration(r.Uptime)
		},
		less: func(a, b NodeRow) int { return cmp.Compare(a.Uptime, b.Uptime) }},
	colConnections: {title: "CONNS", width: 7, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, formatCount(r.Connections)) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Connections, b.Connections) }},
	colSubscriptions: {title: "SUBS", width: 7, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, formatCount(r.Subscriptions)) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Subscriptions, b.Subscriptions) }},
	colMessagesIn: {title: "MSG/S IN", width: 9, numeric: true,
		cell: func(r NodeRow) string { return rateCell(r, r.MessagesInPS, formatSI) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.MessagesInPS, b.MessagesInPS) }},
	colMessagesOut: {title: "MSG/S OUT", width: 10, numeric: true,
		cell: func(r NodeRow) string { return rateCell(r, r.MessagesOutPS, formatSI) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.MessagesOutPS, b.MessagesOutPS) }},
	colBytesIn: {title: "B/S IN", width: 8, numeric: true,
		cell: func(r NodeRow) string { return rateCell(r, r.BytesInPS, formatBytes) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.BytesInPS, b.BytesInPS) }},
	colBytesOut: {title: "B/S OUT", width: 8, numeric: true,
		cell: func(r NodeRow) string { return rateCell(r, r.BytesOutPS, formatBytes) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.BytesOutPS, b.BytesOutPS) }},
	colLatency: {title: "P99", width: 7, numeric: true,
		cell: func(r NodeRow) string {
			if !r.Up || !r.HasLatency {
				return "-"
			}
			return formatMicros(r.LatencyP99)
		},
		less: func(a, b NodeRow) int { return cmp.Compare(a.LatencyP99, b.LatencyP99) }},
	colCPU: {title: "CPU%", width: 6, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, strconv.FormatFloat(r.CPUPercent, 'f', 1, 64)) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.CPUPercent, b.CPUPercent) }},
	colRSS: {title: "RSS", width: 7, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, formatBytes(float64(r.RSSBytes))) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.RSSBytes, b.RSSBytes) }},
	colGoroutines: {title: "GOROUTINES", width: 11, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, strconv.Itoa(r.Goroutines)) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Goroutines, b.Goroutines) }},
	colPeers: {title: "PEERS", width: 6, numeric: true,
		cell: func(r NodeRow) string { return upCell(r, strconv.FormatInt(r.Peers, 10)) },
		less: func(a, b NodeRow) int { return cmp.Compare(a.Peers, b.Peers) }},
}

// columnPriority is the order columns are kept in as the terminal narrows:
// the first ones survive longest. What is moving (rates, latency) matters
// more in a live monitor than what is static (address, goroutines).
var columnPriority = [columnCount]column{
	colName, colMessagesIn, colMessagesOut, colConnections, colSubscriptions,
	colLatency, colCPU, colRSS, colUptime, colBytesIn, colBytesOut,
	colAddress, colPeers, colGoroutines,
}

// rateCell shows a rate, or "-" while it is unknown (first snapshot, down).
func rateCell(r NodeRow, v float64, format func(float64) string) string {
	if !r.Up || !r.HasRates {
		return "-"
	}
	return format(v)
}

// upCell shows a figure only for a node that is up: a down node's last
// figures are history, not the present.
func upCell(r NodeRow, s string) string {
	if !r.Up {
		return "-"
	}
	return s
}

// sortRows orders rows by col: names ascending, figures largest first,
// reverse flips that. Nodes that are down always come last, and ties go by
// name so the order is stable from one refresh to the next.
func sortRows(rows []NodeRow, col column, reverse bool) {
	def := columns[col]
	slices.SortStableFunc(rows, func(a, b NodeRow) int {
		if a.Up != b.Up {
			if a.Up {
				return -1
			}
			return 1
		}
		c := def.less(a, b)
		if def.numeric {
			c = -c
		}
		if reverse {
			c = -c
		}
		if c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
}
