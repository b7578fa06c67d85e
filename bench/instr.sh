#!/usr/bin/env bash
# bench/instr.sh counts the instructions one benchmark iteration costs,
# with valgrind's callgrind: a figure that does not move with the load of
# a shared machine. Each benchmark runs twice (-benchtime N1x and N2x); the
# difference of the totals over N2-N1 is the cost of one iteration, start-up
# and setup cancelled out.
#
#   bench/instr.sh TESTBINARY 'BenchmarkGin/read$' 'BenchmarkGin/bare$' ...
#   N1=500 N2=1500 bench/instr.sh ...
# Build TESTBINARY with `CGO_ENABLED=0 go test -c -o FILE ./PKG` (callgrind
# trips over the signals of a cgo build).
set -euo pipefail
bin=$1
shift
N1=${N1:-500}
N2=${N2:-1500}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1
count() { # benchmark N: total instructions
	valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" -test.run '^$' -test.bench "$1" \
		-test.benchtime "${2}x" -test.count 1 >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
	grep -o 'refs: *[0-9,]*' "$tmp/err" | tr -dc '0-9'
}
for b in "$@"; do
	a=$(count "$b" "$N1")
	z=$(count "$b" "$N2")
	echo "$b $(( (z - a) / (N2 - N1) )) instructions/op"
done
