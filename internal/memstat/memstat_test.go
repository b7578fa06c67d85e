package memstat

import (
	"os"
	"runtime"
	"testing"
)

func TestRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc")
	}
	self, byPID := RSS(0), RSS(os.Getpid())
	if self <= 0 || byPID <= 0 {
		t.Fatalf("RSS = %d, by PID %d: want both above 0", self, byPID)
	}
	if RSS(-1) != 0 {
		t.Fatal("RSS of no process is not 0")
	}
}

func TestLiveHeapCountsWhatIsHeld(t *testing.T) {
	before := LiveHeap()
	held := make([][]byte, 64)
	for i := range held {
		held[i] = make([]byte, 128<<10)
	}
	after := LiveHeap()
	if after-before < 8<<20 {
		t.Fatalf("heap grew by %d holding 8 MiB", after-before)
	}
	runtime.KeepAlive(held)
}
