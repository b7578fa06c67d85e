// Package clustertest is the conformance suite of Tandem's cluster: one set
// of replication, failover, drain, join and restart scenarios that every
// membership implementation must pass — the static peer list that a node
// probes itself (buddy.Config.Peers) and buddy/memberlist alike.
//
// An implementation plugs in through NewCluster: for each scenario it gets
// the node IDs the scenario may start and the cluster key, and it returns a
// Cluster that gives each run of a node its buddy.Config (how the node
// finds the others is the implementation's business). The suite starts the
// nodes, a core.Manager on each, and drives them through their middleware
// with browser-like clients, using only the exported APIs of buddy and
// core. Each implementation's package runs it from its tests:
//
//	func TestSuite(t *testing.T) { clustertest.Run(t, newCluster) }
//
// Every wait is bounded (Timeout) and every node stops when its test ends.
package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// Timeout bounds every wait of the suite: convergence, failure detection,
// a transfer, a drain. Generous, for -race on a loaded machine.
const Timeout = 15 * time.Second

// Spec describes the cluster of one scenario.
type Spec struct {
	// IDs are the IDs of every node the scenario may start, in ID order;
	// it starts them in that order, maybe not all at once.
	IDs []string
	// Key is the cluster key, random per test process: set it as
	// buddy.Config.ClusterKeys (and as the membership layer's key).
	Key []byte
}

// Cluster is one membership implementation's cluster for one scenario.
type Cluster interface {
	// Config returns the configuration of the next run of node id, one
	// of Spec.IDs: ID, Listener (or ListenAddr), ClusterKeys, and Peers or
	// Membership so that the node finds the nodes started before it, with
	// timers short enough for a test. Start calls it for a node's first
	// run, and again for each restart, once the previous run stopped: a
	// restarted node may take the address of its previous run, or a new
	// one, as long as the others find it.
	Config(t testing.TB, id string) buddy.Config
}

// NewCluster returns a fresh Cluster for a scenario; Run calls it once
// per scenario, with the scenario's test.
type NewCluster func(t testing.TB, spec Spec) Cluster

// cookieKey is the cookie key of every manager of the suite.
var cookieKey = core.KeyPair{Hash: randomBytes(32), Block: randomBytes(32)}

// clusterKey is the cluster key of every scenario: random per test
// process, so that no cluster of another process on the machine can talk
// to these nodes.
var clusterKey = randomBytes(buddy.ClusterKeySize)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// Run runs the suite against the implementation that newCluster builds,
// one subtest per scenario:
//
//   - Replication: a write acknowledged by its owner is held by the
//     owner's buddy (and no other node), and reads the same through
//     another node.
//   - Failover: the owner dies abruptly; its sessions are served with
//     every acknowledged write by the survivors, and the ring closes
//     without it.
//   - Drain: the owner shuts down gracefully; its buddy owns its sessions
//     with every acknowledged write, and the others see it Left.
//   - Join: a new node joins as an owner's successor; it receives full
//     copies of that owner's sessions, and serves them when the owner dies.
//   - Restart: a node dies and comes back empty under its ID; it becomes
//     its predecessor's buddy again, receives its sessions, and serves them
//     when that predecessor dies.
func Run(t *testing.T, newCluster NewCluster) {
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, nc NewCluster)
	}{
		{"Replication", replication},
		{"Failover", failover},
		{"Drain", drain},
		{"Join", join},
		{"Restart", restart},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, newCluster) })
	}
}

// Member is one node of a scenario's cluster: a buddy.Node and the
// core.Manager it replicates for, serving the suite's application.
type Member struct {
	// ID is the node's ID.
	ID string
	// Node is the current run's node.
	Node *buddy.Node
	// Manager is the current run's manager, bound to Node.
	Manager *core.Manager

	c       Cluster
	handler http.Handler
	gone    atomic.Bool
}

// Start starts a run of node id of c, with a manager bound to it; both
// stop when t ends, if they did not before.
func Start(t testing.TB, c Cluster, id string) *Member {
	t.Helper()
	m := &Member{ID: id, c: c}
	m.start(t)
	return m
}

func (m *Member) start(t testing.TB) {
	t.Helper()
	cfg := m.c.Config(t, m.ID)
	if cfg.ID != m.ID {
		t.Fatalf("Config(%q) returned a config of node %q", m.ID, cfg.ID)
	}
	var log *slog.Logger
	if os.Getenv("TANDEM_TEST_LOG") != "" { // debugging aid: every node's log on stderr
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if cfg.Logger == nil {
			cfg.Logger = log
		}
	}
	node, err := buddy.New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", m.ID, err)
	}
	mgr, err := core.NewManager(core.Config{Keys: []core.KeyPair{cookieKey}, Replicator: node, Logger: log})
	if err != nil {
		_ = node.Close()
		t.Fatalf("start %s: %v", m.ID, err)
	}
	t.Cleanup(func() {
		_ = mgr.Close()
		_ = node.Close()
	})
	m.Node, m.Manager, m.handler = node, mgr, mgr.Middleware(http.HandlerFunc(app))
	m.gone.Store(false)
}

// Gone reports whether the member's current run was killed or drained.
func (m *Member) Gone() bool { return m.gone.Load() }

// Kill stops the member at once, as kill -9 would: no drain, no leave;
// its sessions survive only as its buddy's copies.
func (m *Member) Kill() {
	m.gone.Store(true) // first: a request answered while it stops is not acknowledged
	_ = m.Manager.Close()
	_ = m.Node.Close()
}

// Drain stops the member gracefully (buddy.Node.Shutdown, which hands its
// sessions over to its buddy and leaves), then closes its manager.
func (m *Member) Drain(ctx context.Context) error {
	err := m.Node.Shutdown(ctx)
	m.gone.Store(true)
	_ = m.Manager.Close()
	return err
}

// Restart starts a fresh, empty run of the member, under its ID, once its
// current run was killed or drained.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if !m.Gone() {
		t.Fatalf("restart of %s, which runs", m.ID)
	}
	m.start(t)
}

// ServeHTTP serves r through the member's session middleware.
func (m *Member) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// state is what m believes of peer id.
func (m *Member) state(id string) buddy.State {
	for _, p := range m.Node.Peers() {
		if p.ID == id {
			return p.State
		}
	}
	return buddy.Unknown
}

// app is the application the members serve: POST /set?k=v&... sets the
// attributes; every request answers the session's ID in X-Session and its
// attributes as a JSON object.
func app(w http.ResponseWriter, r *http.Request) {
	s := core.FromContext(r.Context())
	if r.URL.Path == "/set" {
		for k, v := range r.URL.Query() {
			if err := s.Set(k, v[0]); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
	}
	out := map[string]string{}
	for _, k := range s.Keys() {
		v, _, err := core.Get[string](s, k)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out[k] = v
	}
	b, _ := json.Marshal(out) // a map of strings always encodes
	w.Header().Set("X-Session", s.ID())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// client is a browser: it keeps the cookies it is given, and remembers
// the writes acknowledged to it.
type client struct {
	name    string
	cookies map[string]string
	id      string            // the session's ID, as the last answer gave it
	acked   map[string]string // acknowledged writes
}

func newClient(name string) *client {
	return &client{name: name, cookies: map[string]string{}, acked: map[string]string{}}
}

// do sends one request through m and keeps the cookies of the answer.
func (c *client) do(m *Member, method, target string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://app.test"+target, nil)
	for name, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: v})
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	if id := rec.Header().Get("X-Session"); id != "" {
		c.id = id
	}
	return rec
}

// set writes k=v through m and fails t unless it is acknowledged (200
// from a member that runs), within Timeout: a 503 (the cluster could not
// tell in time where the session is, on a busy machine) is sent again.
func (c *client) set(t testing.TB, m *Member, k, v string) {
	t.Helper()
	before := c.id
	target := "/set?" + url.Values{k: {v}}.Encode()
	var rec *httptest.ResponseRecorder
	for deadline := time.Now().Add(Timeout); ; {
		rec = c.do(m, http.MethodPost, target)
		if rec.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec.Code != http.StatusOK || m.Gone() {
		t.Fatalf("%s: write %s=%s through %s: %d %s", c.name, k, v, m.ID, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	if before != "" && c.id != before {
		t.Fatalf("%s: write through %s served session %s instead of %s (acknowledged: %v)", c.name, m.ID, c.id, before, c.acked)
	}
	c.acked[k] = v
}

// check fails t unless the session, read through m, is the client's
// session with every acknowledged write. A 503 is asked again, within
// Timeout; a fresh session, or one without an acknowledged write, is a
// loss.
func (c *client) check(t testing.TB, m *Member) {
	t.Helper()
	before := c.id
	var rec *httptest.ResponseRecorder
	for deadline := time.Now().Add(Timeout); ; {
		rec = c.do(m, http.MethodGet, "/get")
		if rec.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: read through %s: %d %s", c.name, m.ID, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%s: read through %s: %v", c.name, m.ID, err)
	}
	if c.id != before {
		t.Fatalf("%s: read through %s served session %s (%v) instead of %s (acknowledged: %v)", c.name, m.ID, c.id, got, before, c.acked)
	}
	for k, v := range c.acked {
		if got[k] != v {
			t.Fatalf("%s: read through %s: %s=%q, acknowledged %q (session %s: %v)", c.name, m.ID, k, got[k], v, c.id, got)
		}
	}
}

// heldBy reports whether m holds a backup copy of the client's session
// from owner with every acknowledged write, and why not.
func (c *client) heldBy(m *Member, owner string) (bool, string) {
	ch, from, ok := m.Node.Backup(c.id)
	if !ok {
		return false, fmt.Sprintf("%s holds no copy of %s's session %s", m.ID, c.name, c.id)
	}
	if from != owner {
		return false, fmt.Sprintf("%s holds %s's session %s from %s, want from %s", m.ID, c.name, c.id, from, owner)
	}
	got := map[string][]byte{}
	for _, a := range ch.Set {
		got[a.Key] = a.Value
	}
	for k, v := range c.acked {
		want, _ := json.Marshal(v) // core's default codec, JSON
		if !bytes.Equal(got[k], want) {
			return false, fmt.Sprintf("%s's copy of %s's session %s (v%d from %s): %s=%s, acknowledged %s", m.ID, c.name, c.id, ch.Version, from, k, got[k], want)
		}
	}
	return true, ""
}

// waitFor polls cond until it holds, failing t after Timeout with what
// and cond's last reason.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	var why string
	for deadline := time.Now().Add(Timeout); ; {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, Timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// converged reports whether every member that runs is ready, sees every
// other one alive and every gone one dead or left, and has the next
// running member in ID order as its buddy.
func converged(ms []*Member) (bool, string) {
	var live []*Member
	for _, m := range ms {
		if !m.Gone() {
			live = append(live, m)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].ID < live[j].ID })
	for i, m := range live {
		for _, o := range ms {
			if o == m {
				continue
			}
			st := m.state(o.ID)
			if !o.Gone() && st != buddy.Alive {
				return false, fmt.Sprintf("%s sees %s %s: %v", m.ID, o.ID, st, m.Node.Peers())
			}
			if o.Gone() && st != buddy.Dead && st != buddy.Left {
				return false, fmt.Sprintf("%s sees gone %s %s: %v", m.ID, o.ID, st, m.Node.Peers())
			}
		}
		want := ""
		if len(live) > 1 {
			want = live[(i+1)%len(live)].ID
		}
		if got := m.Node.Stats().Buddy; got != want {
			return false, fmt.Sprintf("%s's buddy is %q, want %q; it sees %+v", m.ID, got, want, m.Node.Peers())
		}
		if want != "" && !m.Node.Ready() {
			return false, m.ID + " is not ready"
		}
	}
	return true, ""
}

// waitConverged waits until the cluster of ms converged (see converged).
func waitConverged(t testing.TB, ms ...*Member) {
	t.Helper()
	waitFor(t, "cluster converges", func() (bool, string) { return converged(ms) })
}

// setup starts a cluster of newCluster with room for n nodes n1..nN and
// starts the first k, waiting until they converged.
func setup(t *testing.T, nc NewCluster, n, k int) (Cluster, []*Member) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	c := nc(t, Spec{IDs: ids, Key: slices.Clone(clusterKey)})
	ms := make([]*Member, k)
	for i := range ms {
		ms[i] = Start(t, c, ids[i])
	}
	waitConverged(t, ms...)
	return c, ms
}

// clients makes n clients, each with a session written through the
// member that pick names.
func clients(t *testing.T, n int, pick func(i int) *Member) []*client {
	t.Helper()
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = newClient(fmt.Sprintf("client%d", i))
		m := pick(i)
		cs[i].set(t, m, "a", fmt.Sprint(i))
		cs[i].set(t, m, "b", fmt.Sprintf("%d-%s", i, m.ID)) // a delta on top of the first
	}
	return cs
}

// byID returns the member of ms named id.
func byID(t testing.TB, ms []*Member, id string) *Member {
	t.Helper()
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no member %q", id)
	return nil
}

// waitHeld waits until owner's buddy is b and b holds every client's
// session with every acknowledged write (a ring that changes meanwhile is
// waited out).
func waitHeld(t testing.TB, owner, b *Member, cs []*client) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s, %s's buddy, holds its sessions", b.ID, owner.ID), func() (bool, string) {
		if id := owner.Node.Stats().Buddy; id != b.ID {
			return false, fmt.Sprintf("%s's buddy is %q", owner.ID, id)
		}
		for _, c := range cs {
			if ok, why := c.heldBy(b, owner.ID); !ok {
				return false, why
			}
		}
		return true, ""
	})
}

func replication(t *testing.T, nc NewCluster) {
	_, ms := setup(t, nc, 3, 3)
	cs := clients(t, 6, func(i int) *Member { return ms[i%3] })
	for i, c := range cs {
		owner := ms[i%3]
		b := byID(t, ms, owner.Node.Stats().Buddy)
		// Sync mode: the acknowledgement waited for the buddy.
		if ok, why := c.heldBy(b, owner.ID); !ok {
			t.Fatalf("acknowledged, yet %s", why)
		}
		for _, o := range ms {
			if o != owner && o != b {
				if _, _, ok := o.Node.Backup(c.id); ok {
					t.Fatalf("%s, neither owner nor buddy, holds a copy of %s", o.ID, c.id)
				}
			}
		}
	}
	for _, m := range ms {
		if got := m.Node.Stats().Backups; got != 2 {
			t.Errorf("%s holds %d backups, want the 2 sessions of its predecessor", m.ID, got)
		}
	}
	// Through another node: the session moves there, with its writes, and
	// its new owner's buddy gets it.
	for i, c := range cs {
		next := ms[(i+1)%3]
		c.check(t, next)
		c.set(t, next, "c", "moved")
		c.check(t, ms[(i+2)%3])
	}
	for i, m := range ms {
		var owned []*client
		for _, c := range cs {
			if _, ok := m.Manager.Owned(c.id); ok {
				owned = append(owned, c)
			}
		}
		waitHeld(t, m, ms[(i+1)%3], owned)
	}
}

func failover(t *testing.T, nc NewCluster) {
	_, ms := setup(t, nc, 3, 3)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	cs := clients(t, 8, func(int) *Member { return n1 })
	waitHeld(t, n1, n2, cs)
	n1.Kill()
	// At once, whether or not the death was noticed yet: the survivors
	// serve every acknowledged write, of the same session, and take writes.
	survivors := []*Member{n2, n3}
	for i, c := range cs {
		s := survivors[i%2]
		c.check(t, s)
		c.set(t, s, "c", "after")
	}
	waitConverged(t, ms...)
	if got := n2.Node.Stats().Failovers + n3.Node.Stats().Failovers; got == 0 {
		t.Error("no failover counted")
	}
	for i, s := range survivors {
		var owned []*client
		for _, c := range cs {
			if _, ok := s.Manager.Owned(c.id); ok {
				owned = append(owned, c)
			}
		}
		if len(owned) == 0 {
			t.Errorf("%s owns none of the sessions it served", s.ID)
		}
		waitHeld(t, s, survivors[(i+1)%2], owned)
	}
	for i, c := range cs {
		c.check(t, survivors[(i+1)%2])
	}
}

func drain(t *testing.T, nc NewCluster) {
	_, ms := setup(t, nc, 3, 3)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	cs := clients(t, 8, func(int) *Member { return n2 })
	waitHeld(t, n2, n3, cs)
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	if err := n2.Drain(ctx); err != nil {
		t.Fatalf("drain n2: %v", err)
	}
	if got := n2.Node.Stats().Drains; got != 1 {
		t.Errorf("n2 counts %d drains", got)
	}
	// Its buddy owns its sessions now, and they are backed up in the ring
	// that closed without it.
	for _, c := range cs {
		if _, ok := n3.Manager.Owned(c.id); !ok {
			t.Fatalf("n3 does not own %s's session %s after n2's drain", c.name, c.id)
		}
	}
	waitFor(t, "n2 seen left", func() (bool, string) {
		for _, m := range []*Member{n1, n3} {
			if st := m.state("n2"); st != buddy.Left {
				return false, fmt.Sprintf("%s sees n2 %s", m.ID, st)
			}
		}
		return true, ""
	})
	waitConverged(t, ms...)
	waitHeld(t, n3, n1, cs)
	for i, c := range cs {
		c.check(t, []*Member{n1, n3}[i%2])
		c.set(t, n1, "c", "after")
		c.check(t, n3)
	}
}

func join(t *testing.T, nc NewCluster) {
	c, ms := setup(t, nc, 4, 3)
	n1, n3 := ms[0], ms[2]
	cs := clients(t, 8, func(int) *Member { return n3 })
	waitHeld(t, n3, n1, cs)
	n4 := Start(t, c, "n4") // n3's successor: its new buddy
	ms = append(ms, n4)
	waitConverged(t, ms...)
	waitHeld(t, n3, n4, cs)
	waitFor(t, "n1 drops its copies of n3's sessions", func() (bool, string) {
		if ids := n1.Node.BackupIDs("n3"); len(ids) > 0 {
			return false, fmt.Sprintf("n1 holds %v", ids)
		}
		return true, ""
	})
	for i, c := range cs {
		c.set(t, n3, "c", fmt.Sprint(i))
	}
	waitHeld(t, n3, n4, cs)
	n3.Kill()
	for i, c := range cs {
		c.check(t, []*Member{n4, n1, ms[1]}[i%3])
	}
	waitConverged(t, ms...)
}

func restart(t *testing.T, nc NewCluster) {
	_, ms := setup(t, nc, 3, 3)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	cs := clients(t, 8, func(int) *Member { return n1 })
	waitHeld(t, n1, n2, cs)
	n2.Kill() // n1's buddy
	waitConverged(t, ms...)
	waitHeld(t, n1, n3, cs)
	n2.Restart(t) // empty, under its ID: n1's buddy again
	waitConverged(t, ms...)
	waitHeld(t, n1, n2, cs)
	for i, c := range cs {
		c.set(t, n1, "c", fmt.Sprint(i))
	}
	waitHeld(t, n1, n2, cs)
	n1.Kill()
	for i, c := range cs {
		c.check(t, []*Member{n2, n3}[i%2])
	}
	waitConverged(t, ms...)
}
