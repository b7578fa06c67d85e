package buddy

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/memstat"
)

// TestMemoryPerBackup measures what a backup copy costs beyond its ID, key
// and value: TANDEM_BENCH_MEM=1000000 go test -run MemoryPerBackup -v
// ./buddy/. It applies that many full copies of one small attribute, as a
// buddy does, and reports the growth of the live heap and of RSS per copy.
// It asserts nothing and is skipped unless the variable is set.
func TestMemoryPerBackup(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TANDEM_BENCH_MEM"))
	if n <= 0 {
		t.Skip("set TANDEM_BENCH_MEM to a number of copies")
	}
	b := newBackups(0)
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
		c := &core.Change{ID: ids[i], Version: 1, Epoch: 1, Full: true, Set: []core.Attr{{Key: key, Value: vals[i]}}, Created: now, Accessed: now}
		if out, _ := b.apply("n1", 1, wire.Record{Kind: wire.KindFull, Change: c}); out != applied {
			t.Fatalf("copy %d: outcome %v", i, out)
		}
	}
	heap1, rss1 := memstat.LiveHeap(), memstat.RSS(0)
	t.Logf("backup, %d copies of one attribute (%d B of ID, key and value each, held before and not counted): "+
		"heap %.0f B/copy, RSS %.0f B/copy beyond them", n, payload/n,
		float64(heap1-heap0)/float64(n), float64(rss1-rss0)/float64(n))
	runtime.KeepAlive(ids)
	runtime.KeepAlive(vals)
	if b.len() != n {
		t.Fatalf("%d copies held, want %d", b.len(), n)
	}
}
