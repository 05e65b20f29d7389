//go:build race

package dimsetest

// raceEnabled reports whether the tests were built with the race detector.
const raceEnabled = true
