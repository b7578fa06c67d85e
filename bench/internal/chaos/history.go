package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// Op kinds.
const (
	kindSet    = "set"    // POST /set?k=&v=
	kindGet    = "get"    // GET /get
	kindLogin  = "login"  // POST /login?user= (Regenerate, then set "user")
	kindLogout = "logout" // POST /logout (Invalidate)
	kindReplay = "replay" // GET /get with the cookie of a session logged out before
)

// Outcomes of an op.
const (
	outcomeOK      = "ok"      // 200: acknowledged
	outcomeFail    = "fail"    // never reached a node (connection refused): it did not happen
	outcomeUnknown = "unknown" // sent, but no 200 (timeout, reset, 5xx): it may or may not have happened
)

// Transport error classes (Op.Err).
const (
	errRefused = "conn"    // connection refused: not sent
	errTimeout = "timeout" // no answer in time
	errReset   = "reset"   // connection reset or closed after sending
	errOther   = "other"
)

// Op is one request as the history records it. Times are nanoseconds since
// the run started (monotonic clock), taken by the driver around the request.
type Op struct {
	ID    int    `json:"id"`
	User  int    `json:"user"`
	Round int    `json:"round"`
	Slot  int    `json:"slot"` // position in the round's group of parallel requests
	Kind  string `json:"kind"`
	Key   string `json:"key,omitempty"`   // set: the key; login: "user"
	Value string `json:"value,omitempty"` // set, login: the value written
	Final bool   `json:"final,omitempty"` // the user's read once the cluster quiesced
	// Node is where the balancer sent the request; RetryOf names the op
	// whose connection was refused, when this one is its retry.
	Node    string `json:"node"`
	RetryOf int    `json:"retry_of,omitempty"`
	Invoke  int64  `json:"invoke"`
	Return  int64  `json:"return"`
	Status  int    `json:"status,omitempty"` // HTTP status; 0 when there was none
	Err     string `json:"err,omitempty"`    // transport error class
	Detail  string `json:"detail,omitempty"` // the transport error, or the body of a non-200 answer
	Outcome string `json:"outcome"`
	// SentID is the session ID the request's cookie carried ("" for no
	// cookie); SessionID the one the answer names (X-Chaos-Session).
	SentID    string `json:"sent_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	// New: the request brought no valid session (Session.IsNew() when it
	// was loaded).
	New bool `json:"new,omitempty"`
	// ServedBy, Owner and Backup are the serving node and node.Location()
	// as the answer reports them.
	ServedBy string `json:"served_by,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Backup   string `json:"backup,omitempty"`
	// Version is the session version of a write's commit (exact, from the
	// node's replicator), or the version seen just after a read.
	Version uint64            `json:"version,omitempty"`
	Values  map[string]string `json:"values,omitempty"` // get, replay: what was read
}

// write reports whether the op writes a key.
func (o *Op) write() bool { return o.Kind == kindSet || o.Kind == kindLogin }

// latency is how long the op took.
func (o *Op) latency() time.Duration { return time.Duration(o.Return - o.Invoke) }

// Event kinds.
const (
	evKill      = "kill"      // SIGKILL (several nodes at once: a pair kill)
	evTerm      = "term"      // SIGTERM: graceful stop
	evExit      = "exit"      // a stopped node's process ended
	evStart     = "start"     // a node (re)started and answers /healthz
	evPause     = "pause"     // SIGSTOP
	evResume    = "resume"    // SIGCONT
	evLink      = "link"      // a replication link's mode changed (faultproxy)
	evHeal      = "heal"      // every link back to ok
	evQuiesce   = "quiesce"   // load stopped, faults healed, cluster settled
	evSettled   = "settled"   // the ring agrees and replication is idle
	evUnsettled = "unsettled" // the cluster did not settle in time
)

// Event is a fault or a change of the cluster, at At nanoseconds since the
// run started.
type Event struct {
	At     int64    `json:"at"`
	Kind   string   `json:"kind"`
	Nodes  []string `json:"nodes,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

// disruptive reports whether the event is a fault users may notice, for
// recovery times.
func (e *Event) disruptive() bool {
	switch e.Kind {
	case evKill, evTerm, evPause, evLink:
		return e.Kind != evLink || e.Detail != "ok"
	}
	return false
}

// StatSample is one reading of a node's GET /stats.
type StatSample struct {
	At          int64  `json:"at"`
	Node        string `json:"node"`
	Incarnation int    `json:"incarnation"` // how many times the node's process started before this one
	Buddy       string `json:"buddy"`
	Degraded    uint64 `json:"degraded"`
	// DegradedAlone: of Degraded, those made while no other node answered.
	DegradedAlone uint64 `json:"degraded_alone"`
	QueueDepth    int    `json:"queue_depth"`
	Resyncs       int    `json:"resyncs"`
	Sessions      int    `json:"sessions"`
}

// Header describes a run.
type Header struct {
	Scenario string `json:"scenario"`
	Run      int    `json:"run"`
	Seed     int64  `json:"seed"`
	Mode     string `json:"mode"`
	App      string `json:"app"`
	// Membership is how the nodes learned their peers: "" or static, or
	// the name of a command's Membership (memberlist).
	Membership string    `json:"membership,omitempty"`
	Nodes      []string  `json:"nodes"`
	Users      int       `json:"users"`
	Started    time.Time `json:"started"` // wall clock at time 0
	// AloneOK: the scenario leaves a node with no other node to reach (a
	// partition, a double failure), so its degraded commits made while
	// alone are what Degrade promises, not a violation.
	AloneOK bool `json:"alone_ok,omitempty"`
}

// History is everything a run recorded.
type History struct {
	Header Header
	Ops    []Op
	Events []Event
	Stats  []StatSample
}

// line is one JSON line of history.jsonl: exactly one field is set.
type line struct {
	Header *Header     `json:"header,omitempty"`
	Op     *Op         `json:"op,omitempty"`
	Event  *Event      `json:"event,omitempty"`
	Stat   *StatSample `json:"stat,omitempty"`
}

// recorder collects a run's history as it happens, and streams it to a
// JSON-lines file.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	h     History
	f     *os.File
	w     *bufio.Writer
	err   error
	next  int
}

// newRecorder starts a history whose time 0 is now, written to path.
func newRecorder(path string, hdr Header) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	r := &recorder{start: time.Now(), f: f, w: bufio.NewWriter(f)}
	hdr.Started = r.start
	r.h.Header = hdr
	r.writeLine(line{Header: &hdr})
	return r, nil
}

// now is the time since the run started, in nanoseconds.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// nextID reserves an op ID.
func (r *recorder) nextID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	return r.next
}

func (r *recorder) writeLine(l line) {
	if r.err != nil {
		return
	}
	b, err := json.Marshal(l)
	if err == nil {
		b = append(b, '\n')
		_, err = r.w.Write(b)
	}
	if err != nil {
		r.err = fmt.Errorf("history: %w", err)
	}
}

func (r *recorder) op(o Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Ops = append(r.h.Ops, o)
	r.writeLine(line{Op: &o})
}

func (r *recorder) event(kind string, nodes []string, detail string) {
	e := Event{At: r.now(), Kind: kind, Nodes: nodes, Detail: detail}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Events = append(r.h.Events, e)
	r.writeLine(line{Event: &e})
}

func (r *recorder) stat(s StatSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Stats = append(r.h.Stats, s)
	r.writeLine(line{Stat: &s})
}

// close flushes the file and returns the history, ops in ID order.
func (r *recorder) close() (History, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = fmt.Errorf("history: %w", err)
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("history: %w", err)
	}
	h := r.h
	h.Ops = slices.Clone(h.Ops)
	slices.SortFunc(h.Ops, func(a, b Op) int { return a.ID - b.ID })
	return h, r.err
}

// readHistory loads a history.jsonl written by a recorder.
func readHistory(rd io.Reader) (History, error) {
	var h History
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	seen := false
	for n := 1; sc.Scan(); n++ {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return h, fmt.Errorf("history line %d: %w", n, err)
		}
		switch {
		case l.Header != nil:
			h.Header, seen = *l.Header, true
		case l.Op != nil:
			h.Ops = append(h.Ops, *l.Op)
		case l.Event != nil:
			h.Events = append(h.Events, *l.Event)
		case l.Stat != nil:
			h.Stats = append(h.Stats, *l.Stat)
		}
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("history: %w", err)
	}
	if !seen {
		return h, errors.New("history: no header line")
	}
	slices.SortFunc(h.Ops, func(a, b Op) int { return a.ID - b.ID })
	return h, nil
}
