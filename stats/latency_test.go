package stats

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyBucketsAreContiguous(t *testing.T) {
	var prevHi uint64
	for i := 0; i < latencyBuckets-1; i++ {
		lo, hi := latencyBucketBounds(i)
		require.Equal(t, prevHi, lo, "bucket %d must start where %d ends", i, i-1)
		require.Greater(t, hi, lo)
		require.Equal(t, i, latencyBucket(lo), "lower bound of %d", i)
		require.Equal(t, i, latencyBucket(hi-1), "last value of %d", i)
		prevHi = hi
	}
	lo, _ := latencyBucketBounds(latencyBuckets - 1)
	require.Equal(t, prevHi, lo)
	require.Equal(t, latencyBuckets-1, latencyBucket(math.MaxUint64))
}

func TestLatencyBucketError(t *testing.T) {
	// Across the documented range every value is reported within 1/32 of
	// itself by its bucket's midpoint.
	for v := uint64(1 << latencyMinShift); v <= uint64(10*time.Second); v = v*17/16 + 1 {
		lo, hi := latencyBucketBounds(latencyBucket(v))
		mid := float64(lo + (hi-lo)/2)
		require.InEpsilon(t, float64(v), mid, 1.0/32, "value %d", v)
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name    string
		observe map[time.Duration]uint64
		q       float64
		want    time.Duration // 0 means exactly zero expected
	}{
		{"empty", nil, 0.99, 0},
		{"single", map[time.Duration]uint64{time.Millisecond: 1}, 0.5, time.Millisecond},
		{"median of two groups", map[time.Duration]uint64{time.Millisecond: 51, 100 * time.Millisecond: 49}, 0.5, time.Millisecond},
		{"p99 tail", map[time.Duration]uint64{time.Millisecond: 98, 100 * time.Millisecond: 2}, 0.99, 100 * time.Millisecond},
		{"p99 just inside", map[time.Duration]uint64{time.Millisecond: 99, 100 * time.Millisecond: 1}, 0.99, time.Millisecond},
		{"p999 one outlier in 1000", map[time.Duration]uint64{time.Millisecond: 999, 5 * time.Second: 1}, 0.999, time.Millisecond},
		{"p999 two outliers in 1000", map[time.Duration]uint64{time.Millisecond: 998, 5 * time.Second: 2}, 0.999, 5 * time.Second},
		{"sub-microsecond", map[time.Duration]uint64{100 * time.Nanosecond: 10}, 0.5, 512 * time.Nanosecond},
		{"overflow", map[time.Duration]uint64{time.Minute: 3}, 0.5, 1 << (latencyMaxShift + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for d, k := range tt.observe {
				for i := uint64(0); i < k; i++ {
					h.observe(d)
				}
			}
			var counts [latencyBuckets]uint64
			h.load(&counts)
			got := percentile(&counts, tt.q)
			if tt.want == 0 {
				require.Zero(t, got)
				return
			}
			require.InEpsilon(t, float64(tt.want)/1e3, got, 1.0/32)
		})
	}
}

func TestHistogramNegativeAndSum(t *testing.T) {
	var h histogram
	h.observe(-time.Second) // clock skew between nodes: counted as zero
	h.observe(3 * time.Microsecond)
	var counts [latencyBuckets]uint64
	count, sum := h.load(&counts)
	require.Equal(t, uint64(2), count)
	require.InDelta(t, 3.0, sum, 1e-9)
	require.Equal(t, uint64(1), counts[0])
}
