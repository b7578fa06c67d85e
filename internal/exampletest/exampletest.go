// Package exampletest runs a single-node example app (examples/gin,
// examples/echo, examples/echo5) as a real process and drives it through
// its pages as a browser would: the session JSON, login (a new ID), a cart
// write, the welcome flash, a rejected form, logout, and a SIGTERM that
// ends the process cleanly.
package exampletest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// view is what every example's /api/session answers.
type view struct {
	User string   `json:"user"`
	Cart []string `json:"cart"`
	New  bool     `json:"new"`
}

// Drive builds the example in dir (a package main with an -addr flag),
// starts it on a free loopback port with fixed cookie keys, checks its
// pages, and stops it by its PID.
func Drive(t *testing.T, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	bin := filepath.Join(t.TempDir(), "app")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr)
	cmd.Env = append(os.Environ(),
		"TANDEM_COOKIE_HASH_KEY="+strings.Repeat("ab", 32),
		"TANDEM_COOKIE_BLOCK_KEY="+strings.Repeat("cd", 32))
	var logs strings.Builder
	// One writer for both: os/exec serializes the writes. The child dies
	// with the test binary.
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the example's log:\n%s", logs.String())
		}
	})

	base := "http://" + addr
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	waitUp(t, c, base+"/api/session")

	if v := session(t, c, base); !v.New || v.User != "" || len(v.Cart) != 0 {
		t.Fatalf("first visit: %+v, want a new, empty session", v)
	}
	before := cookies(jar, base)
	// Each POST redirects to the home page, which shows the flashes.
	if home := post(t, c, base+"/login", url.Values{"user": {"ann"}}, http.StatusOK); !strings.Contains(home, "welcome") || !strings.Contains(home, "ann") {
		t.Fatalf("home page after login: no welcome flash or user:\n%s", home)
	}
	if after := cookies(jar, base); after == before {
		t.Fatal("login kept the session cookie: no new ID")
	}
	if home := get(t, c, base+"/"); strings.Contains(home, "welcome") {
		t.Fatal("the welcome flash was shown twice")
	}
	post(t, c, base+"/cart/add", url.Values{"item": {"tea"}}, http.StatusOK)
	if v := session(t, c, base); v.User != "ann" || len(v.Cart) != 1 || v.Cart[0] != "tea" {
		t.Fatalf("after login and cart: %+v", v)
	}
	post(t, c, base+"/cart/add", url.Values{}, http.StatusBadRequest)
	if home := post(t, c, base+"/logout", nil, http.StatusOK); !strings.Contains(home, "bye") {
		t.Fatalf("home page after logout: no bye flash:\n%s", home)
	}
	if v := session(t, c, base); v.User != "" || len(v.Cart) != 0 {
		t.Fatalf("after logout: %+v, want an anonymous session", v)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatal("no exit within 15 s of SIGTERM")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUp(t *testing.T, c *http.Client, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			return
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the example does not answer at %s: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cookies(jar http.CookieJar, base string) string {
	u, _ := url.Parse(base)
	var s []string
	for _, c := range jar.Cookies(u) {
		s = append(s, c.Name+"="+c.Value)
	}
	return strings.Join(s, ";")
}

func session(t *testing.T, c *http.Client, base string) view {
	t.Helper()
	var v view
	if err := json.Unmarshal([]byte(get(t, c, base+"/api/session")), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// post sends a form and follows the redirect; want is the final status.
func post(t *testing.T, c *http.Client, u string, form url.Values, want int) string {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d, want %d: %s", u, resp.StatusCode, want, b)
	}
	return string(b)
}
