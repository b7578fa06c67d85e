#!/usr/bin/env bash
# bench/run.sh runs Tandem's standard load comparison with bench/load and
# writes bench/results/YYYY-MM-DD.md and the charts docs/bench-*.svg
# (through bench/report). Every run is bounded in time and requests; the
# whole script takes about 6 to 7 minutes on a 2-core machine.
#
#   bench/run.sh                 # the standard comparison
#   DUR=4s ROUNDS=1 bench/run.sh # a quicker, noisier pass
#
# The comparison: 3 nodes, 64 clients, sessions of 1 KiB (a size every peer
# can hold, the cookie store included):
#   - write-heavy (every request changes one attribute): Tandem sync, async
#     and without replication, gin-contrib/sessions + Redis, interleaved for
#     ROUNDS rounds; then the other peers once;
#   - read-only: Tandem sync and the no-session ceiling for ROUNDS rounds,
#     then the peers once;
#   - failover: SIGKILL of one Tandem node (sync, then async), and of the
#     Redis shared by two gin-contrib nodes (restarted empty after 2 s);
#   - wire bytes per write vs session size (1, 4, 16, 64 KiB; 1 and 64
#     clients).
# Needs redis-server (apt-get install -y redis-server); the driver starts
# and stops its own on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

DUR=${DUR:-6s}
ROUNDS=${ROUNDS:-3}
OUT=bench/results/tmp
rm -rf "$OUT"
mkdir -p "$OUT"
go build -o "$OUT/load" ./bench/load
(cd bench/peers && go build -o /dev/null ./cmd/peerapp) # warm the build cache

n=0
# run LABEL ARGS...: one bench/load run, its JSON in $OUT.
run() {
	local label=$1
	shift
	n=$((n + 1))
	local file
	file=$(printf '%s/%02d-%s.json' "$OUT" "$n" "$label")
	echo "== [$n] $label: load $*"
	"$OUT/load" -q -label "$label" -json "$file" "$@"
	python3 - "$file" <<'PY' 2>/dev/null || true
import json, sys
r = json.load(open(sys.argv[1]))
line = f"   {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, server CPU {r['server_cpu_s_per_1k']:.4f} s/1k, driver {r['driver_cpu_s_per_1k']:.4f} s/1k"
if r.get('replication'): line += f", {r['replication']['wire_bytes_per_write']:.0f} wire B/write"
v = r['load'].get('verify')
if v: line += f"; lost {v['lost_writes']} of {v['acked_writes']} acknowledged writes, {v['sessions_lost']} sessions"
print(line)
PY
}

std=(-nodes 3 -clients 64 -duration "$DUR" -warmup 1s -session-size 1024)
for round in $(seq "$ROUNDS"); do
	echo "== round $round of $ROUNDS"
	run tandem-sync-write -target tandem -mode sync -write-ratio 1 "${std[@]}"
	run gincontrib-redis-write -target gincontrib-redis -write-ratio 1 "${std[@]}"
	run tandem-async-write -target tandem -mode async -write-ratio 1 "${std[@]}"
	run tandem-off-write -target tandem -mode off -write-ratio 1 "${std[@]}"
	run tandem-sync-read -target tandem -mode sync -write-ratio 0 "${std[@]}"
	run nosession-read -target nosession -write-ratio 0 "${std[@]}"
done
for t in nosession gincontrib-cookie scs-mem scs-redis; do
	run "$t-write" -target "$t" -write-ratio 1 "${std[@]}"
done
for t in gincontrib-redis gincontrib-cookie scs-mem scs-redis; do
	run "$t-read" -target "$t" -write-ratio 0 "${std[@]}"
done

fo=(-clients 64 -duration 10s -warmup 1s -session-size 1024 -write-ratio 1 -scenario failover -kill-after 3s)
run failover-tandem-sync -target tandem -nodes 3 -mode sync "${fo[@]}"
run failover-tandem-async -target tandem -nodes 3 -mode async "${fo[@]}"
run failover-gincontrib-redis-2node -target gincontrib-redis-2node -redis-restart 2s "${fo[@]}"

for size in 1024 4096 16384 65536; do
	for c in 1 64; do
		run "wire-$size-c$c" -target tandem -nodes 3 -mode sync -clients "$c" -session-size "$size" \
			-write-ratio 1 -duration 3s -warmup 500ms
	done
done

go run ./bench/report -in "$OUT" -md "bench/results/$(date -u +%F).md" -svg docs -elapsed "${SECONDS} s"
echo "== done in ${SECONDS} s: bench/results/$(date -u +%F).md, docs/bench-throughput.svg, docs/bench-wire.svg, docs/bench-failover.svg"
