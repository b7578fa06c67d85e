package tandemprom_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemprom"
)

// pairNode is one node of an in-process pair.
type pairNode struct {
	node *buddy.Node
	mgr  *core.Manager
}

// startPair starts n1 and n2 on loopback, replicating to each other in
// Sync mode, and waits until both are ready. They stop when the test ends.
func startPair(t *testing.T) (n1, n2 pairNode) {
	t.Helper()
	clusterKey := bytes.Repeat([]byte{'c'}, buddy.ClusterKeySize)
	cookieKey := core.KeyPair{Hash: bytes.Repeat([]byte{'h'}, 32), Block: bytes.Repeat([]byte{'b'}, 32)}
	lns := map[string]net.Listener{}
	var peers []buddy.Peer
	for _, id := range []string{"n1", "n2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
		peers = append(peers, buddy.Peer{ID: id, Addr: ln.Addr().String()})
	}
	start := func(id string) pairNode {
		node, err := buddy.New(buddy.Config{
			ID: id, Listener: lns[id], Peers: peers, ClusterKeys: [][]byte{clusterKey},
			PingInterval: 20 * time.Millisecond, SuspectAfter: 200 * time.Millisecond, DeadAfter: 400 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := core.NewManager(core.Config{Keys: []core.KeyPair{cookieKey}, Replicator: node})
		if err != nil {
			_ = node.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = node.Close()
			_ = m.Close()
		})
		return pairNode{node, m}
	}
	n1, n2 = start("n1"), start("n2")
	deadline := time.Now().Add(10 * time.Second)
	for !n1.node.Ready() || !n2.node.Ready() || !alive(n1.node, "n2") || !alive(n2.node, "n1") {
		if time.Now().After(deadline) {
			t.Fatal("the pair did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n1, n2
}

func alive(n *buddy.Node, peer string) bool {
	for _, p := range n.Peers() {
		if p.ID == peer {
			return p.State == buddy.Alive
		}
	}
	return false
}

// write runs one POST through m's middleware that sets a key in a new
// session, with cookie (if any) on the request.
func write(m *core.Manager, cookie string) error {
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := core.FromContext(r.Context()).Set("cart", []string{"tea"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	req := httptest.NewRequest(http.MethodPost, "/cart/add", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("write: %d %s", rec.Code, rec.Body)
	}
	return nil
}

// A real pair: n1 serves five new sessions in Sync mode (one of them with
// a forged cookie); the collectors of both nodes, registered in one
// registry with a node label each, report what happened.
func TestNodePair(t *testing.T) {
	n1, n2 := startPair(t)
	for i := range 5 {
		cookie := ""
		if i == 0 {
			cookie = "tandem=" + strings.Repeat("A", 40) // tampered: a fresh session
		}
		if err := write(n1.mgr, cookie); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	c1, err := tandemprom.New(tandemprom.Options{Manager: n1.mgr, Node: n1.node, ConstLabels: prometheus.Labels{"node": "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := tandemprom.New(tandemprom.Options{Manager: n2.mgr, Node: n2.node, ConstLabels: prometheus.Labels{"node": "n2"}})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(c1, c2)

	const want = `
# HELP tandem_sessions Sessions this node owns.
# TYPE tandem_sessions gauge
tandem_sessions{node="n1"} 5
tandem_sessions{node="n2"} 0
# HELP tandem_backups Backup copies this node holds for the owners it backs up.
# TYPE tandem_backups gauge
tandem_backups{node="n1"} 0
tandem_backups{node="n2"} 5
# HELP tandem_cookies_rejected_total Session cookies that failed to decode (tampered, expired, or sealed with keys this node does not hold); each became a fresh session.
# TYPE tandem_cookies_rejected_total counter
tandem_cookies_rejected_total{node="n1"} 1
tandem_cookies_rejected_total{node="n2"} 0
# HELP tandem_commits_total Requests whose session changes this node committed (a session created, changed, regenerated or ended), whether or not a buddy acknowledged them.
# TYPE tandem_commits_total counter
tandem_commits_total{node="n1"} 5
tandem_commits_total{node="n2"} 0
# HELP tandem_replication_acks_total Synchronous commits the buddy acknowledged.
# TYPE tandem_replication_acks_total counter
tandem_replication_acks_total{node="n1"} 5
tandem_replication_acks_total{node="n2"} 0
# HELP tandem_replication_degraded_commits_total Synchronous commits served without a second copy: no other node acknowledged in time.
# TYPE tandem_replication_degraded_commits_total counter
tandem_replication_degraded_commits_total{node="n1"} 0
tandem_replication_degraded_commits_total{node="n2"} 0
# HELP tandem_has_buddy 1 when the node has a buddy holding its backups, 0 when it runs alone.
# TYPE tandem_has_buddy gauge
tandem_has_buddy{node="n1"} 1
tandem_has_buddy{node="n2"} 1
# HELP tandem_node_info The node's ID and replication mode; always 1.
# TYPE tandem_node_info gauge
tandem_node_info{id="n1",mode="sync",node="n1"} 1
tandem_node_info{id="n2",mode="sync",node="n2"} 1
`
	names := []string{"tandem_sessions", "tandem_backups", "tandem_cookies_rejected_total", "tandem_commits_total", "tandem_replication_acks_total",
		"tandem_replication_degraded_commits_total", "tandem_has_buddy", "tandem_node_info"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// The peer states: each sees the other alive.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(peerStates("n1", "n2")+peerStates("n2", "n1")[len(peerHeader):]), "tandem_peer_state"); err != nil {
		t.Fatal(err)
	}

	// What is not exact: every acknowledged batch has one latency
	// observation, the wire bytes are there, records were applied on n2.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" {
					key += "/" + l.GetValue()
				}
			}
			switch {
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
				got[key+"/sum"] = m.GetHistogram().GetSampleSum()
			case m.GetCounter() != nil:
				got[key] += m.GetCounter().GetValue()
			}
		}
	}
	if b := got["tandem_replication_batches_total/n1"]; b < 1 || got["tandem_replication_latency_seconds/n1"] != b ||
		got["tandem_replication_batch_records/n1"] != b {
		t.Errorf("batches %v, latency observations %v, batch sizes %v: want equal and > 0", b,
			got["tandem_replication_latency_seconds/n1"], got["tandem_replication_batch_records/n1"])
	}
	if s := got["tandem_replication_latency_seconds/n1/sum"]; s <= 0 || s > 10 {
		t.Errorf("latency sum %v s", s)
	}
	if got["tandem_replication_records_sent_total/n1"] < 5 || got["tandem_replication_wire_bytes_total/n1"] <= 0 ||
		got["tandem_backup_records_applied_total/n2"] < 5 || got["tandem_backup_received_bytes_total/n2"] <= 0 {
		t.Errorf("records and bytes: %v", got)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// n1 stops the way a deployment stops a node: n2 now owns the
	// sessions, and its collector says so.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	const after = `
# HELP tandem_sessions Sessions this node owns.
# TYPE tandem_sessions gauge
tandem_sessions{node="n2"} 5
# HELP tandem_backups_promoted_total Backup copies taken over from a draining owner.
# TYPE tandem_backups_promoted_total counter
tandem_backups_promoted_total{node="n2"} 5
`
	if err := testutil.CollectAndCompare(c2, strings.NewReader(after), "tandem_sessions", "tandem_backups_promoted_total"); err != nil {
		t.Fatal(err)
	}
}

const peerHeader = `# HELP tandem_peer_state What this node believes of each peer: 1 for the peer's current state, 0 for the others.
# TYPE tandem_peer_state gauge
`

// peerStates is the exposition of node's view of an alive peer.
func peerStates(node, peer string) string {
	var b strings.Builder
	b.WriteString(peerHeader)
	for s := buddy.Unknown; s <= buddy.Left; s++ {
		v := "0"
		if s == buddy.Alive {
			v = "1"
		}
		b.WriteString(`tandem_peer_state{node="` + node + `",peer="` + peer + `",state="` + s.String() + `"} ` + v + "\n")
	}
	return b.String()
}
