package buddy

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestPropertyNoAcknowledgedWriteLost runs random sequences of writes,
// kills, restarts and joins against a model of what was acknowledged, and
// checks after every step that every acknowledged write is readable through
// every live node. At most one node is down at a time, and the cluster
// settles (detection and state transfer) after each membership change, so
// no owner/buddy pair ever loses both copies.
func TestPropertyNoAcknowledgedWriteLost(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster property test")
	}
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		_ = f.Value.Set("8") // each check runs a cluster: keep the default run short
	}
	logDir := os.Getenv("TANDEM_PROP_LOGDIR")
	rapid.Check(t, func(rt *rapid.T) {
		timers := fastTimers
		if logDir != "" {
			// Debugging aid: a failed check's node logs go to a file in logDir.
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			timers = func(c *Config) { fastTimers(c); c.Logger = log }
			defer func() {
				if rt.Failed() || t.Failed() {
					name := filepath.Join(logDir, fmt.Sprintf("check-%d.log", time.Now().UnixNano()))
					_ = os.WriteFile(name, []byte(buf.String()), 0o644)
					t.Logf("node logs of the failed check: %s", name)
				}
			}()
		}
		ms := cluster(t, 4, timers)
		defer func() { // each check's cluster stops with it, not with the whole test
			for _, m := range ms {
				if !m.dead() {
					m.kill()
				}
			}
		}()
		// n4 starts outside the cluster and may join later.
		ms[3].kill()
		waitRing(t, ms)
		joined := false
		var users []*writer
		seq := 0
		liveOnes := func() []*member { return live(ms) }
		check := func() {
			for _, w := range users {
				for _, m := range liveOnes() {
					w.check(rt, m)
				}
			}
		}
		steps := rapid.IntRange(5, 25).Draw(rt, "steps")
		for range steps {
			down := len(ms) - len(liveOnes())
			if !joined {
				down--
			}
			actions := []string{"write", "write", "write", "newuser"}
			if down == 0 && len(liveOnes()) > 2 {
				actions = append(actions, "kill")
			}
			if down > 0 {
				actions = append(actions, "restart")
			}
			if !joined && down == 0 {
				actions = append(actions, "join")
			}
			switch rapid.SampledFrom(actions).Draw(rt, "action") {
			case "newuser":
				users = append(users, &writer{b: browser{t: t}, acked: map[string]string{}})
				fallthrough
			case "write":
				if len(users) == 0 {
					continue
				}
				w := rapid.SampledFrom(users).Draw(rt, "user")
				m := rapid.SampledFrom(liveOnes()).Draw(rt, "via")
				seq++
				written := false
				for range 50 { // a 503 while the cluster cannot tell (a busy machine) is retried
					if written = w.write(m, fmt.Sprintf("k%d", seq%5), fmt.Sprint(seq)); written {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if !written {
					rt.Fatalf("write refused by %s", m.node.ID())
				}
			case "kill":
				candidates := slices.DeleteFunc(liveOnes(), func(m *member) bool { return false })
				m := rapid.SampledFrom(candidates).Draw(rt, "victim")
				m.kill()
				settle(t, ms)
			case "restart", "join":
				for _, m := range ms {
					if m.dead() && (joined || m != ms[3]) || (!joined && m == ms[3] && down == 0) {
						m.restart(t)
						break
					}
				}
				if !joined && !ms[3].dead() {
					joined = true
				}
				settle(t, ms)
			}
			check()
		}
	})
}

// settle waits until the live members agree on the ring, each has the buddy
// the ring gives it, and every state transfer completed.
func settle(t testing.TB, ms []*member) {
	t.Helper()
	waitRing(t, ms)
	lv := live(ms)
	for _, m := range lv {
		want := ""
		ids := []string{}
		for _, o := range lv {
			ids = append(ids, o.node.ID())
		}
		slices.Sort(ids)
		if len(ids) > 1 {
			i := slices.Index(ids, m.node.ID())
			want = ids[(i+1)%len(ids)]
		}
		waitFor(t, m.node.ID()+" has buddy "+want, func() bool { return m.node.Stats().Buddy == want })
		if err := m.node.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
