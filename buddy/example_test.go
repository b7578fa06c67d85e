package buddy_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// Two nodes on loopback: n1 serves a request, its buddy n2 holds the
// backup copy, and n1 stops the way a deployment stops a node (Shutdown):
// n2 becomes the session's owner.
func Example() {
	// The keys are the same on every node; in production they come from
	// your secret store.
	clusterKey := make([]byte, buddy.ClusterKeySize)
	cookieKey := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	for _, b := range [][]byte{clusterKey, cookieKey.Hash, cookieKey.Block} {
		_, _ = rand.Read(b)
	}
	lns := map[string]net.Listener{}
	var peers []buddy.Peer
	for _, id := range []string{"n1", "n2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // replication only, not the app's port
		if err != nil {
			log.Fatal(err)
		}
		lns[id] = ln
		peers = append(peers, buddy.Peer{ID: id, Addr: ln.Addr().String()})
	}
	start := func(id string) (*buddy.Node, *core.Manager) {
		node, err := buddy.New(buddy.Config{ID: id, Listener: lns[id], Peers: peers, ClusterKeys: [][]byte{clusterKey}})
		if err != nil {
			log.Fatal(err)
		}
		m, err := core.NewManager(core.Config{
			Keys:       []core.KeyPair{cookieKey},
			Replicator: node,
			Cookie:     core.CookieConfig{RouteName: core.DefaultRouteCookie},
		})
		if err != nil {
			log.Fatal(err)
		}
		return node, m
	}
	n1, m1 := start("n1")
	n2, m2 := start("n2")
	defer func() {
		_ = n2.Shutdown(context.Background())
		_ = m2.Close()
	}()
	for deadline := time.Now().Add(5 * time.Second); !n1.Ready() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("n1 ready:", n1.Ready(), "- its buddy:", n1.Stats().Buddy)

	app := m1.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := core.FromContext(r.Context()).Set("cart", []string{"tea"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "added tea")
	}))
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/cart/add", nil))
	fmt.Print(rec.Body.String())
	// Sync mode: the answer went out once n2 held the change.
	fmt.Println("backup copies on n2:", n2.Stats().Backups)

	// SIGTERM: the app server's Shutdown, then the node's, then the manager.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	_ = m1.Close()
	fmt.Println("sessions owned by n2 after n1's shutdown:", m2.Len())
	// Output:
	// n1 ready: true - its buddy: n2
	// added tea
	// backup copies on n2: 1
	// sessions owned by n2 after n1's shutdown: 1
}
