package clusterapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/examples/node"
)

// Process states, as the dashboard shows them.
const (
	stateStarting = "starting" // started, not yet healthy
	stateUp       = "up"       // healthy: the balancer routes to it
	stateStopping = "stopping" // SIGTERM sent: draining
	stateStopped  = "stopped"  // exited after a graceful stop
	stateKilled   = "killed"   // exited after SIGKILL
	stateCrashed  = "crashed"  // exited on its own
)

// proc is one node's child process.
type proc struct {
	id, httpAddr, replAddr string
	gossipAddr             string   // a membership's gossip address; "" for static
	env                    []string // per-node environment besides the ID and addresses

	op sync.Mutex // held by start, stop, restart: one operation at a time

	mu       sync.Mutex
	state    string
	cmd      *exec.Cmd
	pid      int
	started  time.Time
	starts   int
	killing  bool // SIGKILL sent by us
	stopping bool // SIGTERM sent by us
	exited   chan struct{}
}

// procInfo is a snapshot of a proc.
type procInfo struct {
	ID, HTTPAddr, ReplAddr, State string
	PID                           int
	Started                       time.Time
	Starts                        int
}

func (p *proc) info() procInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return procInfo{ID: p.id, HTTPAddr: p.httpAddr, ReplAddr: p.replAddr, State: p.state, PID: p.pid, Started: p.started, Starts: p.starts}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// supervisor starts, stops and kills the nodes, and records what happens to
// them.
type supervisor struct {
	exe    string
	env    []string // the children's environment, but for per-node entries
	procs  []*proc
	events *eventLog
	logs   *logSink
	client *http.Client
}

func newSupervisor(exe string, env []string, peers []buddy.Peer, httpAddrs []string, events *eventLog, logs *logSink) *supervisor {
	s := &supervisor{exe: exe, env: env, events: events, logs: logs,
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableKeepAlives: true}}}
	for i, p := range peers {
		s.procs = append(s.procs, &proc{id: p.ID, httpAddr: httpAddrs[i], replAddr: p.Addr, state: stateStopped})
	}
	return s
}

func (s *supervisor) proc(id string) (*proc, bool) {
	for _, p := range s.procs {
		if p.id == id {
			return p, true
		}
	}
	return nil, false
}

func (s *supervisor) infos() []procInfo {
	out := make([]procInfo, len(s.procs))
	for i, p := range s.procs {
		out[i] = p.info()
	}
	return out
}

// up reports whether node id is healthy and not stopping.
func (s *supervisor) up(id string) bool {
	p, ok := s.proc(id)
	return ok && p.info().State == stateUp
}

// start starts node id's process and waits until it answers /healthz.
func (s *supervisor) start(ctx context.Context, id string) error {
	p, ok := s.proc(id)
	if !ok {
		return fmt.Errorf("no node %q", id)
	}
	p.op.Lock()
	defer p.op.Unlock()
	return s.startLocked(ctx, p)
}

func (s *supervisor) startLocked(ctx context.Context, p *proc) error {
	if p.running() {
		return fmt.Errorf("%s is already running", p.id)
	}
	cmd := exec.Command(s.exe)
	cmd.Env = append(append([]string(nil), s.env...),
		envNodeID+"="+p.id, node.EnvID+"="+p.id, node.EnvHTTPAddr+"="+p.httpAddr, node.EnvReplAddr+"="+p.replAddr)
	cmd.Env = append(cmd.Env, p.env...)
	out := s.logs.writer(p.id)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a Ctrl-C in the terminal reaches only
	// the parent, which then stops the nodes one by one; and SIGTERM if the
	// parent dies, so no node outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.pid, p.state, p.started, p.exited = cmd, cmd.Process.Pid, stateStarting, time.Now(), exited
	p.killing, p.stopping = false, false
	p.starts++
	restart := p.starts > 1
	p.mu.Unlock()
	verb := "started"
	if restart {
		verb = "restarted"
	}
	s.events.add("start", p.id, fmt.Sprintf("%s %s (pid %d)", p.id, verb, cmd.Process.Pid))
	go s.reap(p, cmd, exited)
	return s.waitHealthy(ctx, p, exited)
}

// reap waits for the process to exit and records how it ended.
func (s *supervisor) reap(p *proc, cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	p.mu.Lock()
	switch {
	case p.killing:
		p.state = stateKilled
	case p.stopping:
		p.state = stateStopped // a failed drain exits non-zero: the event says so
	default:
		p.state = stateCrashed
	}
	state, pid := p.state, p.pid
	p.cmd = nil
	p.mu.Unlock()
	close(exited)
	how := "exited"
	if err != nil {
		how = err.Error()
	}
	kind := "exit"
	if state == stateCrashed {
		kind = "crash"
	}
	s.events.add(kind, p.id, fmt.Sprintf("%s (pid %d) %s: %s", p.id, pid, state, how))
}

// waitHealthy polls the node's /healthz until it answers, the process
// exits, or 20 seconds pass.
func (s *supervisor) waitHealthy(ctx context.Context, p *proc, exited <-chan struct{}) error {
	start := time.Now()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("%s exited before it was healthy", p.id)
		case <-deadline.C:
			return fmt.Errorf("%s not healthy after 20s", p.id)
		case <-tick.C:
		}
		resp, err := s.client.Get("http://" + p.httpAddr + "/healthz")
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		p.mu.Lock()
		if p.state == stateStarting {
			p.state = stateUp
		}
		p.mu.Unlock()
		s.events.add("up", p.id, fmt.Sprintf("%s healthy after %s", p.id, time.Since(start).Round(time.Millisecond)))
		return nil
	}
}

// kill sends SIGKILL to node id, as a crash would, and waits for the
// process to end. It returns when the signal was sent.
func (s *supervisor) kill(id string) (time.Time, error) {
	p, ok := s.proc(id)
	if !ok {
		return time.Time{}, fmt.Errorf("no node %q", id)
	}
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return time.Time{}, fmt.Errorf("%s is not running", id)
	}
	p.killing = true
	p.state = stateKilled // the balancer stops routing to it now
	p.mu.Unlock()
	at := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return at, fmt.Errorf("kill %s: %w", id, err)
	}
	s.events.add("kill", id, fmt.Sprintf("%s killed with SIGKILL (pid %d)", id, cmd.Process.Pid))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return at, fmt.Errorf("%s did not die", id)
	}
	return at, nil
}

// stop sends SIGTERM to node id (it drains its sessions to its buddy) and
// waits for it to exit; after timeout it sends SIGKILL.
func (s *supervisor) stop(id string, timeout time.Duration) error {
	p, ok := s.proc(id)
	if !ok {
		return fmt.Errorf("no node %q", id)
	}
	p.op.Lock()
	defer p.op.Unlock()
	return s.stopLocked(p, timeout)
}

func (s *supervisor) stopLocked(p *proc, timeout time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	p.state = stateStopping
	p.mu.Unlock()
	s.events.add("stop", p.id, fmt.Sprintf("%s asked to stop (SIGTERM): drains its sessions to its buddy", p.id))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.id, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	p.mu.Lock()
	p.killing = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	return fmt.Errorf("%s did not stop within %s: killed", p.id, timeout)
}

// restart stops node id gracefully if it runs, then starts it again and
// waits until it is healthy.
func (s *supervisor) restart(ctx context.Context, id string) error {
	p, ok := s.proc(id)
	if !ok {
		return fmt.Errorf("no node %q", id)
	}
	if !p.op.TryLock() {
		return fmt.Errorf("%s is busy", id)
	}
	defer p.op.Unlock()
	if err := s.stopLocked(p, 30*time.Second); err != nil {
		return err
	}
	return s.startLocked(ctx, p)
}

// stopAll stops every running node, one after the other, so that each
// drains into a node still running.
func (s *supervisor) stopAll(timeout time.Duration) error {
	var errs []error
	for _, p := range s.procs {
		p.op.Lock()
		if err := s.stopLocked(p, timeout); err != nil {
			errs = append(errs, err)
		}
		p.op.Unlock()
	}
	return errors.Join(errs...)
}

// event is one thing that happened to the cluster.
type event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	Node string    `json:"node"`
	Msg  string    `json:"msg"`
}

// eventLog keeps the latest events.
type eventLog struct {
	mu     sync.Mutex
	seq    uint64
	events []event
	echo   io.Writer // when not nil, every event is printed here
}

const maxEvents = 200

func (l *eventLog) add(kind, node, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e := event{Seq: l.seq, Time: time.Now(), Kind: kind, Node: node, Msg: msg}
	if len(l.events) == maxEvents {
		copy(l.events, l.events[1:])
		l.events = l.events[:maxEvents-1]
	}
	l.events = append(l.events, e)
	if l.echo != nil {
		fmt.Fprintf(l.echo, "%s  %-8s %s\n", e.Time.Format("15:04:05.000"), kind, msg)
	}
}

// latest returns up to n events, newest first.
func (l *eventLog) latest(n int) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]event, 0, min(n, len(l.events)))
	for i := len(l.events) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, l.events[i])
	}
	return out
}

// logSink collects the nodes' log lines: it prints them, prefixed with the
// node's ID, or keeps the last ones of each node to show after a failure.
type logSink struct {
	mu    sync.Mutex
	live  io.Writer // nil: keep only
	tails map[string][]string
}

const logTail = 60

func (l *logSink) writer(id string) io.Writer { return &lineWriter{sink: l, id: id} }

// lineWriter splits what a child writes into lines for the sink. exec
// calls Write from one goroutine at a time.
type lineWriter struct {
	sink *logSink
	id   string
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.sink.line(w.id, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line: flush it as it is
		w.sink.line(w.id, string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

func (l *logSink) line(id, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live != nil {
		fmt.Fprintf(l.live, "%-3s | %s\n", id, text)
	}
	if l.tails == nil {
		l.tails = map[string][]string{}
	}
	t := append(l.tails[id], text)
	if len(t) > logTail {
		t = t[len(t)-logTail:]
	}
	l.tails[id] = t
}

// dump writes the kept lines of every node to w.
func (l *logSink) dump(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, lines := range l.tails {
		fmt.Fprintf(w, "--- last log lines of %s ---\n%s\n", id, strings.Join(lines, "\n"))
	}
}
