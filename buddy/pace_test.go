package buddy

import (
	"testing"
	"time"
)

// TestPaceDueCountsTheTransferAsAWhole: a state transfer is paced by the
// bytes sent since it began, so a batch that was slow is made up by the
// next ones, and a pause of more than a second begins a new transfer.
func TestPaceDueCountsTheTransferAsAWhole(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s: a batch of 512 KiB is due half a second after the last
	s := &sender{}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		name string
		sent time.Duration // since t0
		raw  int
		due  time.Duration // since t0
	}{
		{"the first batch: due at its own size", 0, 512 << 10, 500 * time.Millisecond},
		{"on schedule: due after the one before", 500 * time.Millisecond, 512 << 10, time.Second},
		{"a slow batch behind schedule: due in the past, so no wait", 3 * time.Second / 2, 512 << 10, 1500 * time.Millisecond},
		{"the next one keeps the transfer's schedule, not its own", 1900 * time.Millisecond, 512 << 10, 2 * time.Second},
		{"more than a second after the last was due: a new transfer", 4 * time.Second, 512 << 10, 4500 * time.Millisecond},
	}
	for _, st := range steps {
		got := s.paceDue(st.raw, t0.Add(st.sent), rate)
		if want := t0.Add(st.due); !got.Equal(want) {
			t.Fatalf("%s: due at %v, want %v", st.name, got.Sub(t0), st.due)
		}
	}
}
