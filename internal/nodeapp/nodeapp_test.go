package nodeapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// The node itself is tested in examples/node; these tests cover what
// nodeapp adds: the configuration it converts and the /bench routes.

func init() { gin.SetMode(gin.TestMode) }

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startPair starts n1 and n2 on loopback, waits until each has its buddy,
// and returns their base URLs.
func startPair(t *testing.T) []string {
	t.Helper()
	httpLns, replLns := []net.Listener{listen(t), listen(t)}, []net.Listener{listen(t), listen(t)}
	peers := []buddy.Peer{{ID: "n1", Addr: replLns[0].Addr().String()}, {ID: "n2", Addr: replLns[1].Addr().String()}}
	var bases []string
	for i, p := range peers {
		ctx, cancel := context.WithCancel(context.Background())
		done, readyc := make(chan error, 1), make(chan string, 1)
		cfg := Config{
			ID: p.ID, HTTPListener: httpLns[i], ReplListener: replLns[i], Peers: peers,
			ClusterKey: bytes.Repeat([]byte("c"), 32), ShutdownTimeout: 10 * time.Second,
			CookieKeys: core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)},
			Buddy:      func(c *buddy.Config) { c.PingInterval = 20 * time.Millisecond },
		}
		go func() { done <- Run(ctx, cfg, func(h, _ string) { readyc <- h }) }()
		select {
		case h := <-readyc:
			bases = append(bases, "http://"+h)
		case err := <-done:
			t.Fatalf("%s did not start: %v", p.ID, err)
		}
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", p.ID, err)
			}
		})
	}
	for _, b := range bases {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var st StatsInfo
			if err := getJSON(http.DefaultClient, b+"/api/stats", &st); err != nil {
				t.Fatal(err)
			}
			if st.Ready && len(st.Stats.Peers) == 1 && st.Stats.Peers[0].State == buddy.Alive {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %+v", b, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return bases
}

func getJSON(c *http.Client, u string, v any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestBenchRoutes(t *testing.T) {
	bases := startPair(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}

	// Writes: POST (form or query), and GET for the load driver.
	for i := range 3 {
		var resp *http.Response
		var err error
		if i == 2 {
			resp, err = c.Get(fmt.Sprintf("%s/bench/write?k=k%d&v=v%d", bases[0], i, i))
		} else {
			resp, err = c.PostForm(bases[0]+"/bench/write", url.Values{"k": {fmt.Sprintf("k%d", i)}, "v": {fmt.Sprintf("v%d", i)}})
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("bench write %d: %v %v", i, resp, err)
		}
		if got := resp.Header.Get(NewSessionHeader); (i == 0) != (got == "1") {
			t.Fatalf("write %d: %s = %q", i, NewSessionHeader, got)
		}
		if got := resp.Header.Get(NodeHeader); got != "n1" {
			t.Fatalf("write %d served by %q", i, got)
		}
		resp.Body.Close()
	}
	u, _ := url.Parse(bases[0])
	route := ""
	for _, ck := range jar.Cookies(u) {
		if ck.Name == RouteCookie {
			route = ck.Value
		}
	}
	if route != "n1" {
		t.Fatalf("route cookie %q, want n1", route)
	}

	resp, err := http.Get(bases[0] + "/bench/read") // no cookie
	if err != nil || resp.Header.Get(NewSessionHeader) != "1" {
		t.Fatalf("bench read without a session: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(bases[1] + "/bench/read?k=k1") // the other node fetches it
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "v1" || resp.Header.Get(NewSessionHeader) != "" {
		t.Fatalf("bench read on n2: %q", body)
	}
	var all map[string]string
	if err := getJSON(c, bases[1]+"/bench/get", &all); err != nil {
		t.Fatal(err)
	}
	if all["k0"] != "v0" || all["k2"] != "v2" {
		t.Fatalf("bench get %v", all)
	}
	resp, err = c.PostForm(bases[1]+"/bench/write", url.Values{"k": {strings.Repeat("k", 129)}})
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("long key: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestRunRejectsBadConfig(t *testing.T) {
	err := Run(t.Context(), Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", ClusterKey: []byte("short"),
		CookieKeys: core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}}, nil)
	if err == nil || !strings.Contains(err.Error(), "ClusterKey") {
		t.Fatalf("err %v", err)
	}
	if err := Run(t.Context(), Config{ID: "n1", HTTPAddr: "127.0.0.1:0", ReplAddr: "127.0.0.1:0", ClusterKey: bytes.Repeat([]byte("c"), 32)}, nil); err == nil || !strings.Contains(err.Error(), "CookieKeys") {
		t.Fatalf("no cookie keys: err %v", err)
	}
}
