//go:build !race

package webtest

// raceEnabled reports whether the tests were built with the race detector.
const raceEnabled = false
