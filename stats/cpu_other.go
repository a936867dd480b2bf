//go:build !unix

package stats

import "time"

// cpuTime is unavailable here; CPUPercent is reported as 0.
func (p *processReader) cpuTime() (time.Duration, bool) { return 0, false }
