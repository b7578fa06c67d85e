//go:build !race

package compress

// raceEnabled is true when testing with -race; see race_test.go.
const raceEnabled = false
