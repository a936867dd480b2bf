package tui

import (
	"math"
	"strconv"
	"strings"
	"unicode"
)

// formatSI writes a rate or count in at most 6 cells: 0.5, 42, 12.3k, 4.5M.
func formatSI(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	if v < 0 {
		return "-" + formatSI(-v)
	}
	units := []struct {
		scale  float64
		suffix string
	}{{1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}}
	if v >= 999.95e15 {
		return strconv.FormatFloat(v, 'e', 0, 64)
	}
	for i, u := range units {
		// Switch unit where the smaller one would round up to 1000: 999.5
		// for plain numbers, 999.95 for scaled ones (one decimal).
		threshold := u.scale * 0.99995
		if i == len(units)-1 {
			threshold = 999.5
		}
		if v >= threshold {
			return strconv.FormatFloat(v/u.scale, 'f', 1, 64) + u.suffix
		}
	}
	if v >= 10 || v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// formatCount writes a gauge exactly while it fits in 5 digits, then in SI.
func formatCount(v int64) string {
	if v > -100000 && v < 100000 {
		return strconv.FormatInt(v, 10)
	}
	return formatSI(float64(v))
}

// formatBytes writes a size in binary units, as top and free do: 512B,
// 1.5K, 123.4M, 2.0G.
func formatBytes(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return "-"
	}
	const suffixes = "KMGTPE"
	if v < 1024 {
		return strconv.FormatFloat(v, 'f', 0, 64) + "B"
	}
	for i := range len(suffixes) {
		v /= 1024
		if i == len(suffixes)-1 && v >= 999.95 {
			return ">999E"
		}
		if v < 1024 || i == len(suffixes)-1 {
			return strconv.FormatFloat(v, 'f', 1, 64) + suffixes[i:i+1]
		}
	}
	return "-" // unreachable
}

// formatByteRate writes bytes per second: 512B/s, 1.8MB/s.
func formatByteRate(v float64) string {
	s := formatBytes(v)
	if s == "-" {
		return s
	}
	if strings.HasSuffix(s, "B") {
		return s + "/s"
	}
	return s + "B/s"
}

// formatMicros writes a latency given in microseconds: 250µs, 12.5ms, 1.20s.
func formatMicros(us float64) string {
	switch {
	case math.IsNaN(us) || math.IsInf(us, 0) || us < 0:
		return "-"
	case us < 999.5:
		return strconv.FormatFloat(us, 'f', 0, 64) + "µs"
	case us < 99_950:
		return strconv.FormatFloat(us/1e3, 'f', 1, 64) + "ms"
	case us < 999_500:
		return strconv.FormatFloat(us/1e3, 'f', 0, 64) + "ms"
	case us < 1e9:
		return strconv.FormatFloat(us/1e6, 'f', 2, 64) + "s"
	default:
		return ">999s"
	}
}

// formatDuration writes a duration given in seconds in at most 6 cells,
// with the two most significant units: 45s, 12m05s, 3h04m, 2d03h.
func formatDuration(seconds float64) string {
	if math.IsNaN(seconds) || seconds < 0 {
		return "-"
	}
	if seconds >= 1000*86400 {
		return ">999d"
	}
	s := int64(seconds)
	pad := func(v int64) string {
		if v < 10 {
			return "0" + strconv.FormatInt(v, 10)
		}
		return strconv.FormatInt(v, 10)
	}
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + "m" + pad(s%60) + "s"
	case s < 86400:
		return strconv.FormatInt(s/3600, 10) + "h" + pad(s%3600/60) + "m"
	default:
		return strconv.FormatInt(s/86400, 10) + "d" + pad(s%86400/3600) + "h"
	}
}

// sanitize makes text from the network safe to print on a terminal: any
// control or formatting character (which could move the cursor or reorder
// text) becomes U+FFFD. stats.ParseSnapshot refuses such snapshots already;
// this also covers error strings and snapshots built in-process.
func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return unicode.ReplacementChar
		}
		return r
	}, s)
}

// sparkLevels are the eight block heights of a sparkline.
var sparkLevels = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the last width values, scaled to the largest of them,
// right-aligned so the newest value is at the right edge. Columns without
// data yet are blank; a zero value is the lowest block.
func sparkline(values []float64, width int) string {
	if width <= 0 {
		return ""
	}
	if len(values) > width {
		values = values[len(values)-width:]
	}
	peak := 0.0
	for _, v := range values {
		if v > peak && !math.IsInf(v, 0) { // NaN compares false: skipped
			peak = v
		}
	}
	var b strings.Builder
	b.Grow(width * 3)
	b.WriteString(strings.Repeat(" ", width-len(values)))
	for _, v := range values {
		level := 0
		if peak > 0 && v > 0 && v <= peak {
			level = int(math.Ceil(v / peak * float64(len(sparkLevels)-1)))
			level = max(0, min(level, len(sparkLevels)-1))
		}
		b.WriteRune(sparkLevels[level])
	}
	return b.String()
}
