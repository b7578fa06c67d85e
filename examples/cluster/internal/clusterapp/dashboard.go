package clusterapp

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

//go:embed dashboard
var dashboardFiles embed.FS

// historyLen is how many one-second samples of each rate the dashboard
// keeps.
const historyLen = 60

// sample is one poll of a node's /api/stats.
type sample struct {
	at  time.Time
	pid int
	st  nodeapp.StatsInfo
}

// nodeView is one node as the dashboard shows it.
type nodeView struct {
	ID       string    `json:"id"`
	HTTP     string    `json:"http"`
	Repl     string    `json:"repl"`
	State    string    `json:"state"` // process state
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Starts   int       `json:"starts"`
	Answered bool      `json:"answered"` // its /api/stats answered the last poll

	Mode             string            `json:"mode"`
	Sessions         int               `json:"sessions"`
	Backups          int               `json:"backups"`
	Buddy            string            `json:"buddy"`
	Peers            []peerView        `json:"peers"`
	RecordsPerSec    float64           `json:"recordsPerSec"`
	RawBytesPerSec   float64           `json:"rawBytesPerSec"`
	WireBytesPerSec  float64           `json:"wireBytesPerSec"`
	RecordsSent      uint64            `json:"recordsSent"`
	BytesRaw         uint64            `json:"bytesRaw"`
	BytesWire        uint64            `json:"bytesWire"`
	Failovers        uint64            `json:"failovers"`
	Promoted         uint64            `json:"promoted"`
	TransferSessions uint64            `json:"transferSessions"`
	Degraded         uint64            `json:"degraded"`
	OwnershipMoves   uint64            `json:"ownershipMoves"`
	Fetches          map[string]uint64 `json:"fetches"`
	LatencyP50us     uint64            `json:"latencyP50us"`
	LatencyP99us     uint64            `json:"latencyP99us"`
	History          []float64         `json:"history"` // records/s, oldest first
}

type peerView struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// clusterState is the answer of /dashboard/api/state.
type clusterState struct {
	Now      time.Time      `json:"now"`
	Balancer string         `json:"balancer"`
	Mode     string         `json:"mode"`
	Nodes    []nodeView     `json:"nodes"`
	Events   []event        `json:"events"`
	Counts   balancerCounts `json:"balancer_counts"`
}

// monitor polls every node's stats once a second, derives rates, and turns
// what changed (failovers, takeovers, new buddies) into events.
type monitor struct {
	sup    *supervisor
	bal    *balancer
	events *eventLog
	mode   string
	addr   string // the balancer's address
	client *http.Client

	mu    sync.Mutex
	last  map[string]sample
	views map[string]nodeView
}

func newMonitor(sup *supervisor, bal *balancer, events *eventLog, mode string) *monitor {
	return &monitor{sup: sup, bal: bal, events: events, mode: mode,
		client: &http.Client{Timeout: 800 * time.Millisecond},
		last:   map[string]sample{}, views: map[string]nodeView{}}
}

// run polls until ctx ends.
func (m *monitor) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *monitor) poll(ctx context.Context) {
	infos := m.sup.infos()
	got := make([]*nodeapp.StatsInfo, len(infos))
	var wg sync.WaitGroup
	for i, pi := range infos {
		if pi.PID == 0 || pi.State == stateKilled || pi.State == stateStopped || pi.State == stateCrashed {
			continue
		}
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pi.HTTPAddr+"/api/stats", nil)
			if err != nil {
				return
			}
			resp, err := m.client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var st nodeapp.StatsInfo
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil {
				got[i] = &st
			}
		})
	}
	wg.Wait()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, pi := range infos {
		v := m.views[pi.ID]
		v.ID, v.HTTP, v.Repl = pi.ID, pi.HTTPAddr, pi.ReplAddr
		st := got[i]
		if st == nil {
			v.Answered = false
			if pi.State != stateUp {
				v.Sessions, v.Backups, v.Buddy, v.Peers = 0, 0, "", nil
				v.RecordsPerSec, v.RawBytesPerSec, v.WireBytesPerSec = 0, 0, 0
			}
			v.History = pushHistory(v.History, 0)
			m.views[pi.ID] = v
			continue
		}
		cur := sample{at: now, pid: pi.PID, st: *st}
		prev, had := m.last[pi.ID]
		same := had && prev.pid == cur.pid
		s := st.Stats
		v.Answered = true
		v.Mode, v.Sessions, v.Backups, v.Buddy = s.Mode, st.Sessions, s.Backups, s.Buddy
		v.Peers = v.Peers[:0]
		for _, p := range s.Peers {
			v.Peers = append(v.Peers, peerView{ID: p.ID, State: p.State.String()})
		}
		v.RecordsSent, v.BytesRaw, v.BytesWire = s.RecordsSent, s.BytesRaw, s.BytesWire
		v.Failovers, v.Promoted, v.TransferSessions = s.Failovers, s.Promoted, s.TransferSessions
		v.Degraded, v.OwnershipMoves, v.Fetches = s.Degraded, s.OwnershipMoves, s.Fetches
		v.LatencyP50us, v.LatencyP99us = s.Latency.Quantile(0.5), s.Latency.Quantile(0.99)
		v.RecordsPerSec, v.RawBytesPerSec, v.WireBytesPerSec = 0, 0, 0
		if same {
			dt := cur.at.Sub(prev.at).Seconds()
			p := prev.st.Stats
			if dt > 0 {
				v.RecordsPerSec = rate(s.RecordsSent, p.RecordsSent, dt)
				v.RawBytesPerSec = rate(s.BytesRaw, p.BytesRaw, dt)
				v.WireBytesPerSec = rate(s.BytesWire, p.BytesWire, dt)
			}
			m.noteChanges(pi.ID, p, s)
		} else if s.Buddy != "" {
			m.events.add("ring", pi.ID, fmt.Sprintf("%s joined the ring; its buddy is %s", pi.ID, s.Buddy))
		}
		v.History = pushHistory(v.History, v.RecordsPerSec)
		m.last[pi.ID] = cur
		m.views[pi.ID] = v
	}
}

// takeovers counts the sessions a node got from somewhere else than their
// live owner: a backup copy, the owner's buddy, a scan.
func takeovers(s buddy.Stats) uint64 {
	return s.Fetches[buddy.SourceBackup] + s.Fetches[buddy.SourceOwnersBuddy] + s.Fetches[buddy.SourceLocal] + s.Fetches[buddy.SourceScan]
}

// noteChanges records as events what changed between two polls of node id.
func (m *monitor) noteChanges(id string, prev, cur buddy.Stats) {
	// Counters only grow within one process (prev and cur share its pid).
	if d := max(cur.Failovers-prev.Failovers, takeovers(cur)-takeovers(prev)); d > 0 {
		m.events.add("failover", id, fmt.Sprintf("failover: %s took over %d %s of a lost node from their backup copies", id, d, plural(d, "session")))
	}
	if d := cur.Promoted - prev.Promoted; d > 0 {
		m.events.add("handover", id, fmt.Sprintf("%s took over %d %s from a draining node", id, d, plural(d, "session")))
	}
	if cur.Buddy != prev.Buddy {
		switch {
		case cur.Buddy == "":
			m.events.add("ring", id, fmt.Sprintf("%s has no buddy: its sessions have no backup", id))
		case prev.Buddy == "":
			m.events.add("ring", id, fmt.Sprintf("%s's buddy is now %s", id, cur.Buddy))
		default:
			m.events.add("ring", id, fmt.Sprintf("%s's buddy is now %s (was %s)", id, cur.Buddy, prev.Buddy))
		}
	}
	if d := cur.TransferSessions - prev.TransferSessions; d > 0 {
		m.events.add("transfer", id, fmt.Sprintf("%s copied %d %s in full to its buddy %s", id, d, plural(d, "session"), cur.Buddy))
	}
}

func plural(n uint64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func rate(cur, prev uint64, dt float64) float64 {
	if cur < prev {
		return 0
	}
	return float64(cur-prev) / dt
}

func pushHistory(h []float64, v float64) []float64 {
	h = append(h, v)
	if len(h) > historyLen {
		h = append(h[:0:0], h[len(h)-historyLen:]...)
	}
	return h
}

// state assembles what the dashboard shows.
func (m *monitor) state() clusterState {
	infos := m.sup.infos()
	m.mu.Lock()
	nodes := make([]nodeView, len(infos))
	for i, pi := range infos {
		v := m.views[pi.ID]
		v.Peers = append([]peerView(nil), v.Peers...)
		v.History = append([]float64(nil), v.History...)
		v.ID, v.HTTP, v.Repl = pi.ID, pi.HTTPAddr, pi.ReplAddr
		v.State, v.PID, v.Started, v.Starts = pi.State, pi.PID, pi.Started, pi.Starts
		if pi.State != stateUp && pi.State != stateStopping && pi.State != stateStarting {
			v.PID = 0
		}
		nodes[i] = v
	}
	m.mu.Unlock()
	return clusterState{Now: time.Now(), Balancer: m.addr, Mode: m.mode, Nodes: nodes,
		Events: m.events.latest(40), Counts: m.bal.snapshot()}
}

// dashboardHandler serves the dashboard page, its state and its actions.
func (m *monitor) dashboardHandler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard/", http.FileServerFS(static)))
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	})
	mux.HandleFunc("GET /dashboard/api/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(m.state())
	})
	action := func(name string, do func(id string) error) {
		mux.HandleFunc("POST /dashboard/api/"+name, func(w http.ResponseWriter, r *http.Request) {
			// A custom header: a cross-site form cannot send it.
			if r.Header.Get("X-Tandem-Dashboard") != "1" {
				http.Error(w, "missing X-Tandem-Dashboard header", http.StatusForbidden)
				return
			}
			id := r.URL.Query().Get("node")
			p, ok := m.sup.proc(id)
			if !ok {
				http.Error(w, "no such node", http.StatusNotFound)
				return
			}
			if err := do(p.id); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.WriteHeader(http.StatusAccepted)
		})
	}
	action("kill", func(id string) error {
		_, err := m.sup.kill(id)
		return err
	})
	background := func(what string, f func() error) {
		go func() {
			if err := f(); err != nil {
				m.events.add("error", "", what+": "+err.Error())
			}
		}()
	}
	action("restart", func(id string) error {
		p, _ := m.sup.proc(id)
		if !p.op.TryLock() {
			return fmt.Errorf("%s is busy", id)
		}
		p.op.Unlock()
		background("restart "+id, func() error { return m.sup.restart(ctx, id) })
		return nil
	})
	action("stop", func(id string) error {
		if !m.sup.up(id) {
			return fmt.Errorf("%s is not up", id)
		}
		background("stop "+id, func() error { return m.sup.stop(id, 30*time.Second) })
		return nil
	})
	return mux
}
