package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/faultproxy"
)

// clusterConfig says what cluster to run.
type clusterConfig struct {
	exe        string // the driver's own executable, re-run in child mode
	nodes      int
	mode       string // sync or async
	app        string // gin or echo
	membership string
	proxies    bool   // replication links through faultproxy
	logLevel   string // the nodes' slog level
	dir        string // where node logs go
}

// cluster is the running nodes, the proxies between them, and what the
// driver learns from them.
type cluster struct {
	cfg     clusterConfig
	nodes   []*nodeProc
	proxies map[link]*faultproxy.Proxy
	rec     *recorder
	bal     *balancer
	log     *slog.Logger
	logs    []*os.File
	client  *http.Client
}

// link is a directed replication link: from dials to.
type link struct{ from, to string }

func nodeID(i int) string { return fmt.Sprintf("n%d", i+1) }

// newCluster reserves every node's ports and, with proxies, starts one
// proxy per directed pair. No process starts yet.
func newCluster(cfg clusterConfig, rec *recorder, bal *balancer, log *slog.Logger) (*cluster, error) {
	c := &cluster{cfg: cfg, proxies: map[link]*faultproxy.Proxy{}, rec: rec, bal: bal, log: log,
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
	for i := range cfg.nodes {
		f, err := os.Create(filepath.Join(cfg.dir, nodeID(i)+".log"))
		if err != nil {
			c.close()
			return nil, fmt.Errorf("node log: %w", err)
		}
		c.logs = append(c.logs, f)
		p := &nodeProc{id: nodeID(i), log: f}
		if err := p.reserve(gossips(cfg.membership)); err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, p)
		bal.addNode(p.id, p.httpAddr)
	}
	keys := newRunKeys()
	var gossip []string
	for _, p := range c.nodes {
		if p.gossipAddr != "" {
			gossip = append(gossip, p.gossipAddr)
		}
	}
	for _, from := range c.nodes {
		peers := make([]buddy.Peer, 0, len(c.nodes))
		for _, to := range c.nodes {
			addr := to.replAddr
			if cfg.proxies && to != from {
				px, err := faultproxy.New("127.0.0.1:0", to.replAddr)
				if err != nil {
					c.close()
					return nil, err
				}
				c.proxies[link{from.id, to.id}] = px
				addr = px.Addr()
			}
			peers = append(peers, buddy.Peer{ID: to.id, Addr: addr})
		}
		from.env = []string{envChild + "=node", envID + "=" + from.id, envPeers + "=" + formatPeers(peers),
			envMode + "=" + cfg.mode, envApp + "=" + cfg.app, envMembership + "=" + cfg.membership, envLog + "=" + cfg.logLevel, envKeys + "=" + keys.String()}
		if from.gossipAddr != "" {
			from.env = append(from.env, envGossip+"="+from.gossipAddr, envGossipAll+"="+strings.Join(gossip, ","))
		}
	}
	return c, nil
}

func (c *cluster) node(id string) *nodeProc {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

// ids returns every node ID, running or not.
func (c *cluster) ids() []string {
	out := make([]string, len(c.nodes))
	for i, p := range c.nodes {
		out[i] = p.id
	}
	return out
}

// running returns the IDs of the nodes whose process runs (paused ones
// included).
func (c *cluster) running() []string {
	var out []string
	for _, p := range c.nodes {
		if p.running() {
			out = append(out, p.id)
		}
	}
	return out
}

// start starts node id and waits until it answers /healthz; the balancer
// learns it is up.
func (c *cluster) start(ctx context.Context, id string) error {
	p := c.node(id)
	if p == nil {
		return fmt.Errorf("no node %q", id)
	}
	if err := p.start(c.cfg.exe); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s exited while starting: %v", id, p.exitError())
		}
		resp, err := c.client.Get("http://" + p.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.rec.event(evStart, []string{id}, fmt.Sprintf("start %d", p.incarnation()+1))
				c.bal.set(id, true)
				return nil
			}
		}
		sleep(ctx, 20*time.Millisecond)
	}
	return errors.Join(fmt.Errorf("%s not healthy in time", id), ctx.Err())
}

// kill SIGKILLs the given nodes at once (the balancer learns it, after its
// staleness), reading their stats first.
func (c *cluster) kill(ids ...string) error {
	for _, id := range ids {
		c.pollOne(id)
	}
	c.rec.event(evKill, ids, "")
	var errs []error
	for _, id := range ids {
		if err := c.node(id).signal(syscall.SIGKILL); err != nil {
			errs = append(errs, err)
		}
		c.bal.set(id, false)
	}
	for _, id := range ids {
		if err := c.node(id).wait(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// term SIGTERMs node id (it drains: app server Shutdown, node.Shutdown,
// m.Close) and waits for it to exit.
func (c *cluster) term(id string) error {
	p := c.node(id)
	c.pollOne(id)
	c.rec.event(evTerm, []string{id}, "")
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	c.bal.set(id, false)
	if err := p.wait(30 * time.Second); err != nil {
		_ = p.kill()
		return err
	}
	c.rec.event(evExit, []string{id}, fmt.Sprint(p.exitError()))
	if err := p.exitError(); err != nil {
		return fmt.Errorf("%s stopped with %w", id, err)
	}
	return nil
}

// pause SIGSTOPs node id; resume SIGCONTs it.
func (c *cluster) pause(id string) error {
	c.pollOne(id)
	c.rec.event(evPause, []string{id}, "")
	if err := c.node(id).signal(syscall.SIGSTOP); err != nil {
		return err
	}
	c.bal.set(id, false)
	return nil
}

func (c *cluster) resume(id string) error {
	c.rec.event(evResume, []string{id}, "")
	if err := c.node(id).signal(syscall.SIGCONT); err != nil {
		return err
	}
	c.bal.set(id, true)
	return nil
}

// setLink changes the replication link from -> to (needs proxies).
func (c *cluster) setLink(from, to string, m faultproxy.Mode, d time.Duration) error {
	px := c.proxies[link{from, to}]
	if px == nil {
		return fmt.Errorf("no proxy %s->%s: the scenario runs without proxies", from, to)
	}
	detail := m.String()
	if m == faultproxy.Delay {
		detail += " " + d.String()
	}
	c.rec.event(evLink, []string{from, to}, detail)
	return px.Set(m, d)
}

// heal puts every link back to OK.
func (c *cluster) heal() error {
	var errs []error
	changed := false
	for _, px := range c.proxies {
		if m, _ := px.Mode(); m != faultproxy.OK {
			changed = true
			errs = append(errs, px.Set(faultproxy.OK, 0))
		}
	}
	if changed {
		c.rec.event(evHeal, nil, "")
	}
	return errors.Join(errs...)
}

// stats reads GET /stats of node id.
func (c *cluster) stats(id string) (nodeStats, error) {
	var s nodeStats
	p := c.node(id)
	resp, err := c.client.Get("http://" + p.httpAddr + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s /stats: %s", id, resp.Status)
	}
	return s, json.Unmarshal(b, &s)
}

// pollOne records one stats sample of node id, if it answers.
func (c *cluster) pollOne(id string) (nodeStats, bool) {
	p := c.node(id)
	if p == nil || !p.running() || p.isPaused() {
		return nodeStats{}, false
	}
	inc := p.incarnation()
	s, err := c.stats(id)
	if err != nil {
		return s, false
	}
	c.rec.stat(StatSample{At: c.rec.now(), Node: id, Incarnation: inc, Buddy: s.Stats.Buddy, Degraded: s.Stats.Degraded, DegradedAlone: s.Stats.DegradedAlone,
		QueueDepth: s.Stats.QueueDepth, Resyncs: s.Stats.Resyncs, Sessions: s.Sessions})
	return s, true
}

// pollAll samples every running node.
func (c *cluster) pollAll() {
	for _, p := range c.nodes {
		c.pollOne(p.id)
	}
}

// pollLoop samples every running node every interval until ctx ends, so
// that a node's degraded commits are known before it can die.
func (c *cluster) pollLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.pollAll()
		}
	}
}

// settled reports whether the running nodes agree on the ring: each sees
// the others alive and the rest gone, has the buddy the ring gives it,
// and has nothing queued or waiting for a full resend.
func (c *cluster) settled() bool {
	live := c.running()
	if len(live) == 0 {
		return true
	}
	for _, id := range live {
		if c.node(id).isPaused() {
			return false
		}
	}
	for i, id := range live {
		s, ok := c.pollOne(id)
		if !ok {
			return false
		}
		want := ""
		if len(live) > 1 {
			want = live[(i+1)%len(live)]
		}
		if s.Stats.Buddy != want || s.Stats.QueueDepth != 0 || s.Stats.Resyncs != 0 {
			return false
		}
		for _, ps := range s.Stats.Peers {
			alive := slices.Contains(live, ps.ID)
			if alive != (ps.State == buddy.Alive) {
				return false
			}
		}
	}
	return true
}

// waitSettled waits until settled, up to d.
func (c *cluster) waitSettled(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if c.settled() {
			c.rec.event(evSettled, c.running(), "")
			return true
		}
		sleep(ctx, 100*time.Millisecond)
	}
	c.rec.event(evUnsettled, c.running(), "")
	return false
}

// close stops every node process by its PID, the proxies and the logs.
func (c *cluster) close() {
	for _, p := range c.nodes {
		if err := p.kill(); err != nil {
			c.log.Warn("chaos: node not stopped", "node", p.id, "err", err)
		}
		p.release()
	}
	for _, px := range c.proxies {
		px.Close()
	}
	for _, f := range c.logs {
		f.Close()
	}
	c.client.CloseIdleConnections()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
