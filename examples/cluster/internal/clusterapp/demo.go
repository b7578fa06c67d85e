package clusterapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/internal/nodeapp"
)

// Demo pacing. Every loop of the demo is bounded by these.
const (
	scriptBudget   = 32 * time.Second       // the steps; the check and the stop have their own
	checkBudget    = 8 * time.Second        // reading every session back
	demoStopWait   = 4 * time.Second        // per node, when the demo stops the cluster
	writePause     = 40 * time.Millisecond  // between two writes of one client
	maxClientWrite = 4000                   // writes per client, at most (< maxDemoAttributes)
	requestTimeout = 5 * time.Second        // one request of a client
	steadyTime     = time.Second            // writing before and after a disruption
	rollPause      = 500 * time.Millisecond // writing between two nodes of a rolling restart
)

// ackedWrite is a write the cluster acknowledged with 200.
type ackedWrite struct {
	value string
	step  int
}

// demoClient is one user: its own cookie jar, a new key on every write, and
// what was acknowledged.
type demoClient struct {
	id  int
	hc  *http.Client
	seq int // only the client's goroutine touches it

	mu        sync.Mutex
	acked     map[string]ackedWrite
	owner     string // the node that served the last acknowledged write
	affected  bool   // owned by the killed node when it was killed
	recovered time.Time
}

// step is one part of the script and what happened during it.
type step struct {
	name           string
	start, end     time.Time
	acked, refused atomic.Int64
	restarted      atomic.Int64 // sessions found missing by a write
	lost           int
	sessions       int // sessions owned by the nodes at the end of the step
	notes          []string
}

type demo struct {
	c       *cluster
	o       options
	out     io.Writer
	base    string
	began   time.Time
	clients []*demoClient
	mu      sync.Mutex
	steps   []*step
	cur     atomic.Int32
	killAt  atomic.Int64 // unix nanoseconds of the kill
	victim  string
	stats   *http.Client
}

// runDemo drives the cluster through a kill, a restart and a rolling
// restart while clients keep writing, then checks every acknowledged write.
// It returns the exit code.
func runDemo(ctx context.Context, c *cluster, o options, out io.Writer) int {
	c.stopWait = demoStopWait
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, scriptBudget)
	defer cancel()
	d := &demo{c: c, o: o, out: out, base: "http://" + c.addr, began: time.Now(),
		stats: &http.Client{Timeout: time.Second}}
	fmt.Fprintf(out, "Tandem cluster demo: %d nodes, %s replication, %d sessions through the balancer at %s\n",
		len(c.sup.procs), o.mode, o.sessions, c.addr)
	fmt.Fprintf(out, "(dashboard while it runs: http://%s/dashboard/)\n\n", c.addr)

	tr := &http.Transport{MaxIdleConnsPerHost: o.sessions + 8, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	for i := range o.sessions {
		jar, _ := cookiejar.New(nil) // never fails without options
		d.clients = append(d.clients, &demoClient{id: i + 1, acked: map[string]ackedWrite{},
			hc: &http.Client{Jar: jar, Transport: tr, Timeout: requestTimeout}})
	}

	// Writers stop with wctx: a write still in flight then is simply not
	// acknowledged.
	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	err := d.script(ctx, wctx, &writers)
	stopWriters()
	writers.Wait()
	if err != nil {
		d.progress("error: %v", err)
	}
	return d.check(parent, err)
}

// script runs the steps; writers start after the sessions exist.
func (d *demo) script(ctx, wctx context.Context, writers *sync.WaitGroup) error {
	s := d.begin(fmt.Sprintf("create %d sessions, write", len(d.clients)))
	for _, cl := range d.clients {
		if !d.createSession(ctx, cl) {
			return fmt.Errorf("client %d: no session after 20 tries", cl.id)
		}
	}
	for _, cl := range d.clients {
		writers.Go(func() { d.writeLoop(wctx, cl) })
	}
	if err := sleep(ctx, steadyTime); err != nil {
		return err
	}
	owners := d.owners()
	s.notes = append(s.notes, "owners: "+formatOwners(owners))
	d.end(ctx, s)

	// Kill the node that owns the most sessions.
	d.victim = busiest(owners)
	s = d.begin(fmt.Sprintf("kill %s (SIGKILL)", d.victim))
	affected := 0
	for _, cl := range d.clients {
		cl.mu.Lock()
		cl.affected = cl.owner == d.victim
		if cl.affected {
			affected++
		}
		cl.mu.Unlock()
	}
	killAt, err := d.c.sup.kill(d.victim)
	if err != nil {
		return err
	}
	d.killAt.Store(killAt.UnixNano())
	d.progress("killed %s with SIGKILL; it owned %d of %d sessions", d.victim, affected, len(d.clients))
	first, all, err := d.waitRecovered(ctx, killAt, 15*time.Second)
	if err != nil {
		return err
	}
	if err := d.c.waitConverged(ctx, 10*time.Second); err != nil {
		return err
	}
	detected := time.Since(killAt)
	if rest := 2*time.Second - time.Since(killAt); rest > 0 {
		if err := sleep(ctx, rest); err != nil {
			return err
		}
	}
	s.notes = append(s.notes, fmt.Sprintf("%d sessions on %s; failover: first served again after %s, all after %s; ring without %s after %s",
		affected, d.victim, ms(first), ms(all), d.victim, ms(detected)))
	d.end(ctx, s)

	// Bring it back.
	s = d.begin("restart " + d.victim)
	t0 := time.Now()
	if err := d.c.sup.start(ctx, d.victim); err != nil {
		return err
	}
	if err := d.c.waitConverged(ctx, 10*time.Second); err != nil {
		return err
	}
	s.notes = append(s.notes, fmt.Sprintf("%s back in the ring after %s", d.victim, ms(time.Since(t0))))
	if err := sleep(ctx, steadyTime); err != nil {
		return err
	}
	d.end(ctx, s)

	// Rolling restart: each node drains to its buddy, exits, starts again.
	for _, pi := range d.c.sup.infos() {
		s = d.begin("rolling restart " + pi.ID)
		t0 := time.Now()
		if err := d.c.sup.stop(pi.ID, 10*time.Second); err != nil {
			return err
		}
		drained := time.Since(t0)
		t1 := time.Now()
		if err := d.c.sup.start(ctx, pi.ID); err != nil {
			return err
		}
		if err := d.c.waitConverged(ctx, 10*time.Second); err != nil {
			return err
		}
		s.notes = append(s.notes, fmt.Sprintf("drained and exited in %s, back in the ring after %s", ms(drained), ms(time.Since(t1))))
		if err := sleep(ctx, rollPause); err != nil {
			return err
		}
		d.end(ctx, s)
	}
	return nil
}

func (d *demo) begin(name string) *step {
	s := &step{name: name, start: time.Now()}
	d.mu.Lock()
	d.steps = append(d.steps, s)
	d.cur.Store(int32(len(d.steps) - 1))
	d.mu.Unlock()
	d.progress("%s", name)
	return s
}

func (d *demo) end(ctx context.Context, s *step) {
	s.end = time.Now()
	for _, pi := range d.c.sup.infos() {
		if pi.State != stateUp {
			continue
		}
		if st, err := fetchStats(ctx, d.stats, pi.HTTPAddr); err == nil {
			s.sessions += st.Sessions
		}
	}
}

func (d *demo) progress(format string, args ...any) {
	fmt.Fprintf(d.out, "  [%5.1fs] %s\n", time.Since(d.began).Seconds(), fmt.Sprintf(format, args...))
}

// createSession makes the client's first write, which creates its session
// on the node the balancer picks.
func (d *demo) createSession(ctx context.Context, cl *demoClient) bool {
	for range 20 {
		if ok, _ := d.write(ctx, cl, "start", fmt.Sprintf("c%d", cl.id)); ok {
			return true
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

// writeLoop writes a new key every writePause until ctx ends.
func (d *demo) writeLoop(ctx context.Context, cl *demoClient) {
	for range maxClientWrite {
		if ctx.Err() != nil {
			return
		}
		cl.seq++
		_, _ = d.write(ctx, cl, fmt.Sprintf("w%05d", cl.seq), fmt.Sprintf("c%d-%d", cl.id, cl.seq))
		if sleep(ctx, writePause) != nil {
			return
		}
	}
}

// write sets k=v through the balancer, with a POST: neither the balancer
// nor Go's client sends a POST again once it may have reached a node, so a
// write applies at most once. A 200 is an acknowledged write.
func (d *demo) write(ctx context.Context, cl *demoClient, k, v string) (bool, error) {
	stepIdx := int(d.cur.Load())
	d.mu.Lock()
	s := d.steps[stepIdx]
	d.mu.Unlock()
	form := url.Values{"k": {k}, "v": {v}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/bench/write", strings.NewReader(form))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := cl.hc.Do(req)
	if err != nil {
		s.refused.Add(1)
		return false, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		s.refused.Add(1)
		return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	s.acked.Add(1)
	node := resp.Header.Get(nodeapp.NodeHeader)
	now := time.Now()
	if resp.Header.Get(nodeapp.NewSessionHeader) == "1" && k != "start" {
		// The client had a session; the node found none: it was lost.
		s.restarted.Add(1)
		d.progress("client %d: its session was not found; %s started a new one", cl.id, node)
	}
	cl.mu.Lock()
	cl.acked[k] = ackedWrite{value: v, step: stepIdx}
	cl.owner = node
	if at := d.killAt.Load(); at != 0 && cl.affected && cl.recovered.IsZero() && node != d.victim && now.UnixNano() > at {
		cl.recovered = now
	}
	cl.mu.Unlock()
	return true, nil
}

// owners counts the sessions per owner, as the last acknowledged write of
// each client saw it.
func (d *demo) owners() map[string]int {
	out := map[string]int{}
	for _, cl := range d.clients {
		cl.mu.Lock()
		out[cl.owner]++
		cl.mu.Unlock()
	}
	return out
}

func busiest(owners map[string]int) string {
	best, n := "", -1
	for id, k := range owners {
		if id != "" && (k > n || k == n && id < best) {
			best, n = id, k
		}
	}
	return best
}

func formatOwners(owners map[string]int) string {
	ids := make([]string, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s=%d", id, owners[id])
	}
	return strings.Join(parts, " ")
}

// waitRecovered waits until every session the killed node owned was served
// again, and returns when the first and the last were.
func (d *demo) waitRecovered(ctx context.Context, killAt time.Time, timeout time.Duration) (first, all time.Duration, err error) {
	deadline := time.Now().Add(timeout)
	for {
		first, all = -1, 0
		done := true
		for _, cl := range d.clients {
			cl.mu.Lock()
			if cl.affected {
				if cl.recovered.IsZero() {
					done = false
				} else {
					dt := cl.recovered.Sub(killAt)
					if first < 0 || dt < first {
						first = dt
					}
					all = max(all, dt)
				}
			}
			cl.mu.Unlock()
		}
		if done {
			return max(first, 0), all, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("sessions of %s not served again within %s", d.victim, timeout)
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
}

// check reads every client's session through the balancer, compares it
// with what was acknowledged, prints the report and returns the exit code.
func (d *demo) check(ctx context.Context, scriptErr error) int {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkBudget)
	defer cancel()
	reads := make([]map[string]string, len(d.clients))
	errs := make([]error, len(d.clients))
	var wg sync.WaitGroup
	for i, cl := range d.clients {
		wg.Go(func() { reads[i], errs[i] = d.readAll(ctx, cl) })
	}
	wg.Wait()
	lost, vanished, unreadable, total := 0, 0, 0, 0
	var firstLoss []string
	for i, cl := range d.clients {
		got, err := reads[i], errs[i]
		cl.mu.Lock()
		total += len(cl.acked)
		if err != nil {
			unreadable++
			firstLoss = append(firstLoss, fmt.Sprintf("client %d: %v", cl.id, err))
			cl.mu.Unlock()
			continue
		}
		if _, ok := cl.acked["start"]; ok && got["start"] == "" {
			vanished++
		}
		for k, w := range cl.acked {
			if got[k] != w.value {
				lost++
				d.steps[w.step].lost++
				if len(firstLoss) < 5 {
					firstLoss = append(firstLoss, fmt.Sprintf("client %d: %s=%q, acknowledged %q in step %d", cl.id, k, got[k], w.value, w.step+1))
				}
			}
		}
		cl.mu.Unlock()
	}

	fmt.Fprintf(d.out, "\n%-28s %6s %8s %7s %7s %5s  %s\n", "step", "time", "sessions", "acked", "refused", "lost", "notes")
	for i, s := range d.steps {
		end := s.end
		if end.IsZero() {
			end = time.Now()
		}
		notes := s.notes
		if n := s.restarted.Load(); n > 0 {
			notes = append(notes, fmt.Sprintf("%d sessions not found by a write", n))
		}
		fmt.Fprintf(d.out, "%-28s %5.1fs %8d %7d %7d %5d  %s\n", fmt.Sprintf("%d %s", i+1, s.name),
			end.Sub(s.start).Seconds(), s.sessions, s.acked.Load(), s.refused.Load(), s.lost, strings.Join(notes, "; "))
	}
	fmt.Fprintf(d.out, "\ncheck: %d sessions, %d acknowledged writes, %d lost, %d sessions vanished, %d unreadable\n",
		len(d.clients), total, lost, vanished, unreadable)
	for _, l := range firstLoss {
		fmt.Fprintln(d.out, "  ", l)
	}
	fmt.Fprintf(d.out, "lost writes: %d\n", lost)
	if lost > 0 || vanished > 0 || unreadable > 0 || scriptErr != nil {
		if scriptErr != nil {
			fmt.Fprintln(d.out, "demo failed:", scriptErr)
		}
		return 1
	}
	return 0
}

// readAll reads the client's session through the balancer, retrying a few
// times on an error answer.
func (d *demo) readAll(ctx context.Context, cl *demoClient) (map[string]string, error) {
	var err error
	for range 5 {
		var got map[string]string
		if err = getJSON(ctx, cl.hc, d.base+"/bench/get", &got); err == nil {
			return got, nil
		}
		if sleep(ctx, 200*time.Millisecond) != nil {
			break
		}
	}
	return nil, err
}

func getJSON(ctx context.Context, c *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func ms(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
