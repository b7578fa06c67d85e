package buddy

import (
	"fmt"
	"testing"
)

// TestStaleCookiesNeverReadStaleCopies reads a session through every node
// after each write, each time with the cookie of the write (as concurrent
// tabs would), so the session hops between owners while backup copies of
// older owners linger: every read must see every write.
func TestStaleCookiesNeverReadStaleCopies(t *testing.T) {
	ms := cluster(t, 4, fastTimers)
	ms[3].kill()
	waitRing(t, ms)
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	seqv := []int{2, 0, 2, 2, 1, 1, 0, 2, 1, 0}
	for i, via := range seqv {
		w.write(ms[via], fmt.Sprintf("k%d", i+1), fmt.Sprint(i+1))
		for _, m := range live(ms) {
			w.check(t, m)
		}
	}
}
