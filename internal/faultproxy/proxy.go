// Package faultproxy is a fault-injecting TCP proxy for tests and the chaos
// checker (bench/chaos): one Proxy listens on a loopback address and
// forwards every connection to one target, and its Mode can be changed
// while it runs:
//
//   - OK forwards both ways.
//   - Cut refuses new connections (the listener is closed, so a dial gets
//     "connection refused") and resets the connections already open.
//     Leaving Cut listens again on the same address.
//   - Blackhole accepts connections and delivers nothing either way: bytes
//     are held (as a network that drops every packet makes TCP retransmit),
//     and flow again once the mode changes.
//   - Delay holds every chunk for a fixed time before it is delivered, in
//     order, without limiting throughput.
//
// Giving each directed pair of nodes its own Proxy (node i dials j through
// proxy i->j) makes one-way partitions possible. A Proxy dials only its
// target; the chaos checker keeps every address on 127.0.0.0/8.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Mode is what a Proxy does with traffic.
type Mode int

// The modes. See the package documentation.
const (
	OK Mode = iota
	Cut
	Blackhole
	Delay
)

func (m Mode) String() string {
	switch m {
	case OK:
		return "ok"
	case Cut:
		return "cut"
	case Blackhole:
		return "blackhole"
	case Delay:
		return "delay"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode returns the Mode named s (ok, cut, blackhole, delay).
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{OK, Cut, Blackhole, Delay} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("faultproxy: unknown mode %q (want ok, cut, blackhole or delay)", s)
}

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("faultproxy: proxy closed")

// chunkSize is the most bytes one read moves.
const chunkSize = 32 << 10

// dialTimeout bounds the dial to the target.
const dialTimeout = 2 * time.Second

// Proxy forwards connections from its address to a target address.
type Proxy struct {
	addr   string // fixed at New: a proxy that leaves Cut listens here again
	target string

	mu     sync.Mutex
	ln     net.Listener // nil while Cut or closed
	mode   Mode
	delay  time.Duration
	change chan struct{} // closed and replaced on every mode change
	conns  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New listens on listen (host:port; port 0 picks one) and forwards every
// connection accepted there to target, in mode OK.
func New(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{addr: ln.Addr().String(), target: target, change: make(chan struct{}), conns: map[*link]struct{}{}}
	p.serve(ln)
	return p, nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string { return p.addr }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode and delay.
func (p *Proxy) Mode() (Mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

// Set changes the mode; delay is used by Delay only. Entering Cut closes the
// listener and resets every open connection; leaving it listens again on
// the same address (an error if that fails).
func (p *Proxy) Set(m Mode, delay time.Duration) error {
	if m < OK || m > Delay {
		return fmt.Errorf("faultproxy: unknown mode %d", int(m))
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	prev := p.mode
	p.mode, p.delay = m, delay
	close(p.change)
	p.change = make(chan struct{})
	var reset []*link
	var ln net.Listener
	if m == Cut && prev != Cut {
		ln, p.ln = p.ln, nil
		for l := range p.conns {
			reset = append(reset, l)
		}
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, l := range reset {
		l.reset()
	}
	if m != Cut && prev == Cut {
		nl, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
		}
		p.serve(nl)
	}
	return nil
}

// Close stops the proxy: the listener and every connection, and waits for
// its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ln := p.ln
	p.ln = nil
	close(p.change)
	p.change = make(chan struct{})
	var all []*link
	for l := range p.conns {
		all = append(all, l)
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, l := range all {
		l.reset()
	}
	p.wg.Wait()
	return nil
}

// serve accepts on ln until it is closed.
func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = ln.Close()
		return
	}
	p.ln = ln
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Set(Cut) or Close
			}
			p.handle(c)
		}
	}()
}

// state returns the mode, the delay and the channel closed at the next
// change.
func (p *Proxy) state() (Mode, time.Duration, <-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay, p.change, p.closed
}

// link is one proxied connection: the client's side and the target's.
// mu guards upstream and closed: the dialer sets upstream while Close may
// be resetting the link.
type link struct {
	client   net.Conn
	done     chan struct{}
	mu       sync.Mutex
	upstream net.Conn
	closed   bool
}

// reset closes both sides at once, with an RST where possible.
func (l *link) reset() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	conns := []net.Conn{l.client, l.upstream}
	l.mu.Unlock()
	for _, c := range conns {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// attach records the target's side; false (and up closed) when the link
// was reset while dialing.
func (l *link) attach(up net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = up.Close()
		return false
	}
	l.upstream = up
	return true
}

// handle dials the target for client and starts the two copiers.
func (p *Proxy) handle(client net.Conn) {
	l := &link{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.mode == Cut {
		p.mu.Unlock()
		l.reset()
		return
	}
	p.conns[l] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.conns, l)
			p.mu.Unlock()
			l.reset()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		up, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.target)
		cancel()
		if err != nil {
			// The target is down: the client sees its connection reset,
			// the nearest a proxy gets to a refusal.
			return
		}
		if !l.attach(up) {
			return
		}
		p.mu.Lock()
		gone := p.closed
		p.mu.Unlock()
		if gone {
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() { p.pipe(l, up, client) })
		wg.Go(func() { p.pipe(l, client, up) })
		wg.Wait()
	}()
}

// chunk is bytes read at a time, to be delivered after the delay.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst under the proxy's mode until either side ends;
// then it resets the link, so the other direction ends too.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.reset()
	q := make(chan chunk, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		// The writer: holds each chunk for the delay and while the mode
		// is Blackhole.
		for c := range q {
			if !p.deliver(l, dst, c) {
				l.reset()
				for range q { // drain: the reader stops once the link is reset
				}
				return
			}
		}
	})
	defer wg.Wait()
	defer close(q)
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case q <- chunk{b: buf[:n], at: time.Now()}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return // EOF, a reset or the link closed: the link ends
		}
	}
}

// deliver writes c to dst once the mode lets it through; false means the
// link ended.
func (p *Proxy) deliver(l *link, dst net.Conn, c chunk) bool {
	for range maxWaits {
		mode, delay, change, closed := p.state()
		if closed {
			return false
		}
		switch mode {
		case Cut:
			return false
		case Blackhole:
			select {
			case <-change:
				continue
			case <-l.done:
				return false
			}
		case Delay:
			if wait := time.Until(c.at.Add(delay)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-change:
					t.Stop()
					continue
				case <-l.done:
					t.Stop()
					return false
				}
			}
		}
		_, err := dst.Write(c.b)
		return err == nil
	}
	return false
}

// maxWaits bounds how many mode changes one chunk waits through.
const maxWaits = 1 << 20
