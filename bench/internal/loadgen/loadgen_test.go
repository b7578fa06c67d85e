package loadgen

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tandemsession/tandem/compress"
	"time"
)

// fakeStore is a session store shared by fake nodes: sessions by the "sid"
// cookie, like a Redis-backed app.
type fakeStore struct {
	mu   sync.Mutex
	sess map[string]map[string]string
	next int
}

func (s *fakeStore) wipe() {
	s.mu.Lock()
	s.sess = map[string]map[string]string{}
	s.mu.Unlock()
}

// node returns a handler of the benchmark routes that names itself in the
// "route" cookie.
func (s *fakeStore) node(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var m map[string]string
		if c, err := r.Cookie("sid"); err == nil {
			m = s.sess[c.Value]
		}
		if m == nil {
			s.next++
			sid := fmt.Sprint("s", s.next)
			m = map[string]string{}
			s.sess[sid] = m
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid})
		}
		http.SetCookie(w, &http.Cookie{Name: "route", Value: id})
		q := r.URL.Query()
		switch r.URL.Path {
		case "/bench/write":
			m[q.Get("k")] = q.Get("v")
			w.Write([]byte("ok\n"))
		case "/bench/read":
			w.Write([]byte(m[q.Get("k")]))
		case "/bench/get":
			json.NewEncoder(w).Encode(m)
		default:
			http.NotFound(w, r)
		}
	})
}

func session() []Attr {
	return []Attr{{"user", `{"id":1,"name":"ann"}`}, {"cart", strings.Repeat("x", 300)}}
}

func TestRunVerify(t *testing.T) {
	st := &fakeStore{}
	st.wipe()
	srv := httptest.NewServer(st.node("a"))
	defer srv.Close()
	res, err := Run(Target{Addrs: []string{srv.Listener.Addr().String()}}, Options{
		Clients: 4, Duration: 5 * time.Second, Requests: 400, WriteRatio: 0.7, Session: session(), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 400 || res.Failed != 0 || res.SeedFailures != 0 {
		t.Fatalf("%v, seed failures %d", res, res.SeedFailures)
	}
	v := res.Verify
	if v.LostWrites != 0 || v.SessionsLost != 0 || v.Unreadable != 0 || v.AckedWrites != res.Writes || res.Writes == 0 {
		t.Fatalf("verification %+v, %d writes", *v, res.Writes)
	}
	var sum int64
	for _, b := range res.Timeline {
		sum += b.OK + b.Fail
	}
	if sum != res.Requests || res.P50 <= 0 || res.P99 < res.P50 {
		t.Fatalf("timeline sums to %d of %d; p50 %v p99 %v", sum, res.Requests, res.P50, res.P99)
	}
}

// A store wiped mid-run loses every session and the writes acknowledged
// before the wipe.
func TestRunLostSessions(t *testing.T) {
	st := &fakeStore{}
	st.wipe()
	srv := httptest.NewServer(st.node("a"))
	defer srv.Close()
	res, err := Run(Target{Addrs: []string{srv.Listener.Addr().String()}}, Options{
		Clients: 3, Duration: 400 * time.Millisecond, WriteRatio: 1, Session: session(), Verify: true,
		Events: []Event{{At: 150 * time.Millisecond, Name: "wipe", Do: st.wipe}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := res.Verify
	if v.SessionsLost != 3 || v.LostWrites == 0 || v.LostWrites >= v.AckedWrites {
		t.Fatalf("verification %+v", *v)
	}
	if _, ok := res.EventTimes["wipe"]; !ok || res.Failover == nil {
		t.Fatalf("event not recorded: %v %+v", res.EventTimes, res.Failover)
	}
}

// Users follow the route cookie, and move to the other node when theirs
// stops accepting connections.
func TestRunReroute(t *testing.T) {
	st := &fakeStore{}
	st.wipe()
	a, b := httptest.NewServer(st.node("a")), httptest.NewServer(st.node("b"))
	defer b.Close()
	res, err := Run(Target{Addrs: []string{a.Listener.Addr().String(), b.Listener.Addr().String()}, IDs: []string{"a", "b"}, RouteCookie: "route"},
		Options{
			Clients: 4, Duration: 500 * time.Millisecond, WriteRatio: 1, Session: session(), Verify: true,
			Events: []Event{{At: 150 * time.Millisecond, Name: "kill-a", Do: func() {
				a.CloseClientConnections()
				a.Close()
			}}},
		})
	if err != nil {
		t.Fatal(err)
	}
	f, v := res.Failover, res.Verify
	if f == nil || f.Affected == 0 || f.Recovered != f.Affected {
		t.Fatalf("failover %+v", f)
	}
	if v.LostWrites != 0 || v.SessionsLost != 0 || v.Unreadable != 0 {
		t.Fatalf("verification %+v", *v)
	}
}

func TestSizedSession(t *testing.T) {
	sample, err := ReadSample("../../testdata/session.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{100, 1024, 4096, 65536} {
		s := SizedSession(sample, size)
		got := EncodedSize(s)
		if got < size || got > size+64 {
			t.Errorf("SizedSession(%d) weighs %d", size, got)
		}
		seen := map[string]bool{}
		for _, a := range s {
			if seen[a.Key] || len(a.Value) > MaxAttrValue {
				t.Errorf("size %d: key %q repeated or value of %d bytes", size, a.Key, len(a.Value))
			}
			seen[a.Key] = true
		}
	}
	raw, wire, err := FullCopyWireSize(SizedSession(sample, 4096), compressDefault)
	if err != nil || raw < 4096 || wire <= 0 || wire >= raw {
		t.Fatalf("FullCopyWireSize: raw %d, wire %d, %v", raw, wire, err)
	}
}

var compressDefault = compress.Config{}
