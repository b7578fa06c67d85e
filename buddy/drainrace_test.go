package buddy

import (
	"fmt"
	"sync"
	"testing"
)

// While a node drains, parallel requests for its sessions at its buddy (the
// balancer sends them there once the node's app server closed) each get
// their session: none is fresh, no acknowledged write is lost. The buddy
// both fetches these sessions from the draining node and promotes them
// from its copies, at once.
func TestParallelRequestsAtTheBuddyDuringDrain(t *testing.T) {
	for range 5 {
		ms := cluster(t, 3, fastTimers)
		var ws []*writer
		for i := range 24 {
			w := &writer{b: browser{t: t}, acked: map[string]string{}}
			w.write(ms[0], "k", fmt.Sprint(i))
			ws = append(ws, w)
		}
		done := make(chan error, 1)
		go func() { done <- ms[0].node.Shutdown(t.Context()) }()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fresh []int
		for i, w := range ws {
			wg.Go(func() {
				for round := range 40 {
					before := w.b.id
					if !w.write(ms[1], fmt.Sprintf("r%d", round), "x") {
						continue
					}
					if w.b.id != before {
						mu.Lock()
						fresh = append(fresh, i)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ms[0].gone.Store(true)
		if len(fresh) > 0 {
			t.Fatalf("sessions %v replaced by fresh ones at the buddy during the drain", fresh)
		}
		for _, w := range ws {
			for _, m := range live(ms) {
				w.check(t, m)
			}
		}
		for _, m := range ms[1:] {
			m.kill()
		}
	}
}
