package buddy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
)

// The attacks of issue 12, each against real node processes: the attack
// is refused, a counter moves, and no acknowledged write is lost.

// A host on the path keeps n1's leave from a rolling restart; later n2
// restarts (empty replay windows) and, while the attacker drops n1 -> n2,
// gets the old leave replayed. At 4df42d2, n2 took n1 for gone and served
// its backups as their owner beside the live n1: writes rolled back, a
// logged-out session back with its data, two owners. Now every envelope is
// sealed for its recipient's boot: the replay does not authenticate.
func TestAttackReplayedLeaveAfterRestart(t *testing.T) {
	c := newPCluster(t, 3)
	tp := newTap(t, c.repl["n2"], pathLeave)
	c.peers["n1"] = c.peerList(map[string]string{"n2": tp.addr}) // n1 reaches n2 through the tap
	c.startAll()

	// A rolling restart of n1: its leave to n2 goes through the tap.
	early := &visitor{c: c}
	early.must("n1", "/set?a=1")
	c.procs["n1"].stop(t)
	leaves := tp.recorded(pathLeave)
	if len(leaves) == 0 {
		t.Fatal("the tap saw no leave from n1")
	}
	// The leave is genuine: replayed to the n2 that took it, it is a
	// replay.
	for _, l := range leaves {
		if code, body := rawPost(t, c.repl["n2"], pathLeave, l); code != http.StatusConflict {
			t.Fatalf("leave replayed before n2 restarts answered %d %q, want 409", code, body)
		}
	}
	c.start("n1")
	c.waitFormed(c.ids...)

	// n1 owns two sessions with copies on n2: one written three times, one
	// logged out.
	user := &visitor{c: c}
	user.must("n1", "/set?k1=1")
	user.must("n1", "/set?k2=2")
	_, id := user.must("n1", "/set?k3=3")
	gone := &visitor{c: c}
	gone.must("n1", "/set?x=secret")
	goneCookie := gone.cookie
	gone.must("n1", "/logout")
	if st := c.mustStats("n1"); st.Node.Buddy != "n2" {
		t.Fatalf("n1's buddy is %q, want n2", st.Node.Buddy)
	}

	// n2 restarts while the attacker drops n1 -> n2, and gets the leave.
	tp.block()
	c.procs["n2"].kill()
	c.start("n2")
	before := c.mustStats("n2").Node.Rejected[RejectAuth]
	for _, l := range leaves {
		if code, body := rawPost(t, c.repl["n2"], pathLeave, l); code != http.StatusUnauthorized {
			t.Fatalf("replayed leave answered %d %q, want 401", code, body)
		}
	}
	st := c.mustStats("n2")
	// At least the replays: n3's messages sealed for n2's last boot, sent
	// before n3 learns the new one, are refused the same way.
	if got := st.Node.Rejected[RejectAuth] - before; got < uint64(len(leaves)) {
		t.Fatalf("Rejected[auth] moved by %d, want at least %d", got, len(leaves))
	}
	for _, p := range st.Node.Peers {
		if p.ID == "n1" && p.State == Left {
			t.Fatal("n2 took the live n1 for gone")
		}
	}
	tp.unblock()
	c.waitFormed(c.ids...)

	// Nothing acknowledged is lost, the logged-out session stays out, and
	// the session has one owner: what n2 writes, n1 reads.
	got, sid := user.read("n2")
	if sid != id || got["k1"] != "1" || got["k2"] != "2" || got["k3"] != "3" {
		t.Fatalf("through n2: session %s %v, want %s with k1..k3", sid, got, id)
	}
	user.must("n2", "/set?k4=4")
	if got, _ := user.read("n1"); got["k4"] != "4" || got["k3"] != "3" {
		t.Fatalf("through n1 after a write on n2: %v", got)
	}
	gone.cookie = goneCookie
	if got, _ := gone.read("n2"); len(got) != 0 {
		t.Fatalf("the logged-out session is served again: %v", got)
	}
	if got, _ := early.read("n2"); got["a"] != "1" {
		t.Fatalf("the session handed over at the rolling restart: %v", got)
	}
}

// Frames of the batch stream are read before their envelope can be
// checked. At 4df42d2, 16 streams on one connection, each declaring a
// 16 MiB frame and holding its last byte back, took a node from 51 to 841
// MiB RSS in 2.6 s, with no counter and no log line. Now the bytes held for
// unauthenticated frames are bounded node-wide (MaxUnauthenticated, 16 MiB
// by default): the frames beyond are refused (503 busy), the buddies'
// streams keep running, and the memory comes back when the attacker goes.
func TestAttackUnauthenticatedMemory(t *testing.T) {
	c := newPCluster(t, 3)
	c.startAll()
	user := &visitor{c: c}
	user.must("n1", "/set?k=0")
	base := rss(t, c.procs["n2"])
	before := c.mustStats("n2")

	const streams = 64
	const maxBodySize, maxUnauthenticated = 4 << 20, 16 << 20 // the defaults
	frame := maxBodySize - 1
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range streams {
		// A connection each: the replication port serves one batch stream
		// a connection, and refuses a second one at once.
		attacker := h2c()
		defer attacker.CloseIdleConnections()
		pr, pw := io.Pipe()
		wg.Add(1)
		go func() { // the frame, but for its last byte
			defer wg.Done()
			if _, err := pw.Write(binary.AppendUvarint(nil, uint64(frame))); err != nil {
				return
			}
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < frame-1; sent += len(chunk) {
				if _, err := pw.Write(chunk[:min(len(chunk), frame-1-sent)]); err != nil {
					return
				}
			}
			<-ctx.Done()
			pw.Close()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.repl["n2"]+pathStream, pr)
			resp, err := attacker.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if st, _ := readReplyFrames(resp.Body); len(st) > 0 && st[0] == http.StatusServiceUnavailable {
				refused.Add(1)
			}
		}()
	}
	// Meanwhile users write on n1, whose buddy is n2, and the peak of n2's
	// memory is sampled.
	var peak int64
	for i := range 100 {
		if code, body, _ := user.do("n1", fmt.Sprintf("/set?k=%d", i+1)); code != http.StatusOK {
			t.Fatalf("write %d during the attack: %d %s", i+1, code, body)
		}
		peak = max(peak, rss(t, c.procs["n2"]))
		time.Sleep(10 * time.Millisecond)
	}
	mid := c.mustStats("n2")
	cancel()
	wg.Wait()

	busy := mid.Node.Rejected[RejectBusy] - before.Node.Rejected[RejectBusy]
	t.Logf("n2: RSS %d MiB before, peak %d MiB; %d of %d frames refused busy (%d seen by the attacker); %d bytes held",
		base>>20, peak>>20, busy, streams, refused.Load(), mid.Node.Unauthenticated)
	if busy == 0 {
		t.Fatal("no frame refused: Rejected[busy] did not move")
	}
	if limit := int64(4 * maxUnauthenticated * memoryFactor); peak-base > limit {
		t.Fatalf("n2 grew by %d MiB during the attack, more than %d MiB", (peak-base)>>20, limit>>20)
	}
	if st := c.mustStats("n1"); st.Node.Degraded != 0 {
		t.Fatalf("n1 degraded %d commits during the attack: replication to n2 was starved", st.Node.Degraded)
	}
	got, _ := user.read("n2")
	if got["k"] != "100" {
		t.Fatalf("n2 serves k=%q, want 100", got["k"])
	}
	c.waitFor("n2 to give the attacker's bytes back", func() bool {
		st, ok := c.stats("n2", true)
		return ok && st.Node.Unauthenticated == 0 && st.HeapAlloc < uint64(base)
	})
}

// At 4df42d2, /fetch, /ping, /transfer and /leave requests whose body never
// ended stayed open past 130 s, a goroutine each. Now every body, and a
// batch stream's first frame and the rest of any frame, must come within
// ReplicationTimeout.
func TestAttackStreamsThatNeverEnd(t *testing.T) {
	c := newPCluster(t, 2)
	for _, id := range c.ids {
		c.env[id] = []string{"TANDEM_TEST_REPL_TIMEOUT=1s"}
	}
	c.startAll()
	base := c.mustStats("n2")
	type attack struct {
		path string
		sent []byte // and then nothing more
	}
	attacks := []attack{
		{pathFetch, []byte{wire.EnvelopeVersion, 3, 0, 0}},
		{pathPing, []byte{wire.EnvelopeVersion}},
		{pathTransfer, nil},
		{pathLeave, []byte{wire.EnvelopeVersion, 9}},
		{pathStream, nil},                                                     // no frame at all
		{pathStream, append(binary.AppendUvarint(nil, 100), "only ten b"...)}, // a frame begun
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ended := make(chan string, len(attacks))
	var attackers []*http.Client
	var writers sync.WaitGroup
	defer writers.Wait()
	defer cancel()
	for _, a := range attacks {
		// A connection each: a batch stream has its connection to itself.
		attacker := h2c()
		attackers = append(attackers, attacker)
		pr, pw := io.Pipe()
		writers.Add(1)
		go func() {
			defer writers.Done()
			_, _ = pw.Write(a.sent)
			<-ctx.Done() // never finishes the body
			pw.Close()
		}()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.repl["n2"]+a.path, pr)
			if resp, err := attacker.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if ctx.Err() != nil {
				ended <- ""
				return
			}
			ended <- a.path
		}()
	}
	for range attacks {
		if p := <-ended; p == "" {
			t.Fatal("a request with an unfinished body was still open after 30 s")
		}
	}
	for _, a := range attackers {
		a.CloseIdleConnections()
	}
	c.waitFor("n2's goroutines to come back", func() bool {
		st, ok := c.stats("n2", false)
		return ok && st.Goroutines <= base.Goroutines+2
	})
	st := c.mustStats("n2")
	if got := st.Node.Rejected[RejectSlow] - base.Node.Rejected[RejectSlow]; got < 4 {
		t.Fatalf("Rejected[slow] moved by %d, want at least the 4 requests", got)
	}
	// The node still works.
	user := &visitor{c: c}
	user.must("n1", "/set?k=1")
	if got, _ := user.read("n2"); got["k"] != "1" {
		t.Fatalf("after the attack: %v", got)
	}
}

// At 4df42d2 every forged message wrote one WARN line: 6,000 forgeries
// gave 6,014 lines. Now rejections are logged at most once a second per
// reason, with the count held back; the counters count every one.
func TestAttackLogFlood(t *testing.T) {
	c := newPCluster(t, 2)
	c.startAll()
	boot := c.forger("n1").bootOf("n2")
	before := c.mustStats("n2")
	linesBefore := strings.Count(c.procs["n2"].log.String(), "\n")
	wrongKey, _ := wire.NewSealer("n1", [][]byte{bytes.Repeat([]byte("x"), 32)})
	const forgeries = 6000
	attacker := h2c()
	defer attacker.CloseIdleConnections()
	start := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= forgeries {
				env := wrongKey.Seal(nil, "n2", wire.MsgFetch, uint64(time.Now().UnixNano()), boot, []byte("forged"))
				resp, err := attacker.Post("http://"+c.repl["n2"]+pathFetch, contentType, bytes.NewReader(env))
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	// One more, a second later: its line tells how many were held back.
	time.Sleep(1100 * time.Millisecond)
	env := wrongKey.Seal(nil, "n2", wire.MsgFetch, uint64(time.Now().UnixNano()), boot, []byte("forged"))
	if code, _ := rawPost(t, c.repl["n2"], pathFetch, env); code != http.StatusUnauthorized {
		t.Fatalf("forgery answered %d", code)
	}
	elapsed := time.Since(start)
	st := c.mustStats("n2")
	lines := strings.Count(c.procs["n2"].log.String(), "\n") - linesBefore
	t.Logf("%d forgeries in %v: %d log lines", forgeries, elapsed.Round(time.Millisecond), lines)
	if got := st.Node.Rejected[RejectAuth] - before.Node.Rejected[RejectAuth]; got != forgeries+1 {
		t.Fatalf("Rejected[auth] moved by %d, want %d", got, forgeries+1)
	}
	if limit := int(elapsed/time.Second) + 2; lines > limit {
		t.Fatalf("%d log lines for %d forgeries in %v: more than one a second", lines, forgeries, elapsed)
	}
	if !strings.Contains(c.procs["n2"].log.String(), "suppressed=") {
		t.Fatal("the log does not say how many lines it held back")
	}
}

// At 4df42d2, cookie-less POSTs that store something (a cart, a CSRF token)
// at 14,400 req/s filled a node with MaxSessions 20,000 in 1.5 s, and then
// every new login answered 503. Now the oldest first-visit sessions make
// room: returning users and new logins keep working, and Stats().Evicted
// counts what went.
func TestAttackAnonymousFlood(t *testing.T) {
	const maxSessions, flood = 2000, 10000
	c := newPCluster(t, 2)
	c.env["n1"] = []string{fmt.Sprintf("TANDEM_TEST_MAX_SESSIONS=%d", maxSessions)}
	c.startAll()
	users := make([]*visitor, 50)
	for i := range users {
		users[i] = &visitor{c: c}
		users[i].must("n1", fmt.Sprintf("/set?user=%d", i))
		users[i].read("n1") // came back: a returning user
	}
	var wg sync.WaitGroup
	var refused, next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= flood {
				anon := &visitor{c: c}
				if code, _, _ := anon.do("n1", "/set?cart=1"); code != http.StatusOK {
					refused.Add(1)
				}
			}
		}()
	}
	login := &visitor{c: c}
	login.must("n1", "/set?user=new")
	login.read("n1")
	wg.Wait()
	if refused.Load() > 0 {
		t.Fatalf("%d of %d cookie-less writes refused", refused.Load(), flood)
	}
	for i, u := range users {
		if got, _ := u.read("n1"); got["user"] != fmt.Sprint(i) {
			t.Fatalf("returning user %d after the flood: %v", i, got)
		}
	}
	if got, _ := login.read("n1"); got["user"] != "new" {
		t.Fatalf("the login during the flood: %v", got)
	}
	late := &visitor{c: c}
	late.must("n1", "/set?user=late")
	if got, _ := late.read("n1"); got["user"] != "late" {
		t.Fatalf("a login after the flood: %v", got)
	}
	st := c.mustStats("n1")
	t.Logf("n1: %d sessions, %d evicted; n2 holds %d backups", st.Sessions, st.Core.Evicted, c.mustStats("n2").Node.Backups)
	if st.Sessions > maxSessions || st.Core.Evicted < flood-maxSessions {
		t.Fatalf("n1 holds %d sessions (max %d), evicted %d", st.Sessions, maxSessions, st.Core.Evicted)
	}
	c.waitFor("n2's copies of the evicted sessions to go", func() bool {
		st, ok := c.stats("n2", false)
		return ok && st.Node.Backups <= maxSessions
	})
}

// What a holder of the cluster key can do is what a member can: write any
// session. But each of these cost more than that at 4df42d2, and each is
// bounded now. The forger speaks as n1, whose buddy is n2.
func TestAttackClusterKeyHolder(t *testing.T) {
	const maxBackups = 3000
	c := newPCluster(t, 3)
	c.env["n2"] = []string{fmt.Sprintf("TANDEM_TEST_MAX_BACKUPS=%d", maxBackups)}
	c.startAll()
	f := c.forger("n1")
	alice := &visitor{c: c} // owned by n1, backed up on n2
	_, aliceID := alice.must("n1", "/set?k=1")
	bob := &visitor{c: c} // owned by n2
	_, bobID := bob.must("n2", "/set?who=bob")
	backup := func(id string) childBackup {
		t.Helper()
		resp, err := c.hc.Get("http://" + c.http["n2"] + "/backup?id=" + id)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("n2 holds no copy of %s: %v", id, err)
		}
		defer resp.Body.Close()
		var b childBackup
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	rejected := func(reason string) uint64 { return c.mustStats("n2").Node.Rejected[reason] }
	// aliceWrites checks that n1 still replicates alice's writes to n2.
	aliceWrites := func(v int) {
		t.Helper()
		before := backup(aliceID).Version
		alice.must("n1", fmt.Sprintf("/set?k=%d", v))
		if got := backup(aliceID).Version; got != before+1 {
			t.Fatalf("n2's copy of alice at version %d after a write, want %d", got, before+1)
		}
	}
	aliceCopy := backup(aliceID)
	full := func(id string, version, epoch uint64, at time.Time) []wire.Record {
		return []wire.Record{{Kind: wire.KindFull, Change: &core.Change{ID: id, Version: version, Epoch: epoch, Full: true,
			Created: at, Accessed: at, Set: []core.Attr{{Key: "k", Value: []byte(`"forged"`)}}}}}
	}

	t.Run("sequence number 2^64-1", func(t *testing.T) {
		// At 4df42d2 it held n2's window above every real number of n1 until
		// n2 restarted, and replication silently degraded.
		before := rejected(RejectReplay)
		if code, _ := f.batch("n2", math.MaxUint64, nil); code != http.StatusConflict {
			t.Fatalf("answered %d, want 409", code)
		}
		if rejected(RejectReplay) != before+1 {
			t.Fatal("Rejected[replay] did not move")
		}
		// One just within the clocks' tolerated skew is taken, and refuses
		// nothing else: it holds one place of the window.
		if code, _ := f.batch("n2", uint64(time.Now().Add(50*time.Second).UnixNano()), nil); code != http.StatusOK {
			t.Fatalf("answered %d, want 200", code)
		}
		aliceWrites(2)
	})

	t.Run("version 2^64-1", func(t *testing.T) {
		// At 4df42d2 a copy at 2^64-1 ignored the owner's later writes.
		for _, v := range []uint64{math.MaxUint64, wire.MaxVersion + 1} {
			if code, _ := f.batch("n2", f.seq(), full(aliceID, v, aliceCopy.Epoch, time.Now())); code == http.StatusOK {
				t.Fatalf("a copy at version %d accepted", v)
			}
		}
		aliceWrites(3)
	})

	t.Run("timestamps in 2262", func(t *testing.T) {
		// At 4df42d2 such copies never expired.
		future := time.Unix(0, math.MaxInt64)
		if code, _ := f.batch("n2", f.seq(), full("FUTUREFUTUREFUTUREFUTURE", 1, 1, future)); code != http.StatusOK {
			t.Fatalf("answered %d", code)
		}
		if got := backup("FUTUREFUTUREFUTUREFUTURE").Accessed; got.After(time.Now().Add(time.Minute)) {
			t.Fatalf("last access kept at %v", got)
		}
	})

	t.Run("s2 bombs", func(t *testing.T) {
		// At 4df42d2, 16 corrupt 37-byte s2 frames declaring 64 MiB each
		// took the receiver to 594 MiB: the decoder reserved the declared
		// size first.
		base := rss(t, c.procs["n2"])
		before := c.mustStats("n2").Node.Rejected
		var wg sync.WaitGroup
		for i := range 32 {
			declared := 64 << 20
			if i%2 == 1 {
				declared = 8<<20 - 64 // just within MaxDecodedSize
			}
			bomb := binary.AppendUvarint([]byte{compress.IDS2}, uint64(declared))
			bomb = append(bomb, bytes.Repeat([]byte{0xfe, 0xff, 0xff, 0xff}, 8)...)
			seq := f.seq() + uint64(i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, _ := f.rawBatch("n2", seq, bomb); code == http.StatusOK {
					t.Errorf("bomb of %d bytes accepted", declared)
				}
			}()
		}
		wg.Wait()
		after := c.mustStats("n2").Node.Rejected
		moved := func(r string) uint64 { return after[r] - before[r] }
		grown := rss(t, c.procs["n2"]) - base
		t.Logf("RSS grew by %d MiB; refused: %d bomb, %d malformed, %d busy (%v -> %v)", grown>>20, moved(RejectBomb), moved(RejectMalformed), moved(RejectBusy), before, after)
		if moved(RejectBomb) == 0 || moved(RejectBomb)+moved(RejectMalformed)+moved(RejectBusy) != 32 {
			t.Fatal("not every bomb was counted")
		}
		// What is decoded at once is bounded (4 x MaxDecodedSize, 32 MiB),
		// however many bombs come: at 4df42d2 these 32 would have taken 1.1
		// GiB.
		if grown > 128<<20*memoryFactor {
			t.Fatalf("n2 grew by %d MiB", grown>>20)
		}
		aliceWrites(4)
	})

	t.Run("fetch without the cookie", func(t *testing.T) {
		// At 4df42d2 a fetch took bob's session and logged him out.
		before := rejected(RejectProof)
		for _, proof := range []string{"", alice.cookie} {
			payload := wire.AppendFetch(nil, wire.Fetch{Incarnation: 1, Proof: proof, ID: bobID})
			if code, _ := f.call("n2", pathFetch, wire.MsgFetch, f.seq(), payload); code != http.StatusForbidden {
				t.Fatalf("fetch of bob with proof %.10q answered %d, want 403", proof, code)
			}
		}
		if rejected(RejectProof) != before+2 {
			t.Fatal("Rejected[proof] did not move")
		}
		if got, sid := bob.read("n2"); sid != bobID || got["who"] != "bob" {
			t.Fatalf("bob after the fetches: session %s %v", sid, got)
		}
	})

	t.Run("copy of a session n2 owns", func(t *testing.T) {
		code, rep := f.batch("n2", f.seq(), full(bobID, 100, 1, time.Now()))
		if code != http.StatusOK || len(rep.Fenced) != 1 {
			t.Fatalf("answered %d %+v, want the record fenced", code, rep)
		}
	})

	t.Run("many backups", func(t *testing.T) {
		// At 4df42d2, 200 KB on the wire made 32,770 backups.
		var refused int
		for b := range 2 {
			var recs []wire.Record
			for i := range 4000 {
				recs = append(recs, full(fmt.Sprintf("FLOOD%02d%017d", b, i), 1, 1, time.Now())...)
			}
			code, rep := f.batch("n2", f.seq(), recs)
			if code != http.StatusOK {
				t.Fatalf("answered %d", code)
			}
			refused += len(rep.Refused)
		}
		st := c.mustStats("n2").Node
		t.Logf("n2 holds %d backups; %d copies refused", st.Backups, st.BackupsRefused)
		if st.Backups > maxBackups || refused == 0 || st.BackupsRefused != uint64(refused) {
			t.Fatalf("n2 holds %d backups (max %d), refused %d (counted %d)", st.Backups, maxBackups, refused, st.BackupsRefused)
		}
		aliceWrites(5) // a copy n2 holds still takes writes
	})

	t.Run("leave of an old incarnation", func(t *testing.T) {
		// A leave names the incarnation it ends: one of n1's earlier runs
		// does not take the running n1 out of the ring.
		inc := c.forger("n2").pong("n1").Incarnation
		before := rejected(RejectStale)
		if code, _ := f.call("n2", pathLeave, wire.MsgLeave, f.seq(), wire.AppendLeave(nil, wire.Leave{Incarnation: inc - 1})); code != http.StatusConflict {
			t.Fatalf("a leave naming an old incarnation answered %d, want 409", code)
		}
		if rejected(RejectStale) != before+1 {
			t.Fatal("Rejected[stale] did not move")
		}
		aliceWrites(6) // n2 still takes n1's writes: n1 did not leave
	})

	t.Run("promote over an owned session", func(t *testing.T) {
		inc := c.forger("n2").pong("n1").Incarnation
		if code, _ := f.call("n2", pathTransfer, wire.MsgTransfer, f.seq(), wire.AppendTransfer(nil, wire.Transfer{Op: wire.TransferPromote, Incarnation: inc - 1})); code != http.StatusConflict {
			t.Fatalf("a transfer naming an old incarnation answered %d, want 409", code)
		}
		// At 4df42d2 a promote overwrote a session the receiver owned.
		if code, _ := f.call("n2", pathTransfer, wire.MsgTransfer, f.seq(), wire.AppendTransfer(nil, wire.Transfer{Op: wire.TransferPromote, Incarnation: inc})); code != http.StatusOK {
			t.Fatalf("promote answered %d", code)
		}
		if got, sid := bob.read("n2"); sid != bobID || got["who"] != "bob" {
			t.Fatalf("bob after the promote: session %s %v", sid, got)
		}
		// n2 now owns alice (n1 told it so, as far as it can tell); n1 is
		// fenced, and alice keeps every write wherever she goes.
		if got, sid := alice.read("n1"); sid != aliceID || got["k"] != "6" {
			t.Fatalf("alice through n1 after the promote: session %s %v", sid, got)
		}
		if got, _ := alice.read("n2"); got["k"] != "6" {
			t.Fatalf("alice through n2 after the promote: %v", got)
		}
		c.waitFormed(c.ids...) // n1 is alive again in n2's view: it keeps pinging
	})
}
