//go:build unix

// Package balancers tests the nginx and HAProxy configurations of this
// directory with the real programs: three examples/node processes on
// loopback behind the balancer, users logging in and writing through it,
// a kill -9 of the node that holds the most sessions, and a check that
// every user is still logged in with every acknowledged write.
//
// The tests run only with TANDEM_BALANCER_TESTS=1 (.ci/run sets it, after
// installing Debian's nginx and haproxy); with it set, a missing binary
// fails the test instead of skipping it.
//
//	TANDEM_BALANCER_TESTS=1 go test -count=1 -v ./examples/balancers
package balancers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/examples/node"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// envRun enables the tests.
const envRun = "TANDEM_BALANCER_TESTS"

// exampleAddrs are the node addresses the shipped configurations name;
// the tests replace them with the nodes' loopback addresses.
var exampleAddrs = [3]string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}

func TestNginx(t *testing.T) {
	bin := need(t, "nginx")
	runScenario(t, func(t *testing.T, dir string, nodes []string, addr string) {
		conf := render(t, "nginx.conf", nodes, "listen 80;", "listen "+addr+";")
		must(t, os.WriteFile(filepath.Join(dir, "tandem.conf"), []byte(conf), 0o644))
		// What a non-root nginx needs: every path it writes under dir,
		// the compiled-in error log replaced (-e), in the foreground.
		mainConf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
    log_format upstream '$request $status upstream=$upstream_addr statuses=$upstream_status cookie=$cookie_tandem_node';
    access_log %[1]s/access.log upstream;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/tandem.conf;
}
`, dir)
		cfg := filepath.Join(dir, "nginx.conf")
		must(t, os.WriteFile(cfg, []byte(mainConf), 0o644))
		args := []string{"-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", cfg}
		if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
		start(t, "nginx", filepath.Join(dir, "nginx.out"), nil, bin, args...)
	})
}

func TestHAProxy(t *testing.T) {
	bin := need(t, "haproxy")
	runScenario(t, func(t *testing.T, dir string, nodes []string, addr string) {
		conf := render(t, "haproxy.cfg", nodes, "bind :80", "bind "+addr)
		cfg := filepath.Join(dir, "haproxy.cfg")
		must(t, os.WriteFile(cfg, []byte(conf), 0o644))
		if out, err := exec.Command(bin, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c: %v\n%s", err, out)
		}
		start(t, "haproxy", filepath.Join(dir, "haproxy.log"), nil, bin, "-db", "-f", cfg, "-p", filepath.Join(dir, "haproxy.pid"))
	})
}

// need skips the test unless it is enabled, and returns the path of the
// balancer's binary.
func need(t *testing.T, name string) string {
	t.Helper()
	if os.Getenv(envRun) == "" {
		t.Skipf("set %s=1 to run it (needs %s on PATH; .ci/run installs it)", envRun, name)
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} { // not on a user's PATH
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Fatalf("%s=1 but %s is not installed: %v", envRun, name, err)
	}
	return bin
}

// render reads a shipped configuration and puts the nodes' addresses and
// the balancer's listen directive in it. Every replacement must apply.
func render(t *testing.T, file string, nodes []string, listenFrom, listenTo string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	must(t, err)
	conf := string(b)
	for i, a := range exampleAddrs {
		if !strings.Contains(conf, a) {
			t.Fatalf("%s does not name %s", file, a)
		}
		conf = strings.ReplaceAll(conf, a, nodes[i])
	}
	if strings.Count(conf, listenFrom) != 1 {
		t.Fatalf("%s: %q should appear once", file, listenFrom)
	}
	return strings.Replace(conf, listenFrom, listenTo, 1)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// proc is a process the test started; it is stopped by its PID when the
// test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs bin with args, its output in logPath, and registers its stop.
func start(t *testing.T, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	out, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("%s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("--- %s (pid %d) output, last lines:\n%s", name, cmd.Process.Pid, tail(string(b), 30))
			}
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process and waits; after 15 s, SIGKILL.
func (p *proc) stop(t *testing.T) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s (pid %d) did not stop on SIGTERM; killing it", p.name, p.cmd.Process.Pid)
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// freeAddrs returns n loopback addresses with ports free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cluster is three node processes.
type cluster struct {
	ids   []string
	http  []string // app addresses
	procs []*proc
}

// startCluster builds examples/node's command and runs three nodes in
// Sync mode with the same keys, and waits until each is ready and sees
// the two others alive.
func startCluster(t *testing.T, dir string) *cluster {
	t.Helper()
	bin := filepath.Join(dir, "tandem-node")
	build := exec.Command("go", "build", "-o", bin, "github.com/tandemsession/tandem/examples/node/cmd/tandem-node")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addrs := freeAddrs(t, 6)
	c := &cluster{ids: []string{"n1", "n2", "n3"}, http: addrs[:3]}
	var peers []string
	for i, id := range c.ids {
		peers = append(peers, id+"="+addrs[3+i])
	}
	env := []string{
		node.EnvClusterKey + "=" + randomHex(32),
		node.EnvCookieHashKey + "=" + randomHex(32),
		node.EnvCookieBlockKey + "=" + randomHex(32),
	}
	for i, id := range c.ids {
		c.procs = append(c.procs, start(t, id, filepath.Join(dir, id+".log"), env, bin,
			"-id", id, "-http", c.http[i], "-repl", addrs[3+i], "-peers", strings.Join(peers, ","),
			"-mode", "sync", "-log-level", "info", "-shutdown-timeout", "5s"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := range c.ids {
		for {
			st, err := c.stats(i)
			if err == nil && st.Ready && aliveCount(st) == len(c.ids)-1 {
				break
			}
			if c.procs[i].exited() || time.Now().After(deadline) {
				t.Fatalf("%s not ready: %v %+v", c.ids[i], err, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func aliveCount(st node.StatsInfo) int {
	n := 0
	for _, p := range st.Stats.Peers {
		if p.ID != st.Node && p.State.String() == "alive" {
			n++
		}
	}
	return n
}

// stats reads node i's /api/stats directly.
func (c *cluster) stats(i int) (node.StatsInfo, error) {
	var st node.StatsInfo
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + c.http[i] + "/api/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// user is one browser: a cookie jar, the writes the cluster acknowledged.
type user struct {
	name   string
	base   *url.URL
	client *http.Client
	jar    *cookiejar.Jar

	mu       sync.Mutex
	acked    []string
	refused  map[string]int // by status, or "error"
	ackTimes []time.Time
}

func newUser(name string, base *url.URL, tr http.RoundTripper) *user {
	jar, _ := cookiejar.New(nil)
	return &user{name: name, base: base, jar: jar, refused: map[string]int{}, client: &http.Client{
		Transport: tr, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// post sends a form and reports whether the node answered 303 (the demo
// app's answer to a committed write), or else what it answered: a status
// or "error".
func (u *user) post(path string, form url.Values) (ok bool, answer string) {
	resp, err := u.client.PostForm(u.base.JoinPath(path).String(), form)
	if err != nil {
		if os.Getenv("TANDEM_BALANCER_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s %s %s: %v\n", time.Now().Format("15:04:05.000"), u.name, path, err)
		}
		return false, "error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusSeeOther, strconv.Itoa(resp.StatusCode)
}

// login signs the user in, retrying for a while.
func (u *user) login() error {
	for range 50 {
		if ok, _ := u.post("/login", url.Values{"user": {u.name}}); ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: login failed", u.name)
}

// write adds item to the cart; an answer other than 303 is not an
// acknowledgement.
func (u *user) write(item string) bool {
	ok, answer := u.post("/cart/add", url.Values{"item": {item}})
	u.mu.Lock()
	defer u.mu.Unlock()
	if ok {
		u.acked = append(u.acked, item)
		u.ackTimes = append(u.ackTimes, time.Now())
	} else {
		u.refused[answer]++
	}
	return ok
}

// read returns the session as the cluster sees it, the node that served
// the read and the route cookie the request carried.
func (u *user) read() (info node.SessionInfo, servedBy, routeCookie string, err error) {
	for _, ck := range u.jar.Cookies(u.base) {
		if ck.Name == core.DefaultRouteCookie {
			routeCookie = ck.Value
		}
	}
	resp, err := u.client.Get(u.base.JoinPath("/api/session").String())
	if err != nil {
		return info, "", routeCookie, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return info, "", routeCookie, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	err = json.NewDecoder(resp.Body).Decode(&info)
	return info, resp.Header.Get(node.NodeHeader), routeCookie, err
}

// runScenario starts the cluster, the balancer (startBalancer, on addr),
// and runs the users through it around a kill -9.
func runScenario(t *testing.T, startBalancer func(t *testing.T, dir string, nodes []string, addr string)) {
	const (
		users         = 30
		writesBefore  = 3
		loadBeforeKil = time.Second
		loadAfterKill = 3 * time.Second
		writePause    = 20 * time.Millisecond
	)
	began := time.Now()
	dir := t.TempDir()
	c := startCluster(t, dir)
	addr := freeAddrs(t, 1)[0]
	startBalancer(t, dir, c.http, addr)
	base, _ := url.Parse("http://" + addr)
	waitBalancer(t, base)

	tr := &http.Transport{MaxIdleConnsPerHost: users, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	us := make([]*user, users)
	for i := range us {
		us[i] = newUser(fmt.Sprintf("user%02d", i), base, tr)
	}

	// 1. Log in and write, then read back: everything is there.
	parallel(us, func(u *user) error {
		if err := u.login(); err != nil {
			return err
		}
		for j := range writesBefore {
			if !u.write(fmt.Sprintf("%s-a%d", u.name, j)) {
				return fmt.Errorf("%s: write %d refused before any failure", u.name, j)
			}
		}
		return nil
	}, t)
	owners := map[string]string{} // user -> node that served its read
	var mu sync.Mutex
	parallel(us, func(u *user) error {
		info, by, _, err := u.read()
		if err != nil {
			return err
		}
		if info.User != u.name || !slices.Equal(info.Cart, u.acked) {
			return fmt.Errorf("%s before the kill: %+v, acked %v", u.name, info, u.acked)
		}
		mu.Lock()
		owners[u.name] = by
		mu.Unlock()
		return nil
	}, t)

	// 2. The node that owns the most sessions.
	victim, victimSessions := -1, -1
	var spread []string
	for i := range c.ids {
		st, err := c.stats(i)
		must(t, err)
		spread = append(spread, fmt.Sprintf("%s=%d", c.ids[i], st.Sessions))
		if st.Sessions > victimSessions {
			victim, victimSessions = i, st.Sessions
		}
	}
	victimID := c.ids[victim]

	// 3. Load through the balancer; kill -9 the victim in the middle.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range us {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				u.write(fmt.Sprintf("%s-b%d", u.name, k))
				time.Sleep(writePause)
			}
		})
	}
	time.Sleep(loadBeforeKil)
	killedAt := time.Now()
	c.procs[victim].kill9()
	time.Sleep(loadAfterKill)
	close(stop)
	wg.Wait()

	// 4. Every user is still signed in and has every acknowledged write;
	// the balancer sends each request to the node its route cookie names.
	var acked, lost, loggedOut, extra, routed int
	refused := map[string]int{}
	var firstBack time.Duration // the slowest victim's user to get a write acknowledged after the kill
	victimUsers := 0
	for _, u := range us {
		var info node.SessionInfo
		var by, route string
		var err error
		for range 20 { // a read may meet a 503 while the cluster settles
			if info, _, _, err = u.read(); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("%s: final read: %v", u.name, err)
			continue
		}
		if info2, by2, route2, err := u.read(); err == nil { // the route cookie is settled now
			info, by, route = info2, by2, route2
		}
		acked += len(u.acked)
		for k, v := range u.refused {
			refused[k] += v
		}
		if info.User != u.name {
			loggedOut++
			t.Errorf("%s is logged out: %+v", u.name, info)
		}
		have := map[string]bool{}
		for _, it := range info.Cart {
			have[it] = true
		}
		for _, it := range u.acked {
			if !have[it] {
				lost++
				t.Errorf("%s: acknowledged write %s lost", u.name, it)
			}
		}
		extra += len(info.Cart) - len(u.acked)
		if by == route && by != "" {
			routed++
		} else {
			t.Errorf("%s: served by %q, route cookie %q", u.name, by, route)
		}
		if by == victimID {
			t.Errorf("%s: served by the killed node %s", u.name, victimID)
		}
		if owners[u.name] == victimID {
			victimUsers++
			i, _ := slices.BinarySearchFunc(u.ackTimes, killedAt, func(a, b time.Time) int { return a.Compare(b) })
			if i < len(u.ackTimes) {
				firstBack = max(firstBack, u.ackTimes[i].Sub(killedAt))
			} else {
				t.Errorf("%s: no write acknowledged after the kill", u.name)
			}
		}
	}
	var after []string
	fetched := uint64(0)
	for i := range c.ids {
		if i == victim {
			continue
		}
		st, err := c.stats(i)
		must(t, err)
		after = append(after, fmt.Sprintf("%s=%d", c.ids[i], st.Sessions))
		fetched += st.Stats.Fetches["backup"] + st.Stats.Fetches["owners_buddy"] + st.Stats.Fetches["local"] + st.Stats.Fetches["scan"]
	}
	if victimUsers == 0 {
		t.Errorf("no user was on the killed node %s", victimID)
	}
	t.Logf("%s: %d users, sessions before %s; kill -9 %s (%d sessions, %d users); after: %s, %d failover fetches",
		t.Name(), users, strings.Join(spread, " "), victimID, victimSessions, victimUsers, strings.Join(after, " "), fetched)
	t.Logf("%s: writes acknowledged %d, refused %v, lost %d; applied but unacknowledged %d; logged out %d; routed by cookie %d/%d; slowest victim user served again after %v; total %v",
		t.Name(), acked, refused, lost, extra, loggedOut, routed, users, firstBack.Round(time.Millisecond), time.Since(began).Round(time.Second))
}

// parallel runs f for every user at once and fails the test on an error.
func parallel(us []*user, f func(*user) error, t *testing.T) {
	t.Helper()
	errs := make([]error, len(us))
	var wg sync.WaitGroup
	for i, u := range us {
		wg.Go(func() { errs[i] = f(u) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// waitBalancer waits until the balancer answers /healthz with 200.
func waitBalancer(t *testing.T, base *url.URL) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := cl.Get(base.JoinPath("/healthz").String())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("balancer on %s not answering: %v", base.Host, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
