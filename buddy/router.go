package buddy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/internal/h2stream"
)

// router is the replication port's listener. It reads each connection's
// first request: a batch stream is served on the connection by
// serveOwnStream (h2stream, no goroutine hand-offs per frame), and every
// other connection is handed on, its first bytes replayed, to net/http's
// server through Accept. With TLS it does the handshake, so net/http sees
// cleartext HTTP/2 (prior knowledge) either way.
type router struct {
	n    *Node
	ln   net.Listener
	tls  *tls.Config
	next chan net.Conn
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	err   error                 // the listener's, once it failed
	own   map[net.Conn]struct{} // connections being routed or serving a batch stream
	ended bool
	// streams counts the batch streams being served.
	streams int
}

// maxPeek bounds what a connection may send before its first request's
// headers, and so what the router holds for it: the preface, SETTINGS and
// a HEADERS frame are a few hundred bytes (and what a 4 KiB read took of
// the body behind them). A connection sends it within ReplicationTimeout,
// or is closed; the bytes are kept as they come, so an idle connection
// holds no more than net/http's server would.
const maxPeek = 16 << 10

func newRouter(n *Node, ln net.Listener, tc *tls.Config) *router {
	return &router{n: n, ln: ln, tls: tc, next: make(chan net.Conn), done: make(chan struct{}), own: make(map[net.Conn]struct{})}
}

// run accepts connections until the listener closes; each is routed in a
// goroutine of its own, which Close waits for.
func (r *router) run() {
	var delay time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // out of file descriptors, say: as net/http does
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-r.done:
					return
				}
			}
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			r.Close()
			return
		}
		delay = 0
		if !r.n.spawn(func() { r.route(c) }) {
			c.Close()
		}
	}
}

// route reads c's first request and serves or hands c on.
func (r *router) route(c net.Conn) {
	raw := c
	if !r.track(raw) {
		raw.Close()
		return
	}
	handedOn := false
	defer func() { r.untrack(raw, !handedOn) }()
	timeout := r.n.cfg.ReplicationTimeout
	_ = c.SetDeadline(time.Now().Add(timeout))
	if r.tls != nil {
		tc := tls.Server(c, r.tls)
		ctx, cancel := context.WithTimeout(r.n.ctx, timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			r.n.log.Debug("buddy: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
			return
		}
		c = tc
	}
	p, err := h2stream.Peek(c, maxPeek)
	if err != nil {
		r.n.log.Debug("buddy: connection ended before its first request", "remote", c.RemoteAddr(), "err", err)
		return
	}
	if !p.Is("POST", pathStream) {
		_ = c.SetDeadline(time.Time{})
		select {
		case r.next <- p.Replay():
			handedOn = true // net/http's now
		case <-r.done:
		}
		return
	}
	_ = c.SetWriteDeadline(time.Time{})
	r.count(1)
	defer r.count(-1)
	r.n.serveOwnStream(c, p)
}

func (r *router) count(d int) {
	r.mu.Lock()
	r.streams += d
	r.mu.Unlock()
}

func (r *router) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return false
	}
	r.own[c] = struct{}{}
	return true
}

// untrack forgets c, closing it unless net/http took it.
func (r *router) untrack(c net.Conn, close bool) {
	r.mu.Lock()
	delete(r.own, c)
	r.mu.Unlock()
	if close {
		c.Close()
	}
}

// Accept returns the next connection for net/http.
func (r *router) Accept() (net.Conn, error) {
	select {
	case c := <-r.next:
		return c, nil
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err != nil {
			return nil, r.err
		}
		return nil, net.ErrClosed
	}
}

// Close closes the listener, the connections not yet routed and every
// batch stream it serves.
func (r *router) Close() error {
	var err error
	r.once.Do(func() {
		close(r.done)
		err = r.ln.Close()
		r.mu.Lock()
		r.ended = true
		for c := range r.own {
			c.Close()
		}
		r.mu.Unlock()
	})
	return err
}

// Addr is the listener's address.
func (r *router) Addr() net.Addr { return r.ln.Addr() }
