// Package faultnet injects network faults between named nodes, for tests:
// it hands each node a dial function, and can cut, stall or delay the
// connections from one node to another while the test runs. It only dials
// the addresses it is given (loopback in this repository's tests).
package faultnet

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Fault is the state of one direction of a link.
type Fault int

const (
	// OK passes traffic.
	OK Fault = iota
	// Cut refuses new connections and breaks existing ones.
	Cut
	// Stall accepts writes but delivers nothing until the fault is lifted.
	Stall
)

// ErrCut is returned by dials and writes over a cut link.
var ErrCut = errors.New("faultnet: link cut")

type link struct{ from, to string }

// Net is a set of links between named nodes. The zero value is not ready:
// use New.
type Net struct {
	mu     sync.Mutex
	addrs  map[string]string // address -> node name
	faults map[link]Fault
	delays map[link]time.Duration
	conns  map[link]map[*conn]struct{}
	change chan struct{} // closed and replaced when a fault changes
}

// New returns a network where every link is OK.
func New() *Net {
	return &Net{addrs: map[string]string{}, faults: map[link]Fault{}, delays: map[link]time.Duration{},
		conns: map[link]map[*conn]struct{}{}, change: make(chan struct{})}
}

// Register names the node listening on addr.
func (n *Net) Register(name, addr string) {
	n.mu.Lock()
	n.addrs[addr] = name
	n.mu.Unlock()
}

// Dialer returns the dial function for node from.
func (n *Net) Dialer(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		l := link{from, n.addrs[addr]}
		f := n.faults[l]
		n.mu.Unlock()
		if f == Cut {
			return nil, ErrCut
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		fc := &conn{Conn: c, n: n, l: l, closed: make(chan struct{})}
		n.mu.Lock()
		if n.conns[l] == nil {
			n.conns[l] = map[*conn]struct{}{}
		}
		n.conns[l][fc] = struct{}{}
		n.mu.Unlock()
		return fc, nil
	}
}

// Set puts a fault on the link from -> to.
func (n *Net) Set(from, to string, f Fault) {
	n.mu.Lock()
	l := link{from, to}
	n.faults[l] = f
	var broken []*conn
	if f == Cut {
		for c := range n.conns[l] {
			broken = append(broken, c)
		}
	}
	close(n.change)
	n.change = make(chan struct{})
	n.mu.Unlock()
	for _, c := range broken {
		c.Close()
	}
}

// Partition cuts every link between the two groups, both ways.
func (n *Net) Partition(a, b []string) {
	for _, x := range a {
		for _, y := range b {
			n.Set(x, y, Cut)
			n.Set(y, x, Cut)
		}
	}
}

// Heal lifts every fault and delay.
func (n *Net) Heal() {
	n.mu.Lock()
	links := make([]link, 0, len(n.faults))
	for l := range n.faults {
		links = append(links, l)
	}
	clear(n.delays)
	n.mu.Unlock()
	for _, l := range links {
		n.Set(l.from, l.to, OK)
	}
}

// Delay holds every write on the link from -> to for d.
func (n *Net) Delay(from, to string, d time.Duration) {
	n.mu.Lock()
	n.delays[link{from, to}] = d
	n.mu.Unlock()
}

type conn struct {
	net.Conn
	n      *Net
	l      link
	once   sync.Once
	closed chan struct{}
}

func (c *conn) Write(b []byte) (int, error) {
	for {
		c.n.mu.Lock()
		f, d, change := c.n.faults[c.l], c.n.delays[c.l], c.n.change
		c.n.mu.Unlock()
		switch f {
		case Cut:
			return 0, ErrCut
		case Stall:
			select {
			case <-change:
			case <-c.closed:
				return 0, net.ErrClosed
			}
			continue
		}
		if d > 0 {
			time.Sleep(d)
		}
		return c.Conn.Write(b)
	}
}

func (c *conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.n.mu.Lock()
	delete(c.n.conns[c.l], c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}
