package tandemprom_test

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemprom"
)

// A node's manager and buddy.Node, exported on /metrics from a registry
// of the application's own. The node runs alone here (no peers), so it
// has no buddy: tandem_has_buddy is 0.
func Example() {
	clusterKey := make([]byte, buddy.ClusterKeySize)
	cookieKey := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	for _, b := range [][]byte{clusterKey, cookieKey.Hash, cookieKey.Block} {
		_, _ = rand.Read(b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	node, err := buddy.New(buddy.Config{ID: "n1", Listener: ln, ClusterKeys: [][]byte{clusterKey}})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{cookieKey}, Replicator: node})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	collector, err := tandemprom.New(tandemprom.Options{Manager: m, Node: node})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("POST /cart/add", m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = core.FromContext(r.Context()).Set("cart", []string{"tea"})
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/cart/add", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	printMetrics(srv.URL+"/metrics", "tandem_sessions ", "tandem_has_buddy ", "tandem_node_info")
	// Output:
	// tandem_has_buddy 0
	// tandem_node_info{id="n1",mode="sync"} 1
	// tandem_sessions 1
}

// A single node without replication exports the session metrics only.
// ConstLabels tell its series apart from other applications'.
func ExampleNew_managerOnly() {
	key := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	_, _ = rand.Read(key.Hash)
	_, _ = rand.Read(key.Block)
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{key}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	c, err := tandemprom.New(tandemprom.Options{Manager: m, ConstLabels: prometheus.Labels{"app": "shop"}})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		fmt.Println(mf.GetName(), mf.GetMetric()[0].GetLabel()[0].GetValue())
	}
	// Output:
	// tandem_commits_total shop
	// tandem_cookies_rejected_total shop
	// tandem_sessions shop
	// tandem_sessions_evicted_total shop
	// tandem_sessions_fetched_total shop
	// tandem_sessions_gone_total shop
	// tandem_unavailable_total shop
}

// printMetrics scrapes url and prints the lines that start with one of
// prefixes.
func printMetrics(url string, prefixes ...string) {
	resp, err := http.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, p := range prefixes {
			if strings.HasPrefix(sc.Text(), p) {
				fmt.Println(sc.Text())
			}
		}
	}
}
