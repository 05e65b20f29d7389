//go:build !race

package deploy

// raceEnabled reports whether the tests were built with the race detector.
const raceEnabled = false
