// Package e2e drives the cluster example (go run ./examples/cluster) from a
// headless Chromium: it logs in through the demo app, fills a cart, kills the
// node that owns the session from the dashboard, and checks that the cart
// survived and that the dashboard shows the failover.
//
// It needs Debian's chromium (/usr/bin/chromium, or $CHROMIUM). Without it
// the test is skipped, except under CI=true, where it fails. With
// UPDATE_SCREENSHOT=1 it saves the dashboard to docs/dashboard.png.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// chromium returns the browser to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium not found at %s (CI=true: it must be installed): %v", path, err)
		}
		t.Skipf("chromium not found at %s: apt-get install -y chromium to run this test", path)
	}
	return path
}

// repoRoot is the root of the tandem module, three levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(mod, []byte("module github.com/tandemsession/tandem\n")) {
		t.Fatalf("%s is not the tandem module root: %v", root, err)
	}
	return root
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

// syncBuffer collects the cluster's output for the failure log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCluster builds the example and runs it with its balancer on a free
// port; it is stopped with SIGTERM (every node drains) when the test ends.
func startCluster(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "cluster")
	build := exec.Command("go", "build", "-o", bin, "./examples/cluster")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/cluster: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("cluster exited with %v", err)
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("cluster did not stop within 60s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", out.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if allUp(base) {
			return base
		}
		select {
		case err := <-exited:
			t.Fatalf("cluster exited early: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not up within 60s\n%s", out.String())
		}
	}
}

// state is the part of /dashboard/api/state the test reads.
type state struct {
	Nodes []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"nodes"`
}

func allUp(base string) bool {
	resp, err := http.Get(base + "/dashboard/api/state")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st state
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil || len(st.Nodes) == 0 {
		return false
	}
	for _, n := range st.Nodes {
		if n.State != "up" {
			return false
		}
	}
	return true
}

// traffic keeps a few sessions writing through the balancer, so that the
// dashboard shows replication, until the test ends.
func traffic(t *testing.T, base string, clients int) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 5 * time.Second}
		wg.Go(func() {
			for i := range 2000 {
				select {
				case <-stop:
					return
				case <-time.After(150 * time.Millisecond):
				}
				resp, err := hc.PostForm(base+"/bench/write", url.Values{"k": {fmt.Sprintf("k%d", i%50)}, "v": {fmt.Sprintf("c%d-%d", c, i)}})
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func TestDashboardFailover(t *testing.T) {
	exe := chromium(t)
	base := startCluster(t)
	traffic(t, base, 8)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	// The browser starts first, on a deadline of its own: its first start
	// on a machine that just installed it (font caches) can take minutes,
	// and once ate the scenario's whole budget in CI ("add pear: timed
	// out" after 3 minutes, with the cluster idle and healthy).
	launched := time.Now()
	launch := make(chan error, 1)
	go func() { launch <- chromedp.Do(ctx) }()
	select {
	case err := <-launch:
		must(t, "start chromium", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("chromium did not start within 5 minutes")
	}
	t.Logf("chromium started in %v", time.Since(launched).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		must(t, "read "+sel, err)
		return strings.TrimSpace(v)
	}

	// The dashboard shows three nodes up.
	must(t, "open the dashboard", chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard/"),
		chromedp.WaitVisible(`body[data-ready="1"]`),
		chromedp.WaitVisible(`#node-n1[data-state="up"]`),
		chromedp.WaitVisible(`#node-n3[data-state="up"]`),
	))

	// Log in through the app and fill the cart.
	must(t, "log in", chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`#user-input`),
		chromedp.SendKeys(`#user-input`, "ada"),
		chromedp.Click(`#login`),
		chromedp.WaitVisible(`#user`),
	))
	items := []string{"apple", "pear", "plum"}
	for i, item := range items {
		must(t, "add "+item, chromedp.Do(ctx,
			chromedp.WaitVisible(`#item-input`),
			chromedp.SendKeys(`#item-input`, item),
			chromedp.Click(`#add`),
			// The item itself, not the (i+1)th line: an empty cart
			// shows one line too, and the next step must not type into
			// the page this submit is about to replace.
			chromedp.WaitVisible(chromedp.Search(fmt.Sprintf(`//ul[@id="cart"]/li[%d][normalize-space()=%q]`, i+1, item))),
		))
	}
	user, owner, cart := text(`#user`), text(`#served-by`), text(`#cart`)
	if user != "ada" || !containsAll(cart, items) {
		t.Fatalf("before the kill: user %q, cart %q", user, cart)
	}
	t.Logf("session owned by %s", owner)

	// Kill the owner from the dashboard.
	must(t, "kill "+owner, chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard/"),
		chromedp.WaitVisible(`body[data-ready="1"]`),
		chromedp.WaitVisible(fmt.Sprintf(`#node-%s[data-state="up"]`, owner)),
		chromedp.Click(`#kill-`+owner),
		chromedp.WaitVisible(fmt.Sprintf(`#node-%s[data-state="killed"]`, owner)),
	))

	// The app, reloaded, is served by another node, with the cart intact.
	must(t, "reload the app", chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`#served-by`),
	))
	servedBy, cart := text(`#served-by`), text(`#cart`)
	var userAfter string
	if n, err := chromedp.Run(ctx, chromedp.Nodes(`#user`, chromedp.AtLeast(0))); err == nil && len(n) > 0 {
		userAfter = text(`#user`)
	}
	if servedBy == owner || userAfter != "ada" || !containsAll(cart, items) {
		t.Fatalf("after killing %s: served by %q, user %q, cart %q", owner, servedBy, userAfter, cart)
	}
	t.Logf("after the kill: served by %s, cart %q", servedBy, cart)

	// The same session, as JSON, through the balancer.
	must(t, "open /api/session", chromedp.Do(ctx, chromedp.Navigate(base+"/api/session")))
	raw := text(`body`)
	var info nodeapp.SessionInfo
	if err := json.Unmarshal([]byte(raw), &info); err != nil || info.User != "ada" || info.Owner == owner {
		t.Fatalf("/api/session after the kill: %s (%v)", raw, err)
	}

	// The dashboard shows the killed node out of the ring and the failover.
	must(t, "see the failover on the dashboard", chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard/"),
		chromedp.WaitVisible(`body[data-ready="1"]`),
		chromedp.WaitVisible(fmt.Sprintf(`g.ring-node[data-node="%s"][data-state="killed"]`, owner)),
		chromedp.WaitVisible(`#events tr[data-kind="failover"]`),
		chromedp.WaitVisible(`#events tr[data-kind="kill"]`),
		chromedp.Sleep(1500*time.Millisecond), // one more poll: rates filled in
	))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	must(t, "screenshot", err)
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		shot = filepath.Join(repoRoot(t), "docs", "dashboard.png")
		if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot: %s", shot)

	// Start it again from the dashboard.
	must(t, "start "+owner+" again", chromedp.Do(ctx,
		chromedp.Click(`#restart-`+owner),
		chromedp.WaitVisible(fmt.Sprintf(`#node-%s[data-state="up"]`, owner)),
	))
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: timed out", what)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
