#!/usr/bin/env bash
# bench/ab.sh compares two commits of Tandem under the same load in one
# run: it builds bench/load from BASE (a commit, default main) and from the
# working tree, then for ROUNDS rounds runs, for each client count in
# CLIENTS and each build in turn, 3 nodes write-heavy with replication off,
# async and sync. Rounds interleave the builds, so both see the same
# machine; the summary gives each build's async and sync rate as a share of
# its own replication-off rate in the same round (median of the rounds),
# and replication's CPU per write (owner plus buddy process CPU, sync or
# async minus off, in µs per request).
#
#   bench/ab.sh                          # main against the working tree
#   BASE=889dc17 ROUNDS=3 CLIENTS="32 64" DUR=4s bench/ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
BASE=${BASE:-main}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-32 64}
DUR=${DUR:-4s}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
base_dir=$OUT/base-src
if [ ! -d "$base_dir" ]; then
	git worktree add --detach "$base_dir" "$BASE" >/dev/null
fi
trap 'git worktree remove --force "$base_dir" >/dev/null 2>&1 || true' EXIT
(cd "$base_dir" && go build -o "$OUT/load-old" ./bench/load)
go build -o "$OUT/load-new" ./bench/load
echo "old: $(git -C "$base_dir" log -1 --format='%h %cs') new: $(git log -1 --format='%h')$(git diff --quiet || echo +dirty)"
for round in $(seq "$ROUNDS"); do
	for c in $CLIENTS; do
		for build in old new; do
			for mode in off async sync; do
				f="$OUT/r$round-c$c-$build-$mode.json"
				"$OUT/load-$build" -q -nodes 3 -clients "$c" -mode "$mode" -write-ratio 1 \
					-duration "$DUR" -warmup 1s -session-size 1024 -json "$f"
			done
		done
	done
	echo "round $round done"
done
python3 - "$OUT" "$ROUNDS" "$CLIENTS" <<'PY'
import json, sys, statistics as st
out, rounds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(r, c, b, m):
    return json.load(open(f"{out}/r{r}-c{c}-{b}-{m}.json"))
print("| clients | build | off req/s | async vs off | sync vs off | repl CPU µs/write async | sync | sync records/batch | sync p99 ms | sync wire B/write |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for c in clients:
    for b in ("old", "new"):
        offs, ar, sr, ac, sc, rb, p99, wb = [], [], [], [], [], [], [], []
        for r in range(1, rounds + 1):
            o, a, s = (load(r, c, b, m) for m in ("off", "async", "sync"))
            offs.append(o["rps"]); ar.append(a["rps"] / o["rps"]); sr.append(s["rps"] / o["rps"])
            cpu = lambda x: x["server_cpu_s_per_1k"] * 1000  # µs per request
            ac.append(cpu(a) - cpu(o)); sc.append(cpu(s) - cpu(o))
            rep = s.get("replication") or {}
            rb.append(rep.get("records_per_batch", 0)); wb.append(rep.get("wire_bytes_per_write", 0)); p99.append(s["p99_ms"])
        rng = lambda v, f: f"{f(st.median(v))} ({f(min(v))}–{f(max(v))})"
        pct = lambda x: f"{100*x:.0f}%"
        num = lambda x: f"{x:.1f}"
        print(f"| {c} | {b} | {st.median(offs):,.0f} | {rng(ar, pct)} | {rng(sr, pct)} | {rng(ac, num)} | {rng(sc, num)} | {st.median(rb):.1f} | {st.median(p99):.2f} | {st.median(wb):.0f} |")
PY
echo "raw JSON in $OUT"
