package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

var (
	testClusterKey = bytes.Repeat([]byte("c"), 32)
	testCookieKey  = core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
)

// testNode is one node started with Run.
type testNode struct {
	id     string
	base   string // http://host:port
	cancel context.CancelFunc
	done   chan error
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func fastTimers(c *buddy.Config) {
	c.PingInterval = 20 * time.Millisecond
	c.SuspectAfter = 150 * time.Millisecond
	c.DeadAfter = 300 * time.Millisecond
}

// start runs cfg and waits until its listeners are up; the node stops when
// the test ends.
func start(t *testing.T, cfg Config) *testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{id: cfg.ID, cancel: cancel, done: make(chan error, 1)}
	readyc := make(chan string, 1)
	go func() { tn.done <- Run(ctx, cfg, func(h, _ string) { readyc <- h }) }()
	select {
	case h := <-readyc:
		tn.base = "http://" + h
	case err := <-tn.done:
		t.Fatalf("%s did not start: %v", tn.id, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start", tn.id)
	}
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

// startCluster starts n nodes n1..nN on loopback and waits until every node
// is ready and sees every other alive.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	httpLns, replLns := make([]net.Listener, n), make([]net.Listener, n)
	peers := make([]buddy.Peer, n)
	for i := range n {
		httpLns[i], replLns[i] = listen(t), listen(t)
		peers[i] = buddy.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: replLns[i].Addr().String()}
	}
	nodes := make([]*testNode, n)
	for i := range n {
		nodes[i] = start(t, Config{
			ID: peers[i].ID, HTTPListener: httpLns[i], ReplListener: replLns[i], Peers: peers,
			ClusterKeys: [][]byte{testClusterKey}, CookieKeys: []core.KeyPair{testCookieKey},
			ShutdownTimeout: 10 * time.Second, Buddy: fastTimers,
		})
	}
	waitConverged(t, nodes)
	return nodes
}

// stop cancels the node's context (a graceful drain) and waits for Run.
func (tn *testNode) stop(t *testing.T) {
	t.Helper()
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	tn.cancel = nil
	select {
	case err := <-tn.done:
		if err != nil {
			t.Errorf("%s: Run: %v", tn.id, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return", tn.id)
	}
}

func waitConverged(t *testing.T, nodes []*testNode) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, tn := range nodes {
			var st StatsInfo
			if err := getJSON(http.DefaultClient, tn.base+"/api/stats", &st); err != nil {
				t.Fatal(err)
			}
			alive := 0
			for _, p := range st.Stats.Peers {
				if p.State == buddy.Alive {
					alive++
				}
			}
			if !st.Ready || st.Stats.Buddy == "" || alive < len(nodes)-1 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster did not converge")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(c *http.Client, u string, v any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// status answers GET u's status code, or 0 when the request failed.
func status(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// browser is a client with its own cookie jar; it does not follow
// redirects, so every answer is checked.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func post(t *testing.T, c *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST %s: %s", u, resp.Status)
	}
	return resp
}

func session(t *testing.T, c *http.Client, base string) SessionInfo {
	t.Helper()
	var v SessionInfo
	if err := getJSON(c, base+"/api/session", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func routeCookie(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == core.DefaultRouteCookie {
			return ck.Value
		}
	}
	return ""
}

func TestSessionSurvivesDrainOfItsOwner(t *testing.T) {
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	c := browser(t)

	resp := post(t, c, n1.base+"/login", url.Values{"user": {"ada"}})
	if got := resp.Header.Get(NodeHeader); got != "n1" {
		t.Fatalf("%s header %q, want n1", NodeHeader, got)
	}
	post(t, c, n1.base+"/cart/add", url.Values{"item": {"apple"}})
	post(t, c, n1.base+"/cart/add", url.Values{"item": {"pear"}})
	if got := routeCookie(c, n1.base); got != "n1" {
		t.Fatalf("route cookie %q, want n1", got)
	}
	v := session(t, c, n1.base)
	if v.User != "ada" || strings.Join(v.Cart, ",") != "apple,pear" || v.Owner != "n1" || v.Backup != "n2" {
		t.Fatalf("session on n1: %+v", v)
	}

	// The session follows the user to another node, and the route cookie
	// follows it.
	if v := session(t, c, n3.base); v.User != "ada" || v.Owner != "n3" || v.Backup != "n1" {
		t.Fatalf("session on n3: %+v", v)
	}
	if got := routeCookie(c, n3.base); got != "n3" {
		t.Fatalf("route cookie %q after the move, want n3", got)
	}

	// Drain the owner: its buddy (n1) takes the session over.
	n3.stop(t)
	v = session(t, c, n2.base)
	if v.User != "ada" || strings.Join(v.Cart, ",") != "apple,pear" {
		t.Fatalf("session lost with its owner's drain: %+v", v)
	}

	// Logout ends the session everywhere.
	post(t, c, n1.base+"/logout", nil)
	if v := session(t, c, n2.base); v.User != "" || len(v.Cart) != 0 {
		t.Fatalf("session after logout: %+v", v)
	}
	var st StatsInfo
	if err := getJSON(http.DefaultClient, n1.base+"/api/stats", &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "n1" || st.Stats.ID != "n1" {
		t.Fatalf("stats %+v", st)
	}
}

func TestHomePageAndHealth(t *testing.T) {
	nodes := startCluster(t, 2)
	c := browser(t)
	post(t, c, nodes[0].base+"/login", url.Values{"user": {"grace"}})
	resp, err := c.Get(nodes[0].base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"grace", "Welcome, grace!", `id="served-by">n1<`, `id="backup-on">n2<`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("home page lacks %q:\n%s", want, body)
		}
	}
	// Writes are POST only.
	resp, err = c.Get(nodes[0].base + "/cart/add?item=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /cart/add: %s, want 404", resp.Status)
	}
	// Health and readiness live outside the session middleware: no
	// cookie.
	for _, path := range []string{"/healthz", "/readyz", "/api/stats"} {
		resp, err := http.Get(nodes[0].base + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
		if ck := resp.Header.Values("Set-Cookie"); len(ck) != 0 {
			t.Fatalf("%s set cookies %q", path, ck)
		}
	}
}

// /readyz: 503 while the only peer is down, 200 once it is up, 503 from
// the moment the node starts stopping (during ShutdownDelay it still
// serves).
func TestReadiness(t *testing.T) {
	ln1, ln2 := listen(t), listen(t)
	peers := []buddy.Peer{{ID: "n1", Addr: ln1.Addr().String()}, {ID: "n2", Addr: ln2.Addr().String()}}
	ln2.Close()
	cfg := func(id string, ln net.Listener) Config {
		return Config{ID: id, HTTPListener: listen(t), ReplListener: ln, Peers: peers,
			ClusterKeys: [][]byte{testClusterKey}, CookieKeys: []core.KeyPair{testCookieKey},
			ShutdownTimeout: 10 * time.Second, ShutdownDelay: 300 * time.Millisecond, Buddy: fastTimers}
	}
	n1 := start(t, cfg("n1", ln1))
	if got := status(n1.base + "/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the only peer down: %d, want 503", got)
	}
	if got := status(n1.base + "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz: %d, want 200", got)
	}
	ln2, err := net.Listen("tcp", peers[1].Addr)
	if err != nil {
		t.Skipf("n2's port was taken meanwhile: %v", err)
	}
	n2 := start(t, cfg("n2", ln2))
	deadline := time.Now().Add(10 * time.Second)
	for status(n1.base+"/readyz") != http.StatusOK || status(n2.base+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready with both nodes up")
		}
		time.Sleep(10 * time.Millisecond)
	}

	stop := n2.cancel
	n2.cancel = nil // stopped here, not at cleanup
	stop()          // SIGTERM
	deadline = time.Now().Add(5 * time.Second)
	for status(n2.base+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 after the stop began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := status(n2.base + "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz during the shutdown delay: %d, want 200", got)
	}
	if err := <-n2.done; err != nil {
		t.Fatal(err)
	}
}

func TestAloneIsReady(t *testing.T) {
	n := start(t, Config{ID: "solo", HTTPListener: listen(t), ReplListener: listen(t),
		ClusterKeys: [][]byte{testClusterKey}, CookieKeys: []core.KeyPair{testCookieKey}})
	if got := status(n.base + "/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz of a node without peers: %d, want 200", got)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0"}, "ID"},
		{Config{ID: "n1", ReplAddr: "127.0.0.1:0"}, "HTTPAddr"},
		{Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", CookieKeys: []core.KeyPair{testCookieKey}}, "ClusterKeys"},
		{Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", ClusterKeys: [][]byte{[]byte("short")}, CookieKeys: []core.KeyPair{testCookieKey}}, "ClusterKeys[0]"},
		{Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", ClusterKeys: [][]byte{testClusterKey}}, "CookieKeys"},
	} {
		if err := Run(t.Context(), tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
}
