package tandemotel_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// pairNode is one node of an in-process pair.
type pairNode struct {
	node *buddy.Node
	mgr  *core.Manager
}

// startPair starts n1 and n2 on loopback, replicating to each other in
// Sync mode, and waits until each sees the other alive. They stop when
// the test ends.
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
	alive := func(n *buddy.Node, peer string) bool {
		for _, p := range n.Peers() {
			if p.ID == peer {
				return p.State == buddy.Alive
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !n1.node.Ready() || !n2.node.Ready() || !alive(n1.node, "n2") || !alive(n2.node, "n1"); {
		if time.Now().After(deadline) {
			t.Fatal("the pair did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n1, n2
}

// A real pair in Sync mode: five sessions written on n1 (one with a
// forged cookie), read through one SDK reader with a node attribute each;
// then n1 hands its sessions to n2 with Shutdown.
func TestNodePair(t *testing.T) {
	n1, n2 := startPair(t)
	app := n1.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := core.FromContext(r.Context()).Set("cart", []string{"tea"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	for i := range 5 {
		req := httptest.NewRequest(http.MethodPost, "/cart/add", nil)
		if i == 0 {
			req.Header.Set("Cookie", "tandem="+strings.Repeat("A", 40))
		}
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("write: %d", rec.Code)
		}
	}

	reader, mp := newReader(t)
	for _, p := range []pairNode{n1, n2} {
		m, err := tandemotel.New(tandemotel.WithMeterProvider(mp), tandemotel.WithManager(p.mgr), tandemotel.WithNode(p.node),
			tandemotel.WithAttributes(attribute.String("tandem.node", p.node.Stats().ID)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Unregister() })
	}
	// value reads name's point of node (and, when set, key=value).
	value := func(got map[string]metricdata.Metrics, name, node string, kv ...string) int64 {
		t.Helper()
		var points []metricdata.DataPoint[int64]
		switch d := got[name].Data.(type) {
		case metricdata.Sum[int64]:
			points = d.DataPoints
		case metricdata.Gauge[int64]:
			points = d.DataPoints
		default:
			t.Fatalf("%s: %T", name, got[name].Data)
		}
		for _, dp := range points {
			if v, _ := dp.Attributes.Value("tandem.node"); v.AsString() != node {
				continue
			}
			if len(kv) == 2 {
				if v, _ := dp.Attributes.Value(attribute.Key(kv[0])); v.AsString() != kv[1] {
					continue
				}
			}
			return dp.Value
		}
		t.Fatalf("%s: no point for %s %v", name, node, kv)
		return 0
	}
	got := collect(t, reader)
	for _, c := range []struct {
		name, node string
		want       int64
	}{
		{"tandem.sessions", "n1", 5}, {"tandem.sessions", "n2", 0},
		{"tandem.backups", "n1", 0}, {"tandem.backups", "n2", 5},
		{"tandem.cookies.rejected", "n1", 1},
		{"tandem.commits", "n1", 5}, {"tandem.commits", "n2", 0},
		{"tandem.replication.acks", "n1", 5},
		{"tandem.replication.degraded", "n1", 0},
		{"tandem.buddy.present", "n1", 1}, {"tandem.buddy.present", "n2", 1},
	} {
		if v := value(got, c.name, c.node); v != c.want {
			t.Errorf("%s{%s} = %d, want %d", c.name, c.node, v, c.want)
		}
	}
	if v := value(got, "tandem.peer.state", "n1", "state", "alive"); v != 1 {
		t.Errorf("n1 sees n2 alive: %d", v)
	}
	batches := value(got, "tandem.replication.sent.batches", "n1")
	if all := value(got, "tandem.replication.latency.buckets", "n1", "le", "+Inf"); batches < 1 || all != batches {
		t.Errorf("batches %d, latency observations %d", batches, all)
	}
	if value(got, "tandem.replication.sent.wire_size", "n1") <= 0 || value(got, "tandem.backup.records.applied", "n2") < 5 {
		t.Error("no bytes sent, or fewer than 5 records applied on n2")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got = collect(t, reader)
	if v, p := value(got, "tandem.sessions", "n2"), value(got, "tandem.backups.promoted", "n2"); v != 5 || p != 5 {
		t.Errorf("after n1's shutdown: n2 owns %d sessions, promoted %d; want 5, 5", v, p)
	}
	if v := value(got, "tandem.drains", "n1"); v != 1 {
		t.Errorf("n1 drains %d", v)
	}
}
