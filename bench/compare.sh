#!/usr/bin/env bash
# compare.sh runs calm and the peer rate limiters through the benchmarks in
# ./compare, interleaved (every peer once per round, COUNT rounds), and
# prints the benchstat tables followed by one summary line per case and
# peer. Raw results stay in bench/out/ for later benchstat runs.
#
# Settings (environment):
#   COUNT       rounds of the speed benchmarks (default 10)
#   BENCHTIME   -benchtime of each speed benchmark (default 300ms)
#   HEAP_COUNT  rounds of the 1M-key heap benchmark (default 3)
#   PEERS       peers to run, first one is the base of every speed ratio
#   HEAP_PEERS  peers of the heap benchmark. The default is PEERS followed
#               by calm's memory store under each algorithm another peer
#               runs, because benchsummary compares each peer's heap per
#               key with calm's under the peer's algorithm.
set -euo pipefail

cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-300ms}
HEAP_COUNT=${HEAP_COUNT:-3}
PEERS=${PEERS:-calm calm-limiter xtime golimiter ulule throttled httprate}
HEAP_PEERS=${HEAP_PEERS:-$PEERS calm-token_bucket calm-fixed_window calm-sliding_window}

out=out
mkdir -p "$out"
speed=$out/compare.txt
heap=$out/heap.txt
: >"$speed"
: >"$heap"

go test -c -o "$out/compare.test" ./compare
go build -o "$out/benchsummary" ./cmd/benchsummary
go build -o "$out/benchstat" golang.org/x/perf/cmd/benchstat

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(go version)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine widens the ± columns)"
echo "running $COUNT rounds of $BENCHTIME per case and $HEAP_COUNT heap rounds; raw output in bench/$out"

for round in $(seq "$COUNT"); do
	for peer in $PEERS; do
		"$out/compare.test" -test.run '^$' -test.benchtime "$BENCHTIME" \
			-test.bench "^BenchmarkCompare\$/^case=/^peer=$peer\$" >>"$speed"
	done
	echo "speed round $round of $COUNT done" >&2
done

for round in $(seq "$HEAP_COUNT"); do
	for peer in $HEAP_PEERS; do
		"$out/compare.test" -test.run '^$' -test.benchtime 1x \
			-test.bench "^BenchmarkHeap\$/^keys=/^rule=/^peer=$peer\$" >>"$heap"
	done
	echo "heap round $round of $HEAP_COUNT done" >&2
done

echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$out/benchstat" -col /peer -filter ".unit:(ns/op OR allocs/op)" "$speed"
echo
"$out/benchstat" -col /peer -filter ".unit:(B/key OR new-key-denials OR lost-keys/1000)" "$heap"
echo
base=${PEERS%% *}
"$out/benchsummary" -base "$base" "$speed" "$heap"
"$out/benchsummary" -base "$base" -markdown "$speed" "$heap" >"$out/table.md"
echo "Markdown table for docs/BENCHMARKS.md: bench/$out/table.md"
