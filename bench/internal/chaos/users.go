package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// workload is what each virtual user does, per round.
type workload struct {
	policy         string        // balancer routing
	parallelMin    int           // requests in a group of parallel writes: at least
	parallelMax    int           // and at most (1 to 4)
	readInGroup    float64       // chance that one request of a group of two or more is a read
	readAfter      float64       // chance of a read right after a group
	loginP         float64       // chance a round is a login (Regenerate)
	logoutP        float64       // chance a round is a logout (Invalidate)
	replayP        float64       // chance that a logout's old cookie is replayed at once
	think          time.Duration // pause between rounds: at most (uniform)
	keys           []string      // keys written; a group writes distinct ones
	maxRounds      int           // bound on rounds per user
	requestTimeout time.Duration
}

// user is one virtual user: its own cookies and connections.
type user struct {
	id   int
	w    workload
	rng  *rand.Rand
	jar  *jar
	cl   *http.Client
	bal  *balancer
	rec  *recorder
	seq  int
	tal  *tally
	outs []cookies // cookies of sessions logged out (acknowledged), to replay
}

func newUser(id int, w workload, seed int64, bal *balancer, rec *recorder, tal *tally) *user {
	return &user{id: id, w: w, rng: rand.New(rand.NewPCG(uint64(seed), uint64(id)+1)), jar: newJar(),
		cl: newClient(w.requestTimeout), bal: bal, rec: rec, tal: tal}
}

func (u *user) value() string {
	u.seq++
	return fmt.Sprintf("u%d.%d", u.id, u.seq)
}

// run plays rounds until the deadline, maxRounds or ctx.
func (u *user) run(ctx context.Context, deadline time.Time) {
	defer u.cl.CloseIdleConnections()
	for round := 1; round <= u.w.maxRounds && time.Now().Before(deadline) && ctx.Err() == nil; round++ {
		u.round(ctx, round)
		if u.w.think > 0 {
			sleep(ctx, time.Duration(u.rng.Int64N(int64(u.w.think))+1))
		}
	}
}

// round plays one round: a group of parallel writes (and maybe a read), a
// read, a login or a logout.
func (u *user) round(ctx context.Context, round int) {
	ck := u.jar.snapshot()
	roll := u.rng.Float64()
	switch {
	case ck.session == "":
		// A new session starts with one write, alone.
		u.group(ctx, round, []request{{kind: kindSet, key: u.pickKey(), value: u.value()}})
	case roll < u.w.loginP:
		u.group(ctx, round, []request{{kind: kindLogin, key: "user", value: u.value()}})
	case roll < u.w.loginP+u.w.logoutP:
		ops := u.group(ctx, round, []request{{kind: kindLogout}})
		if last := ops[len(ops)-1]; last.Outcome == outcomeOK && !last.New && ck.id != "" {
			u.outs = append(u.outs, ck)
			if u.rng.Float64() < u.w.replayP {
				u.replay(ctx, round, ck, false)
			}
		}
	default:
		n := u.w.parallelMin
		if u.w.parallelMax > n {
			n += u.rng.IntN(u.w.parallelMax - n + 1)
		}
		keys := u.rng.Perm(len(u.w.keys))
		reqs := make([]request, 0, n)
		for i := range min(n, len(keys)) {
			reqs = append(reqs, request{kind: kindSet, key: u.w.keys[keys[i]], value: u.value()})
		}
		if len(reqs) >= 2 && u.rng.Float64() < u.w.readInGroup {
			reqs[len(reqs)-1] = request{kind: kindGet}
		}
		u.group(ctx, round, reqs)
		if u.rng.Float64() < u.w.readAfter {
			u.group(ctx, round, []request{{kind: kindGet}})
		}
	}
}

func (u *user) pickKey() string { return u.w.keys[u.rng.IntN(len(u.w.keys))] }

// group sends the requests at once, each routed by the balancer, and waits
// for all. It returns the final op of each request (after retries).
func (u *user) group(ctx context.Context, round int, reqs []request) []Op {
	if len(reqs) == 1 {
		return []Op{u.do(ctx, round, 0, reqs[0], false)}
	}
	out := make([]Op, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { out[i] = u.do(ctx, round, i, r, false) })
	}
	wg.Wait()
	return out
}

// do sends one request through the balancer; a refused connection (the
// request was not sent) is retried on another node, once per node. Each
// attempt is recorded. It returns the last attempt.
func (u *user) do(ctx context.Context, round, slot int, r request, final bool) Op {
	ck := u.jar.snapshot()
	node := u.bal.pick(u.w.policy, ck.route, u.id, slot, u.rng)
	tried := map[string]bool{}
	var op Op
	retryOf := 0
	for attempt := 0; attempt < len(u.bal.after(node)) && node != ""; attempt++ {
		tried[node] = true
		op = Op{ID: u.rec.nextID(), User: u.id, Round: round, Slot: slot, Kind: r.kind, Key: r.key, Value: r.value,
			Final: final, Node: node, RetryOf: retryOf}
		send(ctx, u.cl, u.rec, u.bal.addr(node), r, ck, u.jar, &op)
		u.rec.op(op)
		if op.Outcome == outcomeOK {
			u.tal.saw(u.id, op.Owner, op.Backup)
		}
		if op.Err != errRefused {
			break
		}
		retryOf = op.ID
		node = u.bal.next(node, tried)
		ck = u.jar.snapshot()
	}
	return op
}

// replay sends a GET with the cookies of a logged-out session, keeping
// none of the answer's cookies: it must get a fresh, empty session.
func (u *user) replay(ctx context.Context, round int, ck cookies, final bool) {
	node := u.bal.sticky(ck.route, u.id)
	tried := map[string]bool{}
	retryOf := 0
	for attempt := 0; attempt < len(u.bal.after(node)) && node != ""; attempt++ {
		tried[node] = true
		op := Op{ID: u.rec.nextID(), User: u.id, Round: round, Kind: kindReplay, Final: final, Node: node, RetryOf: retryOf}
		send(ctx, u.cl, u.rec, u.bal.addr(node), request{kind: kindReplay}, ck, nil, &op)
		u.rec.op(op)
		if op.Err != errRefused {
			return
		}
		retryOf = op.ID
		node = u.bal.next(node, tried)
	}
}

// finish runs once the cluster quiesced: the final read (retried a few
// times if it gets no answer), then a replay of every logged-out cookie.
func (u *user) finish(ctx context.Context) {
	defer u.cl.CloseIdleConnections()
	for range 3 {
		if u.jar.snapshot().session == "" {
			break
		}
		if op := u.do(ctx, 0, 0, request{kind: kindGet}, true); op.Outcome == outcomeOK {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	for _, ck := range u.outs {
		u.replay(ctx, 0, ck, true)
	}
}

// tally counts, for the fault schedule, which node each user was last told
// owns (and backs up) its session.
type tally struct {
	mu     sync.Mutex
	owner  map[int]string
	backup map[int]string
}

func newTally() *tally { return &tally{owner: map[int]string{}, backup: map[int]string{}} }

func (t *tally) saw(user int, owner, backup string) {
	if owner == "" {
		return
	}
	t.mu.Lock()
	t.owner[user], t.backup[user] = owner, backup
	t.mu.Unlock()
}

// busiest returns, among candidates, the node owning the most users'
// sessions (ties: the first candidate), and the backup most of them name.
func (t *tally) busiest(candidates []string) (owner, backup string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	count := map[string]int{}
	for _, o := range t.owner {
		count[o]++
	}
	for _, c := range candidates {
		if owner == "" || count[c] > count[owner] {
			owner = c
		}
	}
	backups := map[string]int{}
	for u, o := range t.owner {
		if o == owner {
			backups[t.backup[u]]++
		}
	}
	for b, n := range backups {
		if b != "" && (backup == "" || n > backups[backup] || n == backups[backup] && b < backup) {
			backup = b
		}
	}
	return owner, backup
}
