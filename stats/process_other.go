//go:build !linux

package stats

// processReader reads process figures the runtime does not know; off Linux
// there is no cheap portable RSS, so Node falls back to runtime figures.
type processReader struct{}

func (p *processReader) rss() (uint64, bool) { return 0, false }
