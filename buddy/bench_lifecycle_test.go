package buddy

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// BenchmarkStateTransfer measures how fast a node hands every session to a
// new buddy: 100,000 sessions of about 1 KiB, loopback, default settings
// (TransferRate 128 MiB/s). Run with -benchtime=1x. TANDEM_BENCH_TRANSFER
// sets another number of sessions (the goal of #14: 1000000 within 10 s),
// TANDEM_BENCH_TRANSFER_RATE another TransferRate (-1: no cap).
func BenchmarkStateTransfer(b *testing.B) {
	sessions := 100_000
	if n, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_TRANSFER")); err == nil && n > 0 {
		sessions = n
	}
	for range b.N {
		b.StopTimer()
		ms := cluster(b, 2, func(c *Config) {
			if r, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_TRANSFER_RATE")); err == nil {
				c.TransferRate = r
			}
		})
		n1, n2 := ms[0], ms[1]
		n2.kill()
		waitRing(b, ms)
		now := time.Now()
		filler := make([]byte, 600)
		for i := range sessions {
			_, _ = rand.Read(filler[:64])
			v := fmt.Sprintf(`{"user":"user-%d","email":"user%d@example.com","csrf":%q,"cart":[{"sku":"SKU-%d","qty":%d,"price":1999}],"prefs":%q}`,
				i, i, base64.RawURLEncoding.EncodeToString(filler[:32]), i%500, i%7, base64.StdEncoding.EncodeToString(filler[:480]))
			c := &core.Change{ID: fmt.Sprintf("%024d", i), Version: 1, Full: true,
				Set: []core.Attr{{Key: "profile", Value: []byte(v)}}, Created: now, Accessed: now}
			if err := n1.mgr.Install(c); err != nil {
				b.Fatal(err)
			}
		}
		before := n1.node.Stats()
		b.StartTimer()
		start := time.Now()
		n2.restart(b) // joins: n1 sends it everything
		for deadline := start.Add(5 * time.Minute); n2.node.backups.len() < sessions; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("transfer: %d of %d copies after 5 minutes", n2.node.backups.len(), sessions)
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		after := n1.node.Stats()
		raw := after.TransferBytes - before.TransferBytes
		wire := after.BytesWire - before.BytesWire
		b.ReportMetric(float64(sessions)/elapsed.Seconds(), "sessions/s")
		b.ReportMetric(elapsed.Seconds(), "s/transfer")
		b.ReportMetric(float64(raw)/(1<<20), "MiB-raw")
		b.ReportMetric(float64(wire)/(1<<20), "MiB-wire")
		for _, m := range ms {
			m.kill()
		}
	}
}

// BenchmarkFailover measures, with default timers, how long after a node's
// death the others see it dead, and how much longer than usual the first
// request of one of its sessions takes on another node (it fetches the
// session from the backup). Run with -benchtime=5x or so.
func BenchmarkFailover(b *testing.B) {
	var detect, extra, normal time.Duration
	for range b.N {
		b.StopTimer()
		ms := cluster(b, 3, nil)
		n1, n2 := ms[0], ms[1]
		victim := &browser{t: b}
		victim.do(n1, "/set?k=v")
		local := &browser{t: b}
		local.do(n2, "/set?k=v")
		// A usual request on n2, for comparison.
		t0 := time.Now()
		for range 50 {
			local.do(n2, "/set?k=w")
		}
		normal += time.Since(t0) / 50
		b.StartTimer()
		killed := time.Now()
		n1.kill()
		t1 := time.Now()
		rec := victim.do(n2, "/get")
		first := time.Since(t1)
		if rec.Code != http.StatusOK || victim.id == "" {
			b.Fatalf("failed-over request: %d", rec.Code)
		}
		waitFor(b, "n2 sees n1 dead", func() bool { return !n2.node.alive("n1") })
		detect += time.Since(killed)
		b.StopTimer()
		extra += first
		for _, m := range ms[1:] {
			m.kill()
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(detect/n)/1e6, "detect-ms")
	b.ReportMetric(float64((extra-normal)/n)/1e3, "first-extra-us")
	b.ReportMetric(float64(normal/n)/1e3, "usual-us")
}
