package buddy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
	"go.uber.org/goleak"
)

// TestMain lets the test binary run as a cluster node in a child process,
// so a test can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_TEST_NODE") != "" {
		if err := runChildNode(); err != nil {
			fmt.Fprintln(os.Stderr, "child node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runChildNode serves testApp on TANDEM_TEST_HTTP with a buddy node on
// TANDEM_TEST_REPL; peers come as id=addr,id=addr.
func runChildNode() error {
	var peers []Peer
	for _, kv := range strings.Split(os.Getenv("TANDEM_TEST_PEERS"), ",") {
		id, addr, _ := strings.Cut(kv, "=")
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	node, err := New(Config{ID: os.Getenv("TANDEM_TEST_NODE"), ListenAddr: os.Getenv("TANDEM_TEST_REPL"),
		Peers: peers, ClusterKeys: [][]byte{testClusterKey}})
	if err != nil {
		return err
	}
	mgr, err := core.NewManager(core.Config{Keys: []core.KeyPair{testCookieKey}, Replicator: node})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		out := map[string]string{}
		for _, k := range s.Keys() {
			out[k], _, _ = core.Get[string](s, k)
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/", testApp)
	srv := &http.Server{Addr: os.Getenv("TANDEM_TEST_HTTP"), Handler: mgr.Middleware(mux)}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	err = node.Shutdown(sctx)
	mgr.Close()
	return err
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a node running in a child process.
type proc struct {
	id, http string
	cmd      *exec.Cmd
}

func startProc(t *testing.T, id, httpAddr, replAddr, peers string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_TEST_NODE="+id, "TANDEM_TEST_HTTP="+httpAddr,
		"TANDEM_TEST_REPL="+replAddr, "TANDEM_TEST_PEERS="+peers)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{id: id, http: httpAddr, cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "READY"
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("node %s did not start", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not start in time", id)
	}
	return p
}

// TestSIGKILLedProcessLosesNoAcknowledgedWrite runs three nodes as real
// processes, kills the owner of a session with SIGKILL under writes, and
// reads every acknowledged write back through the survivors.
func TestSIGKILLedProcessLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ids := []string{"n1", "n2", "n3"}
	httpAddrs, replAddrs := map[string]string{}, map[string]string{}
	var peers []string
	for _, id := range ids {
		httpAddrs[id], replAddrs[id] = freeAddr(t), freeAddr(t)
		peers = append(peers, id+"="+replAddrs[id])
	}
	procs := map[string]*proc{}
	for _, id := range ids {
		procs[id] = startProc(t, id, httpAddrs[id], replAddrs[id], strings.Join(peers, ","))
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	acked := map[string]string{}
	write := func(node string, k, v string) {
		resp, err := client.Get("http://" + httpAddrs[node] + "/set?" + k + "=" + v)
		if err != nil {
			return // not acknowledged
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			acked[k] = v
		}
	}
	// The cookie jar is per host:port; give every node the same cookie.
	share := func(from string) {
		u := mustURL("http://" + httpAddrs[from] + "/")
		for _, id := range ids {
			jar.SetCookies(mustURL("http://"+httpAddrs[id]+"/"), jar.Cookies(u))
		}
	}
	// Wait until the cluster formed: the first write must reach a buddy.
	deadline := time.Now().Add(15 * time.Second)
	for {
		write("n1", "k0", "0")
		share("n1")
		if got := readVia(t, client, httpAddrs["n2"]); got["k0"] == "0" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 1; i <= 30; i++ {
		write("n1", fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
	}
	share("n1")
	if err := procs["n1"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs["n1"].cmd.Wait()
	for i := 31; i <= 60; i++ {
		node := ids[1+i%2]
		write(node, fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
		share(node)
	}
	for _, id := range ids[1:] {
		got := readVia(t, client, httpAddrs[id])
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("through %s: %s=%q, acknowledged %q", id, k, got[k], v)
			}
		}
		share(id)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d keys acknowledged", len(acked))
	}
}

func readVia(t *testing.T, c *http.Client, addr string) map[string]string {
	t.Helper()
	out := map[string]string{}
	resp, err := c.Get("http://" + addr + "/get")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
