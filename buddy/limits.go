package buddy

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// budget bounds bytes held across every connection: those of requests not
// authenticated yet (so that unauthenticated peers cannot make the node
// hold more), and of batches being decompressed.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports false when that would exceed the
// budget.
func (b *budget) take(n int) bool {
	for {
		u := b.used.Load()
		if u+int64(n) > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *budget) give(n int) { b.used.Add(-int64(n)) }

// logLimit writes at most one line per second for each key (a rejection
// reason), with the count of the lines it held back: a flood of forged
// messages costs the log one line a second, and the counters (Stats)
// still count every one.
type logLimit struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func (l *logLimit) warn(log *slog.Logger, key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if l.last == nil {
		l.last, l.held = make(map[string]time.Time), make(map[string]int)
	}
	if now.Sub(l.last[key]) < time.Second {
		l.held[key]++
		l.mu.Unlock()
		return
	}
	held := l.held[key]
	l.last[key], l.held[key] = now, 0
	l.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	log.Warn(msg, args...)
}
