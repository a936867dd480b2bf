package stats

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is log-linear (the HdrHistogram layout): each power
// of two between latencyMinShift and latencyMaxShift nanoseconds is split
// into 1<<latencySubBits equal buckets. Reporting a bucket's midpoint keeps
// the relative error of a percentile under 1/(2*16) = 3.2% across the whole
// range, with a fixed 3 KiB of memory and no resizing.
const (
	latencyMinShift = 10 // 2^10 ns ≈ 1µs: below this everything is one bucket
	latencyMaxShift = 33 // 2^34 ns ≈ 17s: above this everything is one bucket
	latencySubBits  = 4  // 16 buckets per power of two
	latencySubCount = 1 << latencySubBits

	// underflow + (octaves × sub-buckets) + overflow
	latencyBuckets = 1 + (latencyMaxShift-latencyMinShift+1)*latencySubCount + 1
)

// histogram is a lock-free latency histogram. Buckets are not padded: the
// array would grow to 50 KiB and observations spread over many buckets.
type histogram struct {
	sumNS   atomic.Uint64 // every observation adds here: kept off the buckets' lines
	_       [cacheLinePad - 8]byte
	buckets [latencyBuckets]atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[latencyBucket(uint64(d))].Add(1)
	h.sumNS.Add(uint64(d))
}

// load copies the buckets into dst and returns the total count and the sum
// in microseconds. Buckets are read one by one while writers keep adding,
// so count and sum may disagree by the observations in flight; both only
// ever grow, which is all their consumers (rates, summaries) rely on.
func (h *histogram) load(dst *[latencyBuckets]uint64) (count uint64, sumMicros float64) {
	for i := range h.buckets {
		v := h.buckets[i].Load()
		dst[i] = v
		count += v
	}
	return count, float64(h.sumNS.Load()) / 1e3
}

// latencyBucket maps a latency in nanoseconds to its bucket index.
func latencyBucket(ns uint64) int {
	if ns < 1<<latencyMinShift {
		return 0
	}
	exp := bits.Len64(ns) - 1
	if exp > latencyMaxShift {
		return latencyBuckets - 1
	}
	sub := int(ns>>(exp-latencySubBits)) & (latencySubCount - 1)
	return 1 + (exp-latencyMinShift)*latencySubCount + sub
}

// latencyBucketBounds returns the half-open range [lo, hi) of bucket i in
// nanoseconds. The overflow bucket has no upper bound; hi is reported as lo.
func latencyBucketBounds(i int) (lo, hi uint64) {
	switch {
	case i <= 0:
		return 0, 1 << latencyMinShift
	case i >= latencyBuckets-1:
		lo = 1 << (latencyMaxShift + 1)
		return lo, lo
	}
	i--
	exp := latencyMinShift + i/latencySubCount
	sub := uint64(i % latencySubCount)
	step := uint64(1) << (exp - latencySubBits)
	lo = (latencySubCount + sub) * step
	return lo, lo + step
}

// percentile returns the q-quantile (0 < q <= 1) of the counts in
// microseconds, as the midpoint of the bucket holding the rank-th
// observation, or 0 when there are none.
func percentile(counts *[latencyBuckets]uint64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	// Nearest-rank definition: the smallest value with at least q of the
	// observations at or below it.
	rank := uint64(q * float64(total))
	if float64(rank) < q*float64(total) {
		rank++
	}
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			lo, hi := latencyBucketBounds(i)
			return float64(lo+(hi-lo)/2) / 1e3
		}
	}
	return 0 // unreachable: seen reaches total >= rank
}
