package chaos

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecapNamesEveryFailedRun: a sweep's last lines name each failed run
// with its findings, or its error and its node logs' last lines.
func TestRecapNamesEveryFailedRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "n1.log"), []byte("a\nb\nlast words\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := &Result{LostWrites: 1}
	res.add("lost-write", "write %d acknowledged, then gone", nil, 7)
	var b strings.Builder
	recap(&b, []failedRun{
		{scenario: "kill9", run: 3, dir: "/x/kill9/run-03", res: res},
		{scenario: "join", run: 1, dir: dir, err: errors.New("the cluster did not form")},
	})
	out := b.String()
	for _, want := range []string{"2 run(s) failed", "kill9 run 3", "lost_writes=1", "lost-write: write 7 acknowledged, then gone",
		"join run 1", "the cluster did not form", "n1.log: last words"} {
		if !strings.Contains(out, want) {
			t.Errorf("recap lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	recap(&b, nil)
	if b.Len() != 0 {
		t.Errorf("recap of no failures printed %q", b.String())
	}
}
