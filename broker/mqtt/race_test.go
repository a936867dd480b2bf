//go:build race

package mqtt

// raceEnabled is true when the tests run under the race detector, where
// sync.Pool drops items at random and allocation counts are not meaningful.
const raceEnabled = true
