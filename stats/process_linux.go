//go:build linux

package stats

import (
	"bytes"
	"os"
	"strconv"
)

// processReader reads process figures the runtime does not know. Not safe
// for concurrent use; Node guards it with its snapshot mutex.
type processReader struct {
	statm [128]byte
}

// rss returns the resident set size from /proc/self/statm ("size resident
// shared text lib data dt", in pages; proc(5)).
func (p *processReader) rss() (uint64, bool) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	n, err := f.Read(p.statm[:])
	_ = f.Close()
	if err != nil || n == 0 {
		return 0, false
	}
	fields := bytes.Fields(p.statm[:n])
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}
