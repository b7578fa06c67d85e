package clusterapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tandemsession/tandem/internal/nodeapp"
)

// TestMain lets the test binary be a node too: the supervisor starts
// os.Executable(), which in a test is this binary.
func TestMain(m *testing.M) {
	if id := os.Getenv(envNodeID); id != "" {
		if err := runChild(Config{}); err != nil {
			fmt.Fprintf(os.Stderr, "node %s: %v\n", id, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestClusterKillRestartStop runs two nodes as child processes behind the
// balancer, kills the owner of a session with SIGKILL, reads the session
// through the balancer, starts the node again and stops everything.
func TestClusterKillRestartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	logs := &logSink{}
	events := &eventLog{}
	o := options{addr: "127.0.0.1:0", nodes: 2, sessions: 1, mode: "sync", demo: true}
	c, err := startCluster(t.Context(), o, events, logs)
	if c != nil {
		defer func() {
			if err := c.close(); err != nil {
				t.Errorf("close: %v", err)
			}
			for _, pi := range c.sup.infos() {
				if pi.State != stateStopped && pi.State != stateKilled {
					t.Errorf("%s left %s", pi.ID, pi.State)
				}
			}
			if t.Failed() {
				var b bytes.Buffer
				logs.dump(&b)
				t.Log(b.String())
			}
		}()
	}
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + c.addr
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(nodeapp.NodeHeader), string(b)
	}
	var owner string
	for i := range 5 {
		resp, err := hc.PostForm(base+"/bench/write", url.Values{"k": {fmt.Sprintf("k%d", i)}, "v": {fmt.Sprintf("v%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		code, node := resp.StatusCode, resp.Header.Get(nodeapp.NodeHeader)
		if code != 200 {
			t.Fatalf("write %d: %d", i, code)
		}
		if owner != "" && node != owner {
			t.Fatalf("write %d served by %s, the session lives on %s", i, node, owner)
		}
		owner = node
	}

	if _, err := c.sup.kill(owner); err != nil {
		t.Fatal(err)
	}
	code, node, body := get("/bench/get")
	var got map[string]string
	if code != 200 || node == owner || json.Unmarshal([]byte(body), &got) != nil || got["k0"] != "v0" || got["k4"] != "v4" {
		t.Fatalf("after killing %s: %d from %s: %s", owner, code, node, body)
	}

	if err := c.sup.start(t.Context(), owner); err != nil {
		t.Fatal(err)
	}
	if err := c.waitConverged(t.Context(), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	// The dashboard's state and the events it shows.
	c.mon.poll(t.Context())
	st := c.mon.state()
	if len(st.Nodes) != 2 || st.Nodes[0].State != stateUp || st.Nodes[1].State != stateUp {
		t.Fatalf("dashboard nodes: %+v", st.Nodes)
	}
	var kinds []string
	for _, e := range st.Events {
		kinds = append(kinds, e.Kind)
	}
	all := strings.Join(kinds, ",")
	for _, want := range []string{"kill", "exit", "start", "up"} {
		if !strings.Contains(all, want) {
			t.Fatalf("events %s lack %q", all, want)
		}
	}
	resp, err := http.Get(base + "/dashboard/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("Tandem cluster dashboard")) {
		t.Fatalf("dashboard page: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/dashboard/api/kill?node=n1", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("kill without the dashboard header: %v %v", resp, err)
	}
}
