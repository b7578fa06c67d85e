package buddy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/loopport"
	"go.uber.org/goleak"
)

// TestMain lets the test binary run as a cluster node in a child process,
// so a test can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_TEST_NODE") != "" {
		if err := runChildNode(); err != nil {
			fmt.Fprintln(os.Stderr, "child node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runChildNode serves testApp on TANDEM_TEST_HTTP with a buddy node on
// TANDEM_TEST_REPL; peers come as id=addr,id=addr. Optional knobs:
// TANDEM_TEST_MAX_SESSIONS, TANDEM_TEST_MAX_BACKUPS and
// TANDEM_TEST_REPL_TIMEOUT. It logs warnings and errors to stderr, and
// serves /stats, /backup and /users (see childStats, childUsers) outside the session
// middleware.
func runChildNode() error {
	var peers []Peer
	for _, kv := range strings.Split(os.Getenv("TANDEM_TEST_PEERS"), ",") {
		id, addr, _ := strings.Cut(kv, "=")
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := Config{ID: os.Getenv("TANDEM_TEST_NODE"), ListenAddr: os.Getenv("TANDEM_TEST_REPL"),
		Peers: peers, ClusterKeys: [][]byte{testClusterKey}, Logger: log}
	cfg.MaxBackups, _ = strconv.Atoi(os.Getenv("TANDEM_TEST_MAX_BACKUPS"))
	cfg.ReplicationTimeout, _ = time.ParseDuration(os.Getenv("TANDEM_TEST_REPL_TIMEOUT"))
	node, err := New(cfg)
	if err != nil {
		return err
	}
	mcfg := core.Config{Keys: []core.KeyPair{testCookieKey}, Replicator: node, Logger: log}
	var events childEvents
	events.hooks(&mcfg)
	mcfg.Limits.MaxSessions, _ = strconv.Atoi(os.Getenv("TANDEM_TEST_MAX_SESSIONS"))
	mgr, err := core.NewManager(mcfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		out := map[string]string{}
		for _, k := range s.Keys() {
			out[k], _, _ = core.Get[string](s, k)
		}
		w.Header().Set("X-Session", s.ID())
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/", testApp)
	app := mgr.Middleware(mux)
	outside := http.NewServeMux()
	outside.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("gc") {
			runtime.GC()
			debug.FreeOSMemory()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(childStats{Node: node.Stats(), Core: mgr.Stats(), Sessions: mgr.Len(),
			HeapAlloc: ms.HeapAlloc, Goroutines: runtime.NumGoroutine()})
	})
	outside.HandleFunc("/backup", func(w http.ResponseWriter, r *http.Request) {
		c, owner, ok := node.Backup(r.URL.Query().Get("id"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(childBackup{Owner: owner, Version: c.Version, Epoch: c.Epoch, Accessed: c.Accessed})
	})
	outside.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		events.mu.Lock()
		defer events.mu.Unlock()
		_ = json.NewEncoder(w).Encode(events.list)
	})
	outside.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		var out childUsers
		list, err := mgr.UserSessions(r.Context(), r.URL.Query().Get("u"))
		out.Sessions = list
		if r.URL.Query().Has("end") {
			out.Ended, err = mgr.InvalidateUser(r.Context(), r.URL.Query().Get("u"))
		}
		if err != nil {
			out.Err = err.Error()
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	outside.Handle("/", app)
	srv := &http.Server{Addr: os.Getenv("TANDEM_TEST_HTTP"), Handler: outside}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	err = node.Shutdown(sctx)
	mgr.Close()
	return err
}

// childStats is what a child node's /stats answers.
type childStats struct {
	Node       Stats
	Core       core.Stats
	Sessions   int
	HeapAlloc  uint64 // after a collection when asked with ?gc
	Goroutines int
}

// childEvent is one event a child node reported (its /events).
type childEvent struct {
	Kind   string
	ID     string
	Reason core.Reason
	Node   string
}

// childEvents records a child node's events.
type childEvents struct {
	mu   sync.Mutex
	list []childEvent
}

func (l *childEvents) hooks(c *core.Config) {
	rec := func(kind string) func(context.Context, core.Event) {
		return func(_ context.Context, e core.Event) {
			l.mu.Lock()
			l.list = append(l.list, childEvent{kind, e.ID, e.Reason, e.Node})
			l.mu.Unlock()
		}
	}
	c.Events = core.Events{OnCreated: rec("created"), OnInvalidated: rec("invalidated"), OnExpired: rec("expired"), OnTakenOver: rec("taken")}
}

// childUsers is what a child node's /users?u= answers: the user's
// sessions in the cluster (and how many it ended, with &end).
type childUsers struct {
	Sessions []core.SessionInfo
	Ended    int
	Err      string
}

// childBackup is what a child node's /backup?id= answers of its copy.
type childBackup struct {
	Owner    string
	Version  uint64
	Epoch    uint64
	Accessed time.Time
}

// freeAddr reserves a loopback port for a node process (loopport.Reserve)
// until the test ends, and returns its address: another package's tests,
// run beside these, pick ports in the same range, and a port merely found
// free once was taken that way (a node could not start). startProcMaybe
// lets the node bind it (share).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, f, err := loopport.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	reserved.Store(addr, f)
	t.Cleanup(func() {
		reserved.Delete(addr)
		f.Close()
	})
	return addr
}

// reserved maps each address freeAddr reserved to its socket (test state
// only: the tests of this package share one process).
var reserved sync.Map

// share lets a node process bind addr if freeAddr reserved it; once
// shared, the port stays the node's across restarts.
func share(t *testing.T, addr string) {
	if v, ok := reserved.Load(addr); ok {
		if err := loopport.Share(v.(*os.File)); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
	}
}

// proc is a node running in a child process. Its stderr (its log) is
// kept in log, and written to the test's log if the test fails or
// TANDEM_TEST_LOG is set.
type proc struct {
	id, http string
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{}
}

func startProc(t *testing.T, id, httpAddr, replAddr, peers string, env ...string) *proc {
	t.Helper()
	p := startProcMaybe(t, id, httpAddr, replAddr, peers, env...)
	if p == nil {
		t.Fatalf("node %s did not start", id)
	}
	return p
}

// startProcMaybe starts a node process and waits until it serves; it
// returns nil if it exited first (its ports were taken, say).
func startProcMaybe(t *testing.T, id, httpAddr, replAddr, peers string, env ...string) *proc {
	t.Helper()
	share(t, httpAddr)
	share(t, replAddr)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_TEST_NODE="+id, "TANDEM_TEST_HTTP="+httpAddr,
		"TANDEM_TEST_REPL="+replAddr, "TANDEM_TEST_PEERS="+peers)
	cmd.Env = append(cmd.Env, env...)
	p := &proc{id: id, http: httpAddr, cmd: cmd, log: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.log
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		cmd.Stderr = io.MultiWriter(p.log, os.Stderr)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("log of %s (pid %d):\n%s", id, cmd.Process.Pid, p.log.String())
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "READY"
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(p.exited)
	}()
	select {
	case ok := <-ready:
		if !ok {
			return nil
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not start in time", id)
	}
	return p
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop ends the process with SIGTERM (a graceful drain) and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s did not stop after SIGTERM", p.id)
	}
}

// TestSIGKILLedProcessLosesNoAcknowledgedWrite runs three nodes as real
// processes, kills the owner of a session with SIGKILL under writes, and
// reads every acknowledged write back through the survivors.
func TestSIGKILLedProcessLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ids := []string{"n1", "n2", "n3"}
	httpAddrs, replAddrs := map[string]string{}, map[string]string{}
	var peers []string
	for _, id := range ids {
		httpAddrs[id], replAddrs[id] = freeAddr(t), freeAddr(t)
		peers = append(peers, id+"="+replAddrs[id])
	}
	procs := map[string]*proc{}
	for _, id := range ids {
		procs[id] = startProc(t, id, httpAddrs[id], replAddrs[id], strings.Join(peers, ","))
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	acked := map[string]string{}
	write := func(node string, k, v string) {
		resp, err := client.Get("http://" + httpAddrs[node] + "/set?" + k + "=" + v)
		if err != nil {
			return // not acknowledged
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			acked[k] = v
		}
	}
	// The cookie jar is per host:port; give every node the same cookie.
	share := func(from string) {
		u := mustURL("http://" + httpAddrs[from] + "/")
		for _, id := range ids {
			jar.SetCookies(mustURL("http://"+httpAddrs[id]+"/"), jar.Cookies(u))
		}
	}
	// Wait until the cluster formed: the first write must reach a buddy.
	deadline := time.Now().Add(15 * time.Second)
	for {
		write("n1", "k0", "0")
		share("n1")
		if got := readVia(t, client, httpAddrs["n2"]); got["k0"] == "0" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 1; i <= 30; i++ {
		write("n1", fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
	}
	share("n1")
	procs["n1"].kill()
	for i := 31; i <= 60; i++ {
		node := ids[1+i%2]
		write(node, fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
		share(node)
	}
	for _, id := range ids[1:] {
		got := readVia(t, client, httpAddrs[id])
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("through %s: %s=%q, acknowledged %q", id, k, got[k], v)
			}
		}
		share(id)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d keys acknowledged", len(acked))
	}
}

func readVia(t *testing.T, c *http.Client, addr string) map[string]string {
	t.Helper()
	out := map[string]string{}
	resp, err := c.Get("http://" + addr + "/get")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
