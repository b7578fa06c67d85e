package clusterapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/core"
)

// backend is one node as the balancer sees it.
type backend struct {
	id, addr string
}

// balancer is a sticky reverse proxy: a request goes to the node its
// tandem_node cookie (core.DefaultRouteCookie) names, or, when that node is
// down, to another live node, which fetches the session from the cluster.
// New sessions are spread round-robin.
//
// It sends a request to a second node only when the first one never got
// it (the connection was refused), or when the request is idempotent (GET,
// HEAD, OPTIONS) and failed in flight or got 502/503. A POST that may have
// reached a node is never sent again: it may have been applied there
// already. That is why every write of the demo is a POST.
type balancer struct {
	backends []backend
	up       func(id string) bool // the supervisor's view: healthy and not stopping
	events   *eventLog
	tr       http.RoundTripper
	proxy    *httputil.ReverseProxy
	rr       atomic.Uint64

	mu       sync.Mutex
	downTill map[string]time.Time // passive health: dial failures
	lastNote map[string]time.Time // rate limit of reroute events
	counts   balancerCounts
}

// balancerCounts are the balancer's counters, shown on the dashboard.
type balancerCounts struct {
	Requests map[string]uint64 `json:"requests"` // answered, by node
	Rerouted uint64            `json:"rerouted"` // cookie named a node that was down
	Retries  uint64            `json:"retries"`  // requests sent to a second node
	Failed   uint64            `json:"failed"`   // no node could answer
}

// maxBody bounds a request body the balancer buffers to be able to resend it.
const maxBody = 1 << 20

func newBalancer(backends []backend, up func(string) bool, events *eventLog) *balancer {
	b := &balancer{backends: backends, up: up, events: events,
		downTill: map[string]time.Time{}, lastNote: map[string]time.Time{},
		counts: balancerCounts{Requests: map[string]uint64{}}}
	b.tr = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "tandem-node" // chosen per attempt by roundTrip
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport: roundTripFunc(b.roundTrip),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b.mu.Lock()
			b.counts.Failed++
			b.mu.Unlock()
			http.Error(w, "balancer: no node could answer: "+err.Error(), http.StatusBadGateway)
		},
	}
	return b
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ServeHTTP proxies r to a node.
func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	b.proxy.ServeHTTP(w, r)
}

// candidates returns the nodes to try, in order: the cookie's node if it is
// up, then the other live nodes in round-robin order. When none is known to
// be up, every node is a candidate (health may lag).
func (b *balancer) candidates(r *http.Request) []backend {
	route := ""
	if c, err := r.Cookie(core.DefaultRouteCookie); err == nil {
		route = c.Value
	}
	now := time.Now()
	b.mu.Lock()
	var live []backend
	for _, be := range b.backends {
		if b.up(be.id) && now.After(b.downTill[be.id]) {
			live = append(live, be)
		}
	}
	b.mu.Unlock()
	if len(live) == 0 {
		live = b.backends
	}
	start := int(b.rr.Add(1) % uint64(len(live)))
	out := make([]backend, 0, len(live))
	for i, be := range live {
		if be.id == route {
			out = append(out, be)
			live = append(live[:i:i], live[i+1:]...)
			if start >= len(live) {
				start = 0
			}
			break
		}
	}
	if route != "" && (len(out) == 0) && len(live) > 0 {
		b.noteReroute(route, live[start].id)
	}
	for i := range live {
		out = append(out, live[(start+i)%len(live)])
	}
	return out
}

// noteReroute counts a request whose node was down, and records it as an
// event at most once a second per node.
func (b *balancer) noteReroute(from, to string) {
	if !b.known(from) {
		return
	}
	b.mu.Lock()
	b.counts.Rerouted++
	note := time.Since(b.lastNote[from]) > time.Second
	if note {
		b.lastNote[from] = time.Now()
	}
	b.mu.Unlock()
	if note {
		b.events.add("reroute", from, fmt.Sprintf("balancer: %s is down, its sessions go to %s and others", from, to))
	}
}

func (b *balancer) known(id string) bool {
	for _, be := range b.backends {
		if be.id == id {
			return true
		}
	}
	return false
}

// idempotent reports whether r may be sent again after it may have reached
// a node: GET, HEAD and OPTIONS. A write must not be one of them (Go's
// http.Transport, here and in the clients, also replays these on a dead
// keep-alive connection).
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// notSent reports whether err means the request never reached the node
// (the connection was refused), so that any request may go elsewhere.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// roundTrip sends r to the first candidate that answers. A request that was
// not delivered (connection refused) goes to the next candidate, whatever
// its method; an idempotent request that failed in flight or got 502/503
// is retried once on another node.
func (b *balancer) roundTrip(r *http.Request) (*http.Response, error) {
	cands := b.candidates(r)
	var lastErr error
	retried := false
	for i, be := range cands {
		out := r.Clone(r.Context())
		out.URL.Host = be.addr
		if r.GetBody != nil {
			body, err := r.GetBody()
			if err != nil {
				return nil, err
			}
			out.Body = body
		}
		if i > 0 {
			b.mu.Lock()
			b.counts.Retries++
			b.mu.Unlock()
		}
		resp, err := b.tr.RoundTrip(out)
		last := i == len(cands)-1
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", be.id, err)
			if notSent(err) {
				b.markDown(be.id)
				continue
			}
			if errors.Is(err, context.Canceled) || !idempotent(r) || retried {
				return nil, lastErr
			}
			retried = true
			continue
		}
		if (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable) &&
			idempotent(r) && !retried && !last {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			retried = true
			continue
		}
		b.mu.Lock()
		b.counts.Requests[be.id]++
		b.mu.Unlock()
		return resp, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no node to send to")
	}
	return nil, lastErr
}

// markDown keeps node id out of rotation for a moment after a refused
// connection.
func (b *balancer) markDown(id string) {
	b.mu.Lock()
	b.downTill[id] = time.Now().Add(time.Second)
	b.mu.Unlock()
}

func (b *balancer) snapshot() balancerCounts {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.counts
	c.Requests = make(map[string]uint64, len(b.counts.Requests))
	for k, v := range b.counts.Requests {
		c.Requests[k] = v
	}
	return c
}
