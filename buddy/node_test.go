package buddy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/internal/faultnet"
)

func TestSyncReplicatesEveryChange(t *testing.T) {
	ms := cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	u := &browser{t: t}
	steps := []string{"/set?x=1&y=2", "/set?x=3", "/del?y=", "/", "/clear", "/set?z=9", "/login", "/set?after=login"}
	var ids []string
	for _, p := range steps {
		u.do(a, p)
		ids = append(ids, u.id)
		// Sync: the buddy holds the change as soon as the response is out.
		sameCopy(t, a, b, u.id)
	}
	old := ids[5] // the ID before login
	if _, _, ok := b.node.Backup(old); ok {
		t.Fatal("buddy kept the ID that login retired")
	}
	u.do(a, "/logout")
	if _, _, ok := b.node.Backup(ids[len(ids)-1]); ok {
		t.Fatal("buddy kept the copy of a logged-out session")
	}
	if st := a.node.Stats(); st.Acks == 0 || st.Buddy != "n2" || st.BytesWire == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestThreeNodeRing(t *testing.T) {
	ms := cluster(t, 3, nil)
	for i, m := range ms {
		next := ms[(i+1)%3]
		if o, bk := m.node.Location(); o != m.node.ID() || bk != next.node.ID() {
			t.Fatalf("%s: location %s/%s", m.node.ID(), o, bk)
		}
		u := &browser{t: t}
		u.do(m, "/set?k="+m.node.ID())
		sameCopy(t, m, next, u.id)
		if got := len(ms[(i+2)%3].node.BackupIDs(m.node.ID())); got != 0 {
			t.Fatalf("non-buddy holds %d copies of %s", got, m.node.ID())
		}
	}
}

func TestConcurrentWritersConverge(t *testing.T) {
	for _, mode := range []Mode{Sync, Async} {
		t.Run(mode.String(), func(t *testing.T) {
			ms := cluster(t, 3, func(c *Config) { c.Mode = mode })
			a, b := ms[0], ms[1]
			shared := &browser{t: t}
			shared.do(a, "/set?init=1")
			var wg sync.WaitGroup
			ids := make([]string, 8)
			for w := range 8 {
				wg.Go(func() {
					own := &browser{t: t}
					one := &browser{t: t, cookie: shared.cookie}
					for i := range 40 {
						own.do(a, fmt.Sprintf("/set?k%d=%d", i%5, i))
						one.do(a, fmt.Sprintf("/set?w%d=%d", w, i))
					}
					ids[w] = own.id
				})
			}
			wg.Wait()
			if err := a.node.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, id := range append(ids, shared.id) {
				sameCopy(t, a, b, id)
			}
			snap, _ := a.mgr.Snapshot(shared.id)
			if len(snap.Set) != 9 || snap.Version != 1+8*40 {
				t.Fatalf("shared session: %d keys, version %d", len(snap.Set), snap.Version)
			}
		})
	}
}

func TestGapTriggersFullCopy(t *testing.T) {
	ms := cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	u := &browser{t: t}
	u.do(a, "/set?a=1&b=2")
	b.node.backups.removeFrom(u.id, "n1") // the buddy lost its copy
	u.do(a, "/set?c=3")
	sameCopy(t, a, b, u.id)
	if a.node.Stats().FullCopies != 1 || b.node.Stats().GapsReported != 1 {
		t.Fatalf("full copies %d, gaps %d", a.node.Stats().FullCopies, b.node.Stats().GapsReported)
	}
	// A delta the buddy already has is ignored.
	c, _ := a.mgr.Snapshot(u.id)
	if got, _ := b.node.backups.apply("n1", 0, wire.Record{Kind: wire.KindDelta, Change: c}); got != ignored {
		t.Fatalf("duplicate applied: %v", got)
	}
}

func TestAsyncQueueIsBounded(t *testing.T) {
	ms, fn := faultyCluster(t, 2, func(c *Config) {
		c.Mode, c.QueueSize, c.MaxBatchRecords = Async, 10, 4
		// Long enough for the 30 commits below on a busy machine: a batch
		// that times out takes its buddy down, and nothing queues then.
		c.ReplicationTimeout, c.DeadAfter, c.SuspectAfter = 3*time.Second, time.Minute, time.Minute
	})
	a := ms[0]
	fn.Set("n1", "n2", faultnet.Stall)
	defer fn.Heal()
	u := &browser{t: t}
	for i := range 30 {
		if rec := u.do(a, fmt.Sprintf("/set?k%d=v", i)); rec.Code != 200 {
			t.Fatalf("async commit failed: %d", rec.Code)
		}
	}
	st := a.node.Stats()
	if st.QueueDepth > 10 || st.QueueOverflows == 0 || st.Resyncs != 1 {
		t.Fatalf("depth %d overflows %d resyncs %d", st.QueueDepth, st.QueueOverflows, st.Resyncs)
	}
	// Once the link is back, the overflowed session reaches the buddy whole.
	fn.Heal()
	if err := a.node.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	sameCopy(t, a, ms[1], u.id)
}

func TestSyncTimeoutPolicies(t *testing.T) {
	for _, policy := range []ErrorPolicy{Degrade, Fail} {
		ms, fn := faultyCluster(t, 2, func(c *Config) {
			c.OnReplicationError = policy
			c.ReplicationTimeout, c.DeadAfter, c.SuspectAfter = 100*time.Millisecond, time.Minute, time.Minute
		})
		a := ms[0]
		fn.Set("n1", "n2", faultnet.Stall)
		u := &browser{t: t}
		rec := u.do(a, "/set?k=v")
		want := 200
		if policy == Fail {
			want = 503
		}
		if rec.Code != want {
			t.Fatalf("policy %d: code %d, want %d", policy, rec.Code, want)
		}
		if policy == Degrade && a.node.Stats().Degraded != 1 {
			t.Fatalf("degraded = %d", a.node.Stats().Degraded)
		}
		if a.mgr.Len() != 1 {
			t.Fatal("the change was not committed locally")
		}
		fn.Heal()
	}
}

func TestFlushHonoursContext(t *testing.T) {
	ms, fn := faultyCluster(t, 2, func(c *Config) {
		c.Mode, c.ReplicationTimeout, c.DeadAfter, c.SuspectAfter = Async, time.Minute, time.Minute, time.Minute
	})
	fn.Set("n1", "n2", faultnet.Stall)
	defer fn.Heal()
	a := ms[0]
	(&browser{t: t}).do(a, "/set?k=v")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := a.node.Flush(ctx); err == nil {
		t.Fatal("Flush returned with the buddy unreachable")
	}
}

// Nodes may send with different codecs (a LAN default next to a WAN
// preset): each decodes whatever the other sends.
func TestMixedCodecsInteroperate(t *testing.T) {
	ms := cluster(t, 2, func(c *Config) {
		if c.ID == "n2" {
			c.Compression.Codec = compress.NameZstdFastest
		}
	})
	a, b := ms[0], ms[1]
	big := strings.Repeat("compressible+", 200) // above compress's MinSize
	for _, pair := range [][2]*member{{a, b}, {b, a}} {
		owner, backup := pair[0], pair[1]
		u := &browser{t: t}
		u.do(owner, "/set?k="+big)
		u.do(owner, "/set?n=1")
		sameCopy(t, owner, backup, u.id)
	}
	if c := a.node.cfg.Compression.Codec; c != DefaultCodec {
		t.Fatalf("n1 sends with %q, want the default %q", c, DefaultCodec)
	}
	for _, m := range ms {
		if st := m.node.Stats(); st.BytesWire*4 > st.BytesRaw {
			t.Fatalf("%s: %d wire bytes for %d raw: not compressed", m.node.ID(), st.BytesWire, st.BytesRaw)
		}
	}
}

// A zero Config gets the LAN preset's values.
func TestZeroConfigIsLANPreset(t *testing.T) {
	base := Config{ID: "n1", ListenAddr: "127.0.0.1:0", ClusterKeys: [][]byte{testClusterKey}}
	zero, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	lan := DefaultLANConfig()
	lan.ID, lan.ListenAddr, lan.ClusterKeys = base.ID, base.ListenAddr, base.ClusterKeys
	if lan, err = lan.withDefaults(); err != nil {
		t.Fatal(err)
	}
	if zero.Compression.Codec != lan.Compression.Codec || zero.PingInterval != lan.PingInterval ||
		zero.DeadAfter != lan.DeadAfter || zero.ReplicationTimeout != lan.ReplicationTimeout {
		t.Fatalf("zero config %+v differs from the LAN preset %+v", zero, lan)
	}
	if wan := DefaultWANConfig(); wan.Compression.Codec != compress.NameZstdFastest {
		t.Fatalf("WAN preset codec %q", wan.Compression.Codec)
	}
}

// The buddy ends a stream that stayed idle; the next batch goes out on a
// new one without failing the commit that sent it.
func TestIdleStreamIsReopened(t *testing.T) {
	ms := cluster(t, 2, func(c *Config) {
		c.streamIdle = 100 * time.Millisecond
		c.OnReplicationError = Fail
	})
	a, b := ms[0], ms[1]
	u := &browser{t: t}
	u.do(a, "/set?k=1")
	sameCopy(t, a, b, u.id)
	time.Sleep(400 * time.Millisecond) // the buddy ends the idle stream
	if rec := u.do(a, "/set?k=2"); rec.Code != 200 {
		t.Fatalf("write after an idle stream: %d %s", rec.Code, rec.Body)
	}
	sameCopy(t, a, b, u.id)
	if st := a.node.Stats(); st.SendErrors != 0 || st.Degraded != 0 {
		t.Fatalf("send errors %d, degraded %d", st.SendErrors, st.Degraded)
	}
}
