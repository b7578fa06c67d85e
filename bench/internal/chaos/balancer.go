package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Routing policies of the balancer.
const (
	policySticky    = "sticky"    // to the node the route cookie names while it is believed up, else another
	policyNonSticky = "nonsticky" // a random node believed up, per request
	policySplit     = "split"     // sticky for the first request of a parallel group, other nodes for the rest
)

func validPolicy(p string) error {
	switch p {
	case policySticky, policyNonSticky, policySplit:
		return nil
	}
	return fmt.Errorf("policy %q: want sticky, nonsticky or split", p)
}

// balancer is the driver acting as the load balancer. It knows what the
// driver did to each node, but only stale seconds late, as a balancer
// whose health checks lag does: it keeps routing to a node that just died
// (the connection is refused and it retries elsewhere), and away from one
// that just came back.
type balancer struct {
	stale time.Duration
	now   func() time.Time

	mu    sync.Mutex
	ids   []string
	addrs map[string]string
	// changes lists, per node, when it went up or down, oldest first.
	changes map[string][]stateChange
}

type stateChange struct {
	at time.Time
	up bool
}

func newBalancer(stale time.Duration) *balancer {
	return &balancer{stale: stale, now: time.Now, addrs: map[string]string{}, changes: map[string][]stateChange{}}
}

func (b *balancer) addNode(id, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ids = append(b.ids, id)
	b.addrs[id] = addr
}

func (b *balancer) addr(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[id]
}

// set records that node id went up or down now.
func (b *balancer) set(id string, up bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.changes[id] = append(b.changes[id], stateChange{at: b.now(), up: up})
}

// believesUp reports what the balancer believes of node id: its state as
// of stale ago. A node never started is down.
func (b *balancer) believesUp(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.believesUpLocked(id, b.now().Add(-b.stale))
}

func (b *balancer) believesUpLocked(id string, asOf time.Time) bool {
	up := false
	for _, c := range b.changes[id] {
		if c.at.After(asOf) {
			break
		}
		up = c.up
	}
	return up
}

// after returns the nodes in ring order starting after id (id last).
func (b *balancer) after(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.ids, id)
	out := make([]string, 0, len(b.ids))
	for k := 1; k <= len(b.ids); k++ {
		out = append(out, b.ids[(i+k+len(b.ids))%len(b.ids)])
	}
	return out
}

// next returns the first node after id, in ring order, that is believed
// up and not in skip; failing that, the first not in skip; "" when every
// node is in skip.
func (b *balancer) next(id string, skip map[string]bool) string {
	order := b.after(id)
	for _, c := range order {
		if !skip[c] && b.believesUp(c) {
			return c
		}
	}
	for _, c := range order {
		if !skip[c] {
			return c
		}
	}
	return ""
}

// home is where a user without a route cookie goes: its own node by
// index, or the next one believed up.
func (b *balancer) home(user int) string {
	b.mu.Lock()
	id := b.ids[user%len(b.ids)]
	b.mu.Unlock()
	if b.believesUp(id) {
		return id
	}
	return b.next(id, nil)
}

// sticky routes by the route cookie.
func (b *balancer) sticky(route string, user int) string {
	if route == "" {
		return b.home(user)
	}
	if b.believesUp(route) {
		return route
	}
	return b.next(route, nil)
}

// pick chooses the node for slot (0-based) of a group of parallel requests
// of one user whose route cookie names route.
func (b *balancer) pick(policy, route string, user, slot int, rng *rand.Rand) string {
	switch policy {
	case policyNonSticky:
		b.mu.Lock()
		ids := slices.Clone(b.ids)
		b.mu.Unlock()
		var up []string
		for _, id := range ids {
			if b.believesUp(id) {
				up = append(up, id)
			}
		}
		if len(up) == 0 {
			return ids[rng.IntN(len(ids))]
		}
		return up[rng.IntN(len(up))]
	case policySplit:
		first := b.sticky(route, user)
		if slot == 0 {
			return first
		}
		skip := map[string]bool{first: true}
		pick := first
		for range slot {
			n := b.next(pick, skip)
			if n == "" {
				return first
			}
			pick = n
		}
		return pick
	}
	return b.sticky(route, user)
}
