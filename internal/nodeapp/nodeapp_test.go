package nodeapp

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
)

func init() { gin.SetMode(gin.TestMode) }

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

// startCluster starts n nodes n1..nN on loopback and waits until every node
// sees every other alive.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	clusterKey := bytes.Repeat([]byte("c"), 32)
	cookieKeys := core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
	httpLns, replLns := make([]net.Listener, n), make([]net.Listener, n)
	peers := make([]buddy.Peer, n)
	for i := range n {
		httpLns[i], replLns[i] = listen(t), listen(t)
		peers[i] = buddy.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: replLns[i].Addr().String()}
	}
	nodes := make([]*testNode, n)
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		tn := &testNode{id: peers[i].ID, cancel: cancel, done: make(chan error, 1)}
		readyc := make(chan string, 1)
		cfg := Config{
			ID: peers[i].ID, HTTPListener: httpLns[i], ReplListener: replLns[i], Peers: peers,
			ClusterKey: clusterKey, CookieKeys: cookieKeys, ShutdownTimeout: 10 * time.Second,
			Buddy: func(c *buddy.Config) {
				c.PingInterval = 20 * time.Millisecond
				c.SuspectAfter = 150 * time.Millisecond
				c.DeadAfter = 300 * time.Millisecond
			},
		}
		go func() { tn.done <- Run(ctx, cfg, func(h, _ string) { readyc <- h }) }()
		select {
		case h := <-readyc:
			tn.base = "http://" + h
		case err := <-tn.done:
			t.Fatalf("%s did not start: %v", tn.id, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not start", tn.id)
		}
		nodes[i] = tn
	}
	t.Cleanup(func() {
		for _, tn := range nodes {
			tn.stop(t)
		}
	})
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
			if st.Stats.Buddy == "" || alive < len(nodes)-1 {
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
		if ck.Name == RouteCookie {
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

	// Bench routes: write, read one, read all.
	for i := range 3 {
		resp, err := c.Get(fmt.Sprintf("%s/bench/write?k=k%d&v=v%d", n1.base, i, i))
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get(NewSessionHeader) != "" {
			t.Fatalf("bench write: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(n1.base + "/bench/read") // no cookie
	if err != nil || resp.Header.Get(NewSessionHeader) != "1" {
		t.Fatalf("bench read without a session: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(n2.base + "/bench/read?k=k1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "v1" {
		t.Fatalf("bench read %q", body)
	}
	var all map[string]string
	if err := getJSON(c, n1.base+"/bench/get", &all); err != nil {
		t.Fatal(err)
	}
	if all["k0"] != "v0" || all["k2"] != "v2" || all["user"] != "ada" {
		t.Fatalf("bench get %v", all)
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

func TestHomePage(t *testing.T) {
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
	resp, err = http.Get(nodes[0].base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestRunRejectsBadConfig(t *testing.T) {
	err := Run(t.Context(), Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", ClusterKey: []byte("short")}, nil)
	if err == nil || !strings.Contains(err.Error(), "ClusterKey") {
		t.Fatalf("err %v", err)
	}
}
