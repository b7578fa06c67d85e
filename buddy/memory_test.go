package buddy

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

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

// TestBackupSize keeps a backup copy's struct in the 80-byte size class:
// the owner and fence fields are an interned place, not strings of their
// own.
func TestBackupSize(t *testing.T) {
	if got := unsafe.Sizeof(backup{}); got > 80 {
		t.Fatalf("backup is %d bytes, more than the 80-byte size class", got)
	}
}

// TestBackupPlace: a copy's owner and fence survive the interning, and a
// newer owner's full copy does not keep the former owner's place.
func TestBackupPlace(t *testing.T) {
	b := newBackups(0)
	now := time.Now()
	full := func(owner string, epoch uint64) outcome {
		c := &core.Change{ID: "s", Version: 1, Epoch: epoch, Full: true, Set: []core.Attr{{Key: "k", Value: []byte("1")}}, Created: now, Accessed: now}
		out, _ := b.apply(owner, 1, wire.Record{Kind: wire.KindFull, Change: c})
		return out
	}
	if out := full("n1", 1); out != applied {
		t.Fatalf("first copy: %v", out)
	}
	if out := full("n2", 2); out != applied {
		t.Fatalf("newer owner's copy: %v", out)
	}
	if e, _ := b.lookup("s"); e.holder != "n2" || e.fence || e.ended {
		t.Fatalf("after a newer owner's copy: %+v, want n2's copy", e)
	}
	if _, ok := b.handOut("s", "n2", "n3"); !ok {
		t.Fatal("handOut refused n2's copy")
	}
	if e, _ := b.lookup("s"); e.holder != "n3" || !e.fence || e.ended {
		t.Fatalf("after the hand-out: %+v, want a fence for n3", e)
	}
	if out := full("n2", 2); out != fenced {
		t.Fatalf("the former owner's copy after the hand-out: %v, want fenced", out)
	}
	b.end("s", "n2") // not n2's any more: no effect
	if e, _ := b.lookup("s"); e.holder != "n3" || e.ended {
		t.Fatalf("after an end from the former owner: %+v", e)
	}
}
