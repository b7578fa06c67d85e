package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// fakeDiscovery answers what the test sets: an error, or a peer list.
type fakeDiscovery struct {
	mu    sync.Mutex
	peers []buddy.Peer
	err   error
}

func (f *fakeDiscovery) set(peers []buddy.Peer, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers, f.err = peers, err
}

func (f *fakeDiscovery) Peers(context.Context) ([]buddy.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]buddy.Peer(nil), f.peers...), f.err
}

// syncBuffer is a log destination safe for concurrent writes.
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

func waitStatus(t *testing.T, u string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for status(u) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", u, status(u), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With Discovery, a node is not ready until it has answered once: before
// that it cannot tell being alone from not knowing its peers. A node its
// discovery does not list warns, since its peers will reject it.
func TestDiscoveryGatesReadiness(t *testing.T) {
	disc := &fakeDiscovery{err: errors.New("dns is down")}
	var logs syncBuffer
	ln1, ln2 := listen(t), listen(t)
	p1, p2 := buddy.Peer{ID: "n1", Addr: ln1.Addr().String()}, buddy.Peer{ID: "n2", Addr: ln2.Addr().String()}
	cfg := func(id string, ln net.Listener) Config {
		return Config{ID: id, HTTPListener: listen(t), ReplListener: ln, Discovery: disc, DiscoveryInterval: 20 * time.Millisecond,
			ClusterKeys: [][]byte{testClusterKey}, CookieKeys: []core.KeyPair{testCookieKey},
			ShutdownTimeout: 10 * time.Second, Buddy: fastTimers,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	}
	n1 := start(t, cfg("n1", ln1))
	if got := status(n1.base + "/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before discovery answered: %d, want 503", got)
	}
	if got := status(n1.base + "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz: %d", got)
	}

	// An answer that lists only n1: alone, and ready.
	disc.set([]buddy.Peer{p1}, nil)
	waitStatus(t, n1.base+"/readyz", http.StatusOK)

	// n2 appears, and both pair up.
	disc.set([]buddy.Peer{p1, p2}, nil)
	n2 := start(t, cfg("n2", ln2))
	waitConverged(t, []*testNode{n1, n2})

	// A failing discovery keeps the peers.
	disc.set(nil, errors.New("dns is down again"))
	time.Sleep(100 * time.Millisecond)
	waitConverged(t, []*testNode{n1, n2})

	// An answer without n1: n1 warns.
	if strings.Contains(logs.String(), "does not list this node") {
		t.Fatalf("warning before the fact:\n%s", logs.String())
	}
	disc.set([]buddy.Peer{p2}, nil)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "discovery does not list this node") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	disc.set([]buddy.Peer{p1, p2}, nil)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "discovery lists this node now") {
		if time.Now().After(deadline) {
			t.Fatalf("no all-clear:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "does not list this node"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logs.String())
	}
}
