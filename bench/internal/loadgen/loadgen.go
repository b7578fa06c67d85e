// Package loadgen drives the benchmark routes (GET /bench/read,
// /bench/write?k=&v=, /bench/get) of a set of nodes with virtual users, each
// holding its own cookie jar and keep-alive connections (package leanhttp),
// and measures throughput, latency, a timeline of successes and failures,
// and, on request, what the nodes kept of the writes they acknowledged.
//
// Routing is per user and sticky: a user goes to the node its route cookie
// names (Tandem's tandem_node) or, without one, to the node it was assigned
// when it started; when that node refuses connections the user moves to the
// next node that does, as a sticky load balancer would.
package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/bench/internal/leanhttp"
)

var timeNow = time.Now

// Target is the set of nodes under load.
type Target struct {
	// Addrs are the nodes' HTTP addresses.
	Addrs []string
	// IDs are the node IDs the route cookie names, in the order of Addrs
	// (nil when there is no route cookie).
	IDs []string
	// RouteCookie names the cookie that names the owning node ("" for
	// none: users keep to their assigned node).
	RouteCookie string
	// NodeHeader names a response header naming the node that answered
	// ("" for none). Only reported.
	NodeHeader string
}

// Options configure one run.
type Options struct {
	// Clients is the number of virtual users, each one session and one
	// request at a time.
	Clients int
	// Duration bounds the measured phase.
	Duration time.Duration
	// Requests caps the measured requests (0: no cap besides Duration).
	Requests int64
	// Warmup runs before the measured phase (not counted).
	Warmup time.Duration
	// WriteRatio is the share of writes (0 to 1); the rest are reads.
	WriteRatio float64
	// Session is what each user writes into its session before the run.
	Session []Attr
	// Keys is how many small attributes the writes rotate over (at most
	// 32). Default 8. After the first event the writes rotate over as many
	// other keys, so that no write after it overwrites one acknowledged
	// before it: a loss caused by the event cannot hide behind a later
	// write of the same key.
	Keys int
	// Mutate makes each write rewrite one of the Session attributes, in
	// turn, with its digits changed, instead of a small attribute: a
	// delta shaped like the application's own (for tuning codecs).
	// Verify ignores these writes.
	Mutate bool
	// Verify keeps every acknowledged write and checks at the end, through
	// GET /bench/get, what each session still holds.
	Verify bool
	// Bucket is the timeline's resolution. Default 100 ms.
	Bucket time.Duration
	// Timeout bounds one request. Default 5 s.
	Timeout time.Duration
	// Backoff is the pause after a failed request. Default 5 ms.
	Backoff time.Duration
	// OnSeeded is called once every session is seeded, before any load
	// (warm-up or measured) starts.
	OnSeeded func()
	// OnMeasure is called when the measured phase starts, while the load
	// runs.
	OnMeasure func()
	// OnDone is called when the measured phase ends, before the
	// verification.
	OnDone func()
	// Events run at given offsets into the measured phase, from their own
	// goroutine (a kill, a restart).
	Events []Event
}

// Event is an action at an offset into the measured phase.
type Event struct {
	At   time.Duration
	Name string
	Do   func()
}

// Bucket counts the requests that ended in one timeline interval.
type Bucket struct {
	T    float64 `json:"t_ms"` // start of the interval, ms from the measured start
	OK   int64   `json:"ok"`
	Fail int64   `json:"fail"`
}

// Result is what a run measured.
type Result struct {
	Requests int64         `json:"requests"` // measured requests, ok or not
	OK       int64         `json:"ok"`
	Failed   int64         `json:"failed"`
	Writes   int64         `json:"writes_ok"` // acknowledged writes, measured phase
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"rps"` // successful requests per second
	P50      float64       `json:"p50_us"`
	P99      float64       `json:"p99_us"`
	P999     float64       `json:"p999_us"`
	Max      float64       `json:"max_us"`
	// SeedFailures counts users whose session could not be written before
	// the run.
	SeedFailures int                `json:"seed_failures"`
	Statuses     map[int]int        `json:"statuses"` // non-200 statuses seen, by code
	Errors       map[string]int     `json:"errors"`   // transport errors, by kind
	Timeline     []Bucket           `json:"timeline"`
	EventTimes   map[string]float64 `json:"event_ms"` // when each event ran, ms from the measured start
	// Failover figures, set when an event ran.
	Failover *Failover `json:"failover,omitempty"`
	// Verification, set with Options.Verify.
	Verify *Verification `json:"verify,omitempty"`
}

// Failover is how the users fared after the first event.
type Failover struct {
	// Affected users saw at least one failure after the event.
	Affected int `json:"affected_users"`
	// Recovered users had a success after their failures.
	Recovered int `json:"recovered_users"`
	// RecoveryMax is the longest time from the event to an affected
	// user's first success after its failures; RecoveryP50 the median.
	RecoveryMax float64 `json:"recovery_max_ms"`
	RecoveryP50 float64 `json:"recovery_p50_ms"`
	// FailedAfter counts failed requests after the event.
	FailedAfter int64 `json:"failed_after"`
	// Window is the time from the event to the last failed request.
	Window float64 `json:"window_ms"`
}

// Verification is what the sessions held at the end.
type Verification struct {
	// Users checked, and those whose session could not be read at all.
	Users      int `json:"users"`
	Unreadable int `json:"unreadable"`
	// AckedWrites is the number of writes answered 200; LostWrites those
	// the session no longer holds: neither it nor a later write of the
	// same key is there, or the session itself is gone (its seeded
	// attributes missing), which loses every write acknowledged before
	// the event.
	AckedWrites int64 `json:"acked_writes"`
	LostWrites  int64 `json:"lost_writes"`
	// SessionsLost counts users whose seeded attributes were gone.
	SessionsLost int `json:"sessions_lost"`
}

// router tracks nodes that refused connections.
type router struct {
	t         Target
	downUntil []atomic.Int64
	ids       map[string]int
}

func (r *router) down(i int, now int64) bool { return r.downUntil[i].Load() > now }

func (r *router) markDown(i int) {
	r.downUntil[i].Store(time.Now().Add(300 * time.Millisecond).UnixNano())
}

// pick returns the node for a request: want, or the next node up.
func (r *router) pick(want int) int {
	n := len(r.t.Addrs)
	now := time.Now().UnixNano()
	for i := range n {
		j := (want + i) % n
		if !r.down(j, now) {
			return j
		}
	}
	return want
}

// user is one virtual user.
type user struct {
	idx    int
	home   int
	jar    jar
	conns  []*leanhttp.Conn
	req    []byte
	rng    uint64
	seq    int64
	lat    []uint32
	acked  [][]int64 // by key: seqs answered 200, in order
	fails  int64
	failAt int64 // unix ns of the first failure after the event, 0 if none
	recAt  int64 // unix ns of the first success after that
	seeded bool
	// seqAtEvent is the user's write sequence when the first event ran
	// (-1 before).
	seqAtEvent int64
	last       int64 // unix ns at which its last measured request ended
	writes     int64
	stat       map[int]int
	errs       map[string]int
}

type jar struct {
	names, values []string
	header        string
}

func (j *jar) get(name string) string {
	for i, n := range j.names {
		if n == name {
			return j.values[i]
		}
	}
	return ""
}

// update applies a response's cookies and reports whether the Cookie header
// changed.
func (j *jar) update(cs []leanhttp.Cookie) bool {
	changed := false
	for _, c := range cs {
		i := slices.Index(j.names, c.Name)
		switch {
		case c.Delete && i >= 0:
			j.names = slices.Delete(j.names, i, i+1)
			j.values = slices.Delete(j.values, i, i+1)
			changed = true
		case c.Delete:
		case i >= 0:
			if j.values[i] != c.Value {
				j.values[i] = c.Value
				changed = true
			}
		default:
			j.names = append(j.names, c.Name)
			j.values = append(j.values, c.Value)
			changed = true
		}
	}
	if changed {
		h := ""
		for i, n := range j.names {
			if i > 0 {
				h += "; "
			}
			h += n + "=" + j.values[i]
		}
		j.header = h
	}
	return changed
}

func (u *user) rand() uint64 {
	u.rng ^= u.rng << 13
	u.rng ^= u.rng >> 7
	u.rng ^= u.rng << 17
	return u.rng
}

type run struct {
	o       Options
	r       *router
	eventAt atomic.Int64 // unix ns of the first event, 0 before
	left    atomic.Int64 // measured requests left under the cap
	ok      []atomic.Int64
	fail    []atomic.Int64
	stop    atomic.Bool
}

// Run seeds one session per user, runs the warm-up and the measured phase,
// and, with Options.Verify, checks the sessions. It never runs longer than
// about Warmup + Duration plus the seeding and verification, each bounded.
func Run(t Target, o Options) (*Result, error) {
	if len(t.Addrs) == 0 || o.Clients <= 0 {
		return nil, errors.New("loadgen: no nodes or no clients")
	}
	if o.Keys <= 0 {
		o.Keys = 8
	}
	if o.Keys > len(keyNames)/2 {
		o.Keys = len(keyNames) / 2
	}
	if o.Bucket <= 0 {
		o.Bucket = 100 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 5 * time.Millisecond
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	rt := &router{t: t, downUntil: make([]atomic.Int64, len(t.Addrs)), ids: map[string]int{}}
	for i, id := range t.IDs {
		rt.ids[id] = i
	}
	nb := int(o.Duration/o.Bucket) + 2
	rn := &run{o: o, r: rt, ok: make([]atomic.Int64, nb), fail: make([]atomic.Int64, nb)}
	if o.Requests > 0 {
		rn.left.Store(o.Requests)
	} else {
		rn.left.Store(1 << 62)
	}

	users := make([]*user, o.Clients)
	for i := range users {
		u := &user{idx: i, home: i % len(t.Addrs), rng: uint64(i)*0x9e3779b97f4a7c15 + 1, seqAtEvent: -1,
			stat: map[int]int{}, errs: map[string]int{}}
		u.conns = make([]*leanhttp.Conn, len(t.Addrs))
		for j, a := range t.Addrs {
			u.conns[j] = &leanhttp.Conn{Addr: a, Header: t.NodeHeader, Timeout: o.Timeout}
		}
		if o.Verify {
			u.acked = make([][]int64, 2*o.Keys)
		}
		if o.Requests > 0 {
			u.lat = make([]uint32, 0, min(o.Requests/int64(o.Clients)+16, 1<<20))
		}
		users[i] = u
	}
	defer func() {
		for _, u := range users {
			for _, c := range u.conns {
				c.Close()
			}
		}
	}()

	// Seed the sessions, several users at a time.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u.seeded = rn.seed(u)
		}()
	}
	wg.Wait()
	res := &Result{Statuses: map[int]int{}, Errors: map[string]int{}, EventTimes: map[string]float64{}}
	for _, u := range users {
		if !u.seeded {
			res.SeedFailures++
		}
	}

	if o.OnSeeded != nil {
		o.OnSeeded()
	}

	// Warm-up, then the measured phase.
	wallStart := time.Now()
	measureAt := wallStart.Add(o.Warmup)
	end := measureAt.Add(o.Duration)
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.loop(u, measureAt, end)
		}()
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()
	if d := time.Until(measureAt); d > 0 {
		time.Sleep(d)
	}
	if o.OnMeasure != nil {
		o.OnMeasure()
	}
	measureStart := time.Now()
	var evMu sync.Mutex
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		for _, ev := range o.Events {
			if d := time.Until(measureStart.Add(ev.At)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-loadDone:
				}
				t.Stop()
			}
			if rn.stop.Load() {
				return
			}
			now := time.Now()
			rn.eventAt.CompareAndSwap(0, now.UnixNano())
			ev.Do()
			evMu.Lock()
			res.EventTimes[ev.Name] = ms(now.Sub(measureStart))
			evMu.Unlock()
		}
	}()
	<-loadDone
	rn.stop.Store(true)
	elapsed := time.Since(measureStart)
	if o.OnDone != nil {
		o.OnDone()
	}
	if o.Requests > 0 && rn.left.Load() <= 0 {
		// the cap ended the run: count up to the last request's end
		var last int64
		for _, u := range users {
			last = max(last, u.last)
		}
		elapsed = time.Duration(last - measureStart.UnixNano())
		if elapsed <= 0 {
			elapsed = time.Since(measureStart)
		}
	}
	if len(o.Events) > 0 {
		<-evDone
	}

	// Collect.
	var all []uint32
	for _, u := range users {
		all = append(all, u.lat...)
		res.Writes += u.writes
		for k, v := range u.stat {
			res.Statuses[k] += v
		}
		for k, v := range u.errs {
			res.Errors[k] += v
		}
	}
	for i := range rn.ok {
		okn, fn := rn.ok[i].Load(), rn.fail[i].Load()
		res.OK += okn
		res.Failed += fn
		if time.Duration(i)*o.Bucket <= elapsed {
			res.Timeline = append(res.Timeline, Bucket{T: ms(time.Duration(i) * o.Bucket), OK: okn, Fail: fn})
		}
	}
	res.Requests = res.OK + res.Failed
	res.Elapsed = elapsed
	res.RPS = float64(res.OK) / elapsed.Seconds()
	slices.Sort(all)
	res.P50, res.P99, res.P999 = quantile(all, 0.5), quantile(all, 0.99), quantile(all, 0.999)
	if len(all) > 0 {
		res.Max = float64(all[len(all)-1])
	}
	if ev := rn.eventAt.Load(); ev != 0 {
		res.Failover = failover(users, ev, rn, measureStart, o.Bucket)
	}
	if o.Verify {
		res.Verify = rn.verify(users)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func quantile(sorted []uint32, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return float64(sorted[max(0, min(i, len(sorted)-1))])
}

func failover(users []*user, ev int64, rn *run, start time.Time, bucket time.Duration) *Failover {
	f := &Failover{}
	var rec []float64
	for _, u := range users {
		if u.failAt == 0 {
			continue
		}
		f.Affected++
		if u.recAt != 0 {
			f.Recovered++
			rec = append(rec, float64(u.recAt-ev)/1e6)
		}
	}
	slices.Sort(rec)
	if len(rec) > 0 {
		f.RecoveryMax = rec[len(rec)-1]
		f.RecoveryP50 = rec[len(rec)/2]
	}
	evBucket := int(time.Duration(ev-start.UnixNano()) / bucket)
	for i := range rn.fail {
		if i >= evBucket {
			n := rn.fail[i].Load()
			f.FailedAfter += n
			if n > 0 {
				f.Window = max(f.Window, ms(time.Duration(i+1)*bucket)-float64(ev-start.UnixNano())/1e6)
			}
		}
	}
	return f
}

// node returns the node index for u's next request.
func (rn *run) node(u *user) int {
	want := u.home
	if rn.r.t.RouteCookie != "" {
		if id := u.jar.get(rn.r.t.RouteCookie); id != "" {
			if i, ok := rn.r.ids[id]; ok {
				want = i
			}
		}
	}
	n := rn.r.pick(want)
	if n != want && rn.r.t.RouteCookie == "" {
		u.home = n // the balancer re-pins the user
	}
	return n
}

// do sends one GET of target to u's node and applies the response's
// cookies. It returns the response (nil on a transport error).
func (rn *run) do(u *user, target string) (*leanhttp.Response, error) {
	n := rn.node(u)
	c := u.conns[n]
	u.req = leanhttp.AppendGET(u.req[:0], c.Addr, target, u.jar.header)
	resp, err := c.Do(u.req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			rn.r.markDown(n)
		}
		return nil, err
	}
	u.jar.update(resp.Cookies)
	return resp, nil
}

func writeTarget(k, v string) string {
	return "/bench/write?k=" + url.QueryEscape(k) + "&v=" + url.QueryEscape(v)
}

// seed writes the user's session, attribute by attribute, retrying a few
// times.
func (rn *run) seed(u *user) bool {
	for _, a := range rn.o.Session {
		okay := false
		for range 5 {
			resp, err := rn.do(u, writeTarget(a.Key, a.Value))
			if err == nil && resp.Status == 200 {
				okay = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !okay {
			return false
		}
	}
	if len(rn.o.Session) == 0 { // start the session anyway
		resp, err := rn.do(u, writeTarget("k", "v"))
		return err == nil && resp.Status == 200
	}
	return true
}

var keyNames = func() []string {
	k := make([]string, 64)
	for i := range k {
		k[i] = "c" + strconv.Itoa(i)
	}
	return k
}()

func (rn *run) loop(u *user, measureAt, end time.Time) {
	var tb []byte
	readTarget := "/bench/read?k=" + keyNames[0]
	for !rn.stop.Load() {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		measured := !now.Before(measureAt)
		if measured && rn.left.Add(-1) < 0 {
			rn.stop.Store(true)
			return
		}
		if u.seqAtEvent < 0 && rn.eventAt.Load() != 0 {
			u.seqAtEvent = u.seq // the writes from here on come after the event
		}
		write := rn.o.WriteRatio >= 1 || (rn.o.WriteRatio > 0 && float64(u.rand()%1_000_000) < rn.o.WriteRatio*1e6)
		var target string
		var key int
		if write && rn.o.Mutate && len(rn.o.Session) > 0 {
			u.seq++
			a := rn.o.Session[int(u.seq%int64(len(rn.o.Session)))]
			target = writeTarget(a.Key, Vary(a.Value, u.seq))
			key = -1
		} else if write {
			u.seq++
			key = int(u.seq % int64(rn.o.Keys))
			if u.seqAtEvent >= 0 {
				// After the event, writes use their own keys, so that they
				// never overwrite (and hide the loss of) a write
				// acknowledged before it.
				key += rn.o.Keys
			}
			tb = append(tb[:0], "/bench/write?k="...)
			tb = append(tb, keyNames[key%len(keyNames)]...)
			tb = append(tb, "&v="...)
			tb = strconv.AppendInt(tb, u.seq, 10)
			target = string(tb)
		} else {
			target = readTarget
		}
		t0 := time.Now()
		resp, err := rn.do(u, target)
		t1 := time.Now()
		good := err == nil && resp.Status == 200
		if measured {
			if err != nil {
				u.errs[errKind(err)]++
			} else if resp.Status != 200 {
				u.stat[resp.Status]++
			}
			b := int(t1.Sub(measureAt) / rn.o.Bucket)
			if b >= 0 && b < len(rn.ok) {
				if good {
					rn.ok[b].Add(1)
				} else {
					rn.fail[b].Add(1)
				}
			}
			if good {
				u.lat = append(u.lat, uint32(min(t1.Sub(t0).Microseconds(), 1<<32-1)))
			}
			u.last = t1.UnixNano()
			if ev := rn.eventAt.Load(); ev != 0 && t1.UnixNano() >= ev {
				if !good && u.failAt == 0 {
					u.failAt = t1.UnixNano()
				}
				if good && u.failAt != 0 && u.recAt == 0 {
					u.recAt = t1.UnixNano()
				}
			}
		}
		if good && write {
			if measured {
				u.writes++
			}
			if u.acked != nil && key >= 0 {
				u.acked[key] = append(u.acked[key], u.seq)
			}
		}
		if !good {
			u.fails++
			time.Sleep(rn.o.Backoff)
		}
	}
}

func errKind(err error) string {
	var op *net.OpError
	switch {
	case errors.As(err, &op):
		return op.Op
	case errors.Is(err, leanhttp.ErrMalformed):
		return "malformed"
	default:
		s := err.Error()
		if len(s) > 40 {
			s = s[:40]
		}
		return s
	}
}

// verify reads every user's session and counts what it lost.
func (rn *run) verify(users []*user) *Verification {
	v := &Verification{Users: len(users)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got, ok := rn.readSession(u)
			mu.Lock()
			defer mu.Unlock()
			for _, a := range u.acked {
				v.AckedWrites += int64(len(a))
			}
			if !ok {
				v.Unreadable++
				for _, a := range u.acked {
					v.LostWrites += int64(len(a))
				}
				return
			}
			lostSession := false
			for _, a := range rn.o.Session {
				if got[a.Key] != a.Value {
					lostSession = true
				}
			}
			// A lost session takes every write acknowledged before the
			// event (before the end, without one) with it.
			var gone int64 = -1
			if lostSession {
				v.SessionsLost++
				gone = u.seq
				if u.seqAtEvent >= 0 {
					gone = u.seqAtEvent
				}
			}
			for k, seqs := range u.acked {
				stored, _ := strconv.ParseInt(got[keyNames[k%len(keyNames)]], 10, 64)
				// seqs ascend: those up to gone are lost with the session,
				// those above stored were never seen by the final session.
				i, _ := slices.BinarySearch(seqs, gone+1)
				j, _ := slices.BinarySearch(seqs, max(stored, gone)+1)
				v.LostWrites += int64(i + len(seqs) - j)
			}
		}()
	}
	wg.Wait()
	return v
}

// readSession fetches GET /bench/get for u, retrying for up to 10 s while
// the cluster settles.
func (rn *run) readSession(u *user) (map[string]string, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := rn.do(u, "/bench/get")
		if err == nil && resp.Status == 200 {
			m := map[string]string{}
			if json.Unmarshal(resp.Body, &m) == nil {
				return m, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, false
}

// String is a one-line summary.
func (r *Result) String() string {
	return fmt.Sprintf("%d ok, %d failed in %v: %.0f req/s, p50 %.0f us, p99 %.0f us, p99.9 %.0f us",
		r.OK, r.Failed, r.Elapsed.Round(time.Millisecond), r.RPS, r.P50, r.P99, r.P999)
}

// Vary returns s with its digits replaced by pseudo-random digits drawn
// from seed: a value of the same shape that differs in many places, as a
// real attribute's next value would.
func Vary(s string, seed int64) string {
	out := []byte(s)
	x := uint64(seed)*0x9e3779b97f4a7c15 + 1
	for j, ch := range out {
		if ch >= '0' && ch <= '9' {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			out[j] = '0' + byte(x%10)
		}
	}
	return string(out)
}
