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
	heap0, rss0 := liveHeap(), selfRSS()
	now := time.Now()
	for i := range ids {
		c := &core.Change{ID: ids[i], Version: 1, Epoch: 1, Full: true, Set: []core.Attr{{Key: key, Value: vals[i]}}, Created: now, Accessed: now}
		if out, _ := b.apply("n1", 1, wire.Record{Kind: wire.KindFull, Change: c}); out != applied {
			t.Fatalf("copy %d: outcome %v", i, out)
		}
	}
	heap1, rss1 := liveHeap(), selfRSS()
	t.Logf("backup, %d copies of one attribute (%d B of ID, key and value each, held before and not counted): "+
		"heap %.0f B/copy, RSS %.0f B/copy beyond them", n, payload/n,
		float64(heap1-heap0)/float64(n), float64(rss1-rss0)/float64(n))
	runtime.KeepAlive(ids)
	runtime.KeepAlive(vals)
	if b.len() != n {
		t.Fatalf("%d copies held, want %d", b.len(), n)
	}
}

// liveHeap returns the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// selfRSS returns the process's resident set in bytes (0 where /proc is absent).
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	_, _ = fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

// attrListOf sorts, keeps a key's last value, and shares no array with its
// input; put and remove keep the order.
func TestBackupAttrList(t *testing.T) {
	in := []core.Attr{{Key: "b", Value: []byte("1")}, {Key: "a", Value: []byte("2")}, {Key: "b", Value: []byte("3")}}
	l := attrListOf(in)
	if len(l) != 2 || l[0].Key != "a" || l[1].Key != "b" || string(l[1].Value) != "3" {
		t.Fatalf("attrListOf = %v", l)
	}
	l.put("c", nil)
	l.put("0", nil)
	l.remove("a")
	l.remove("zz")
	var keys []string
	for _, a := range l {
		keys = append(keys, a.Key)
	}
	if fmt.Sprint(keys) != "[0 b c]" {
		t.Fatalf("keys %v", keys)
	}
	l[0].Key = "x"
	if in[0].Key != "b" {
		t.Fatal("attrListOf shares its input's array")
	}
}
