// Package memstat reads the memory figures the tests and benchmarks
// report: the live heap of this process and the resident set of any
// process.
package memstat

import (
	"fmt"
	"os"
	"runtime"
)

// LiveHeap returns this process's heap in use after two full collections
// (the second frees what the first's finalizers released).
func LiveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// RSS returns the resident set of process pid (0: this process) in bytes,
// from /proc/PID/statm, or 0 where /proc is absent.
func RSS(pid int) int64 {
	path := "/proc/self/statm"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/statm", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0
	}
	return res * int64(os.Getpagesize())
}
