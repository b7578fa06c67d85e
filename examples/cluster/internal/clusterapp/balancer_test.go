package clusterapp

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// fakeNode is a backend that answers with its ID, or with a status set by
// the test.
type fakeNode struct {
	id     string
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	bodies []string
}

func newFakeNode(t *testing.T, id string) *fakeNode {
	f := &fakeNode{id: id, status: http.StatusOK}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		status := f.status
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		if status == dropConnection {
			// The request reached the node, which dies before it answers.
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set(nodeapp.NodeHeader, f.id)
		w.WriteHeader(status)
		fmt.Fprint(w, f.id)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// dropConnection as a fakeNode's status makes it close the connection
// without an answer.
const dropConnection = -1

func (f *fakeNode) setStatus(code int) {
	f.mu.Lock()
	f.status = code
	f.mu.Unlock()
}

func (f *fakeNode) hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

type testBalancer struct {
	*balancer
	nodes []*fakeNode
	mu    sync.Mutex
	down  map[string]bool
}

func newTestBalancer(t *testing.T, n int) *testBalancer {
	tb := &testBalancer{down: map[string]bool{}}
	var backends []backend
	for i := range n {
		f := newFakeNode(t, fmt.Sprintf("n%d", i+1))
		tb.nodes = append(tb.nodes, f)
		backends = append(backends, backend{id: f.id, addr: strings.TrimPrefix(f.srv.URL, "http://")})
	}
	tb.balancer = newBalancer(backends, func(id string) bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return !tb.down[id]
	}, &eventLog{})
	return tb
}

func (tb *testBalancer) setDown(id string, down bool) {
	tb.mu.Lock()
	tb.down[id] = down
	tb.mu.Unlock()
}

// do sends a request through the balancer and returns the status and the
// node that answered.
func (tb *testBalancer) do(t *testing.T, method, route, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://balancer.test/x", strings.NewReader(body))
	if route != "" {
		req.AddCookie(&http.Cookie{Name: core.DefaultRouteCookie, Value: route})
	}
	rec := httptest.NewRecorder()
	tb.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get(nodeapp.NodeHeader)
}

func TestBalancerStickyByCookie(t *testing.T) {
	tb := newTestBalancer(t, 3)
	for range 5 {
		if code, node := tb.do(t, http.MethodGet, "n2", ""); code != 200 || node != "n2" {
			t.Fatalf("got %d from %q, want n2", code, node)
		}
	}
}

func TestBalancerNewSessionsRoundRobin(t *testing.T) {
	tb := newTestBalancer(t, 3)
	seen := map[string]int{}
	for range 9 {
		_, node := tb.do(t, http.MethodGet, "", "")
		seen[node]++
	}
	if len(seen) != 3 {
		t.Fatalf("requests without a route went to %v", seen)
	}
}

func TestBalancerOwnerDown(t *testing.T) {
	tb := newTestBalancer(t, 3)
	tb.setDown("n2", true)
	for range 4 {
		if code, node := tb.do(t, http.MethodPost, "n2", "a=1"); code != 200 || node == "n2" || node == "" {
			t.Fatalf("got %d from %q while n2 is down", code, node)
		}
	}
	if tb.nodes[1].hits() != 0 {
		t.Fatal("a node marked down got requests")
	}
	if c := tb.snapshot(); c.Rerouted != 4 {
		t.Fatalf("rerouted %d, want 4", c.Rerouted)
	}
}

func TestBalancerRetriesIdempotentOn503(t *testing.T) {
	tb := newTestBalancer(t, 3)
	tb.nodes[0].setStatus(http.StatusServiceUnavailable)
	if code, node := tb.do(t, http.MethodGet, "n1", ""); code != 200 || node == "n1" {
		t.Fatalf("GET: %d from %q, want a retry elsewhere", code, node)
	}
	// A POST that reached a node is not sent again.
	if code, node := tb.do(t, http.MethodPost, "n1", "a=1"); code != http.StatusServiceUnavailable || node != "n1" {
		t.Fatalf("POST: %d from %q, want n1's 503", code, node)
	}
	// Every node answers 503: one retry, then the answer goes back.
	for _, f := range tb.nodes {
		f.setStatus(http.StatusServiceUnavailable)
	}
	before := tb.nodes[0].hits() + tb.nodes[1].hits() + tb.nodes[2].hits()
	if code, _ := tb.do(t, http.MethodGet, "n1", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("all 503: got %d", code)
	}
	if got := tb.nodes[0].hits() + tb.nodes[1].hits() + tb.nodes[2].hits() - before; got != 2 {
		t.Fatalf("all 503: %d attempts, want 2", got)
	}
}

// A request that reached a node which died before answering: a POST is
// not sent again (it may have been applied), a GET is, once.
func TestBalancerFailedInFlight(t *testing.T) {
	tb := newTestBalancer(t, 2)
	tb.nodes[0].setStatus(dropConnection)
	if code, _ := tb.do(t, http.MethodPost, "n1", "item=apple"); code != http.StatusBadGateway {
		t.Fatalf("POST: got %d, want 502", code)
	}
	if h := tb.nodes[1].hits(); h != 0 {
		t.Fatalf("a POST that reached n1 was sent to n2 too (%d hits)", h)
	}
	if code, node := tb.do(t, http.MethodGet, "n1", ""); code != 200 || node != "n2" {
		t.Fatalf("GET: %d from %q, want n2's answer", code, node)
	}
}

func TestBalancerConnectionRefusedResendsBody(t *testing.T) {
	tb := newTestBalancer(t, 2)
	tb.nodes[0].srv.Close() // n1 is gone, though the supervisor thinks it is up
	code, node := tb.do(t, http.MethodPost, "n1", "item=apple")
	if code != 200 || node != "n2" {
		t.Fatalf("got %d from %q, want n2", code, node)
	}
	if got := tb.nodes[1].bodies; len(got) != 1 || got[0] != "item=apple" {
		t.Fatalf("n2 got bodies %q", got)
	}
	// n1 stays out of rotation for a moment.
	if _, node := tb.do(t, http.MethodGet, "", ""); node != "n2" {
		t.Fatalf("new session went to %q", node)
	}
}

func TestBalancerAllDown(t *testing.T) {
	tb := newTestBalancer(t, 2)
	for _, f := range tb.nodes {
		f.srv.Close()
	}
	if code, _ := tb.do(t, http.MethodGet, "", ""); code != http.StatusBadGateway {
		t.Fatalf("got %d, want 502", code)
	}
}

func TestEventLogKeepsLatest(t *testing.T) {
	l := &eventLog{}
	for i := range maxEvents + 10 {
		l.add("k", "n1", fmt.Sprint(i))
	}
	got := l.latest(3)
	if len(got) != 3 || got[0].Msg != fmt.Sprint(maxEvents+9) || got[2].Msg != fmt.Sprint(maxEvents+7) {
		t.Fatalf("latest: %+v", got)
	}
	if len(l.events) != maxEvents {
		t.Fatalf("kept %d events", len(l.events))
	}
}
