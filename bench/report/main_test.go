package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReport builds a page and the charts from synthetic reports.
func TestReport(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	write := func(i int, r map[string]any) {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("%02d.json", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := func(label, target, mode string, rps, p99 float64) map[string]any {
		return map[string]any{
			"label": label, "target": target, "mode": mode, "nodes": 3, "clients": 64, "write_ratio": 1.0,
			"session_size": 1024, "duration": "8s", "command": "go run ./bench/load -target " + target + " -json x.json",
			"date": "2026-11-25T10:00:00Z", "rps": rps, "p50_ms": 1.0, "p99_ms": p99, "p999_ms": 2 * p99,
			"machine": map[string]any{"cpu": "test", "cores": 2},
			"load":    map[string]any{"ok": 100},
		}
	}
	write(1, base(syncW, "tandem", "sync", 9000, 10))
	write(2, base(redisW, "gincontrib-redis", "", 3000, 40))
	write(3, base(syncW, "tandem", "sync", 11000, 12))
	write(4, base(asyncW, "tandem", "async", 14000, 8))
	write(5, base(offW, "tandem", "off", 15000, 7))
	w := base("wire-4096-c1", "tandem", "sync", 1000, 1)
	w["session_size"], w["full_copy_wire_bytes"], w["full_copy_raw_bytes"] = 4100, 2000, 4200
	w["replication"] = map[string]any{"wire_bytes_per_write": 110.0}
	write(6, w)
	fo := base(syncKill, "tandem", "sync", 9000, 10)
	fo["kill"] = map[string]any{"what": "SIGKILL n1", "at_ms": 3000.0}
	fo["load"] = map[string]any{"ok": 100, "failed": 5,
		"timeline": []map[string]any{{"t_ms": 2900, "ok": 10}, {"t_ms": 3000, "ok": 5, "fail": 5}, {"t_ms": 3100, "ok": 10}},
		"failover": map[string]any{"affected_users": 20, "recovered_users": 20, "recovery_max_ms": 50, "failed_after": 5, "window_ms": 100},
		"verify":   map[string]any{"users": 64, "acked_writes": 90, "lost_writes": 0}}
	write(7, fo)

	md := filepath.Join(out, "r.md")
	if err := report(in, md, out, "bench/run.sh", "1 s"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"**3.33x** the req/s (means 10000 vs 3000)", "**93%** of its req/s", "**110 B**", "**0 of 90** lost", "| Tandem, buddy Sync | 3 | 2 | 10000 ±10%"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	for _, f := range []string{"bench-throughput.svg", "bench-wire.svg", "bench-failover.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}
