//go:build !race

package buddy

// memoryFactor scales the memory bounds the attack tests assert: the race
// detector multiplies what a process holds.
const memoryFactor = 1

// raceEnabled: the race detector is on (it slows every node several times).
const raceEnabled = false
