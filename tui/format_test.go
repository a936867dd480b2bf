package tui

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func nan() float64 { return math.NaN() }

func TestFormatters(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"si zero", formatSI(0), "0"},
		{"si fraction", formatSI(0.25), "0.2"},
		{"si small", formatSI(9.96), "10.0"},
		{"si integer", formatSI(42), "42"},
		{"si hundreds", formatSI(999.4), "999"},
		{"si rounds up to k", formatSI(999.96), "1.0k"},
		{"si k", formatSI(12_345), "12.3k"},
		{"si M", formatSI(4_560_000), "4.6M"},
		{"si G", formatSI(7e9), "7.0G"},
		{"si huge", formatSI(3e21), "3e+21"},
		{"si negative", formatSI(-1500), "-1.5k"},
		{"si NaN", formatSI(math.NaN()), "-"},
		{"si Inf", formatSI(math.Inf(1)), "-"},
		{"count small", formatCount(99_999), "99999"},
		{"count large", formatCount(123_456), "123.5k"},
		{"count negative", formatCount(-3), "-3"},
		{"bytes", formatBytes(512), "512B"},
		{"bytes K", formatBytes(1536), "1.5K"},
		{"bytes M", formatBytes(180 << 20), "180.0M"},
		{"bytes max unit", formatBytes(math.MaxUint64), "16.0E"},
		{"bytes negative", formatBytes(-1), "-"},
		{"byte rate small", formatByteRate(0), "0B/s"},
		{"byte rate", formatByteRate(1 << 20), "1.0MB/s"},
		{"byte rate NaN", formatByteRate(math.NaN()), "-"},
		{"µs", formatMicros(850), "850µs"},
		{"µs rounds to ms", formatMicros(999.6), "1.0ms"},
		{"ms", formatMicros(12_500), "12.5ms"},
		{"ms large", formatMicros(250_000), "250ms"},
		{"s", formatMicros(1_200_000), "1.20s"},
		{"latency absurd", formatMicros(1e12), ">999s"},
		{"latency negative", formatMicros(-1), "-"},
		{"duration s", formatDuration(45.9), "45s"},
		{"duration m", formatDuration(725), "12m05s"},
		{"duration h", formatDuration(3*3600 + 4*60), "3h04m"},
		{"duration d", formatDuration(26 * 3600), "1d02h"},
		{"duration huge", formatDuration(1e12), ">999d"},
		{"duration NaN", formatDuration(math.NaN()), "-"},
		{"sanitize clean", sanitize("node-1 東京"), "node-1 東京"},
		{"sanitize controls", sanitize("a\x1b[2J\tb\u202e"), "a\uFFFD[2J\uFFFDb\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.got)
		})
	}
}

func TestFormattersFitTheirColumns(t *testing.T) {
	for _, v := range []float64{0, 0.5, 9.99, 999, 999.99, 12345.6, 99_999_999, 1e14, 9.9999e17, math.MaxFloat64} {
		require.LessOrEqual(t, len(formatSI(v)), 7, "formatSI(%g)", v)
		require.LessOrEqual(t, len(formatBytes(v)), 7, "formatBytes(%g)", v)
		require.LessOrEqual(t, len([]rune(formatMicros(v))), 7, "formatMicros(%g)", v)
		require.LessOrEqual(t, len(formatDuration(v)), 6, "formatDuration(%g)", v)
	}
}

func TestSparkline(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		width  int
		want   string
	}{
		{"empty", nil, 4, "    "},
		{"no width", []float64{1}, 0, ""},
		{"right aligned", []float64{0, 1}, 4, "  ▁█"},
		{"scaled to peak", []float64{0, 25, 50, 100}, 4, "▁▃▅█"},
		{"newest kept", []float64{100, 1, 2}, 2, "▅█"},
		{"all zero", []float64{0, 0}, 2, "▁▁"},
		{"NaN and Inf", []float64{math.NaN(), math.Inf(1), 10}, 3, "▁▁█"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sparkline(tt.values, tt.width)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.width, len([]rune(got)))
			require.False(t, strings.ContainsRune(got, '\n'))
		})
	}
}
