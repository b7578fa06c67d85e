//go:build race

package compress

// raceEnabled is true when testing with -race, under which sync.Pool
// (used inside klauspost/compress) drops items at random, so allocation
// counts are meaningless.
const raceEnabled = true
