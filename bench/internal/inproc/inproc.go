// Package inproc starts a Tandem cluster of the demo node app
// (internal/nodeapp) inside the calling process, on loopback listeners, for
// the replication benchmark and the tuning mode of the load driver.
package inproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// Mode is how the cluster replicates.
type Mode string

// Replication modes: Off runs every node alone (no buddy, no Replicator in
// the manager); Sync and Async are buddy.Sync and buddy.Async.
const (
	Off   Mode = "off"
	Sync  Mode = "sync"
	Async Mode = "async"
)

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Off, Sync, Async:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want off, sync or async", s)
}

// Keys used by every benchmark cluster. They protect nothing: the traffic
// stays on loopback.
var (
	ClusterKey = bytes.Repeat([]byte("c"), buddy.ClusterKeySize)
	CookieKeys = core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
)

// MaxAttributes is the attribute limit the benchmark nodes run with, so
// that large sample sessions fit.
const MaxAttributes = 4096

// NodeConfig returns the nodeapp.Config of node id in mode, with the
// benchmark's keys and limits; buddyEdit, when not nil, adjusts the buddy
// config further (codec, batch size). For Off, peers are ignored: the node
// runs alone and its manager has no Replicator.
func NodeConfig(id string, peers []buddy.Peer, mode Mode, buddyEdit func(*buddy.Config)) nodeapp.Config {
	cfg := nodeapp.Config{
		ID:              id,
		Peers:           peers,
		ClusterKey:      ClusterKey,
		CookieKeys:      CookieKeys,
		ShutdownTimeout: 10 * time.Second,
		Mode:            buddy.Sync,
		Buddy:           buddyEdit,
	}
	off := mode == Off
	if mode == Async {
		cfg.Mode = buddy.Async
	}
	cfg.Core = func(c *core.Config) {
		c.Limits.MaxAttributes = MaxAttributes
		if off {
			c.Replicator = nil
		}
	}
	if off {
		cfg.Peers = nil // set by the caller to the node alone
	}
	return cfg
}

// Node is one running node.
type Node struct {
	ID, HTTPAddr, ReplAddr string
	cancel                 context.CancelFunc
	done                   chan error
}

// Cluster is a set of running nodes.
type Cluster struct {
	Mode  Mode
	Nodes []*Node
}

// Start starts n nodes n1..nN in mode and waits until each replicating node
// has its buddy.
func Start(n int, mode Mode, buddyEdit func(*buddy.Config)) (*Cluster, error) {
	httpLns, replLns := make([]net.Listener, n), make([]net.Listener, n)
	peers := make([]buddy.Peer, n)
	closeAll := func() {
		for i := range n {
			for _, ln := range []net.Listener{httpLns[i], replLns[i]} {
				if ln != nil {
					ln.Close()
				}
			}
		}
	}
	for i := range n {
		var err error
		if httpLns[i], err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			replLns[i], err = net.Listen("tcp", "127.0.0.1:0")
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		peers[i] = buddy.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: replLns[i].Addr().String()}
	}
	c := &Cluster{Mode: mode}
	for i := range n {
		cfg := NodeConfig(peers[i].ID, peers, mode, buddyEdit)
		if mode == Off {
			cfg.Peers = peers[i : i+1]
		}
		cfg.HTTPListener, cfg.ReplListener = httpLns[i], replLns[i]
		ctx, cancel := context.WithCancel(context.Background())
		nd := &Node{ID: peers[i].ID, HTTPAddr: httpLns[i].Addr().String(), ReplAddr: peers[i].Addr,
			cancel: cancel, done: make(chan error, 1)}
		go func() { nd.done <- nodeapp.Run(ctx, cfg, nil) }()
		c.Nodes = append(c.Nodes, nd)
	}
	if err := c.waitReady(15 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addrs returns the nodes' HTTP addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.HTTPAddr
	}
	return out
}

// IDs returns the node IDs.
func (c *Cluster) IDs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.ID
	}
	return out
}

func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.Stats()
		ready := err == nil
		for _, s := range st {
			if c.Mode != Off && s.Stats.Buddy == "" {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("inproc: cluster not ready after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var statsClient = &http.Client{Timeout: 5 * time.Second}

// FetchStats reads GET /api/stats of the node at addr.
func FetchStats(addr string) (nodeapp.StatsInfo, error) {
	var s nodeapp.StatsInfo
	resp, err := statsClient.Get("http://" + addr + "/api/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s/api/stats: %s", addr, resp.Status)
	}
	return s, json.Unmarshal(body, &s)
}

// Stats reads every node's /api/stats.
func (c *Cluster) Stats() ([]nodeapp.StatsInfo, error) {
	out := make([]nodeapp.StatsInfo, len(c.Nodes))
	for i, n := range c.Nodes {
		s, err := FetchStats(n.HTTPAddr)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Settle waits until no node has records queued for its buddy and the
// counters stopped moving, or timeout passes.
func (c *Cluster) Settle(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var prev uint64
	for {
		st, err := c.Stats()
		if err != nil {
			return err
		}
		var depth int
		var sent uint64
		for _, s := range st {
			depth += s.Stats.QueueDepth + s.Stats.Resyncs
			sent += s.Stats.RecordsSent
		}
		if depth == 0 && sent == prev {
			return nil
		}
		prev = sent
		if time.Now().After(deadline) {
			return errors.New("inproc: replication did not settle")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops the nodes one after the other (gracefully: each drains to its
// buddy, the last one has nobody left to drain to) and returns their
// errors.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
			}
		case <-time.After(20 * time.Second):
			errs = append(errs, fmt.Errorf("%s: did not stop", n.ID))
		}
	}
	return errors.Join(errs...)
}

// Repl sums the replication counters of several nodes.
type Repl struct {
	Records    uint64          `json:"records"`
	BytesRaw   uint64          `json:"bytes_raw"`
	BytesWire  uint64          `json:"bytes_wire"`
	Batches    uint64          `json:"batches"`
	Acks       uint64          `json:"acks"`
	Degraded   uint64          `json:"degraded"`
	SendErrors uint64          `json:"send_errors"`
	FullCopies uint64          `json:"full_copies"`
	Failovers  uint64          `json:"failovers"`
	Latency    buddy.Histogram `json:"-"`
	QueueDepth int             `json:"queue_depth"`
}

// Sum adds up the counters of st.
func Sum(st []nodeapp.StatsInfo) Repl {
	var r Repl
	for _, s := range st {
		x := s.Stats
		r.Records += x.RecordsSent
		r.BytesRaw += x.BytesRaw
		r.BytesWire += x.BytesWire
		r.Batches += x.Batches
		r.Acks += x.Acks
		r.Degraded += x.Degraded
		r.SendErrors += x.SendErrors
		r.FullCopies += x.FullCopies
		r.Failovers += x.Failovers
		r.QueueDepth += x.QueueDepth
		r.Latency.Count += x.Latency.Count
		r.Latency.Sum += x.Latency.Sum
		for i, b := range x.Latency.Buckets {
			r.Latency.Buckets[i] += b
		}
	}
	return r
}

// Sub returns the counters of r minus those of an earlier snapshot; gauges
// keep r's value.
func (r Repl) Sub(prev Repl) Repl {
	d := r
	d.Records -= prev.Records
	d.BytesRaw -= prev.BytesRaw
	d.BytesWire -= prev.BytesWire
	d.Batches -= prev.Batches
	d.Acks -= prev.Acks
	d.Degraded -= prev.Degraded
	d.SendErrors -= prev.SendErrors
	d.FullCopies -= prev.FullCopies
	d.Failovers -= prev.Failovers
	d.Latency.Count -= prev.Latency.Count
	d.Latency.Sum -= prev.Latency.Sum
	for i := range d.Latency.Buckets {
		d.Latency.Buckets[i] -= prev.Latency.Buckets[i]
	}
	return d
}

// PerRecord returns wire and raw bytes per record sent (0 when none).
func (r Repl) PerRecord() (wire, raw float64) {
	if r.Records == 0 {
		return 0, 0
	}
	return float64(r.BytesWire) / float64(r.Records), float64(r.BytesRaw) / float64(r.Records)
}
