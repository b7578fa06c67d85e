package core

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/tandemsession/tandem/internal/memstat"
)

// TestMemoryPerSession measures what the owner's store costs per session
// beyond its ID, key and value: TANDEM_BENCH_MEM=1000000 go test -run
// MemoryPerSession -v ./core/. It installs that many sessions of one small
// attribute and reports the growth of the live heap and of RSS per
// session. It asserts nothing and is skipped unless the variable is set.
func TestMemoryPerSession(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TANDEM_BENCH_MEM"))
	if n <= 0 {
		t.Skip("set TANDEM_BENCH_MEM to a number of sessions")
	}
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessions = n + 1 })
	ids := make([]string, n)
	vals := make([][]byte, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%024d", i)
		vals[i] = []byte(strconv.Quote(strconv.Itoa(i % 100000)))
	}
	const key = "user"
	payload := 0
	for i := range ids {
		payload += len(ids[i]) + len(key) + len(vals[i])
	}
	heap0, rss0 := memstat.LiveHeap(), memstat.RSS(0)
	now := time.Now()
	for i := range ids {
		c := &Change{ID: ids[i], Version: 1, Epoch: 1, Full: true, Set: []Attr{{Key: key, Value: vals[i]}}, Created: now, Accessed: now}
		if err := m.Install(c); err != nil {
			t.Fatal(err)
		}
	}
	heap1, rss1 := memstat.LiveHeap(), memstat.RSS(0)
	t.Logf("owner, %d sessions of one attribute (%d B of ID, key and value each, held before and not counted): "+
		"heap %.0f B/session, RSS %.0f B/session beyond them", n, payload/n,
		float64(heap1-heap0)/float64(n), float64(rss1-rss0)/float64(n))
	runtime.KeepAlive(ids)
	runtime.KeepAlive(vals)
	if m.Len() != n {
		t.Fatalf("%d sessions held, want %d", m.Len(), n)
	}
}

// TestRecordSize keeps a stored session's record within the 160-byte size
// class its field order was chosen for (16 bytes a session more otherwise).
func TestRecordSize(t *testing.T) {
	if got := unsafe.Sizeof(record{}); got > 160 {
		t.Fatalf("record is %d bytes, more than the 160-byte size class", got)
	}
}
