# calm's build and test entry points. `make test` is what CI runs.
GO ?= go
export GOFLAGS ?= -mod=mod

.PHONY: test deps test-unit test-race fuzz-short build vet

build:
	$(GO) build -o bin/calm ./cmd/calm

# deps installs the programs the tests start (redis-server, redis-cli) when
# they are missing. It needs root and Debian's apt-get.
deps:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
		echo "installing redis-server and redis-tools with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; }
	@# The Debian package starts a system redis on port 6379; the tests start their own.

vet:
	$(GO) vet ./...

test: deps vet test-bench
	CALM_REQUIRE_REDIS=1 $(GO) test -race -count=1 -timeout 12m ./...

.PHONY: bench-compare test-bench

# test-bench checks that every benchmark adapter in the bench module still
# builds and allows/denies as its library does. It runs no benchmark.
test-bench:
	cd bench && $(GO) test -count=1 ./...

# bench-compare benchmarks calm against other Go rate limiters (about 2.5
# minutes on 2 cores). COUNT, BENCHTIME, HEAP_COUNT and PEERS tune it; see
# bench/compare.sh.
bench-compare:
	bench/compare.sh

.PHONY: bench-memory

# bench-memory prints the Go heap per key that the memory store takes for
# 1,000,000 distinct keys, one line per algorithm (about 5 s on 2 cores):
#   memory <algorithm> keys=1000000 bytes_per_key=<n>
bench-memory:
	@out=$$($(GO) test -count=1 -run '^TestMemoryPerKey$$' -v ./store/memory -memory.report) || \
		{ echo "$$out"; exit 1; }; echo "$$out" | grep '^memory '

.PHONY: bench-circuit

# bench-circuit starts 5 calm serve processes on one redis-server, trips the
# shared circuit breaker with load ROUNDS times (default 10) and opens and
# closes it with redis-cli HSET, and prints how long each server took to
# follow, from the servers' log timestamps (about 30 s on 2 cores). The
# last line is:
#   circuit propagation_p50_ms=<n> propagation_p99_ms=<n> instances=5
ROUNDS ?= 10
bench-circuit: deps
	@out=$$(CALM_REQUIRE_REDIS=1 $(GO) test -count=1 -run '^TestCircuitAcrossProcesses$$' -v \
		./cmd/calm -args -circuit-rounds=$(ROUNDS)) || { echo "$$out"; exit 1; }; \
		echo "$$out" | grep -E 'propagation:|^circuit '

.PHONY: bench-redis

# bench-redis starts its own redis-server and measures calm's Redis store,
# go-redis/redis_rate and ulule/limiter's Redis store with the same 64
# goroutines and 10,000 keys for 4 s each, then redis-benchmark's EVALSHA
# throughput of calm's script (about 30 s on 2 cores). DURATION and
# CONCURRENCY tune it. The last lines are, per implementation:
#   redis <impl> checks_per_sec=<n> p50_us=<n> p99_us=<n>
DURATION ?= 4s
CONCURRENCY ?= 64
bench-redis: deps
	cd bench && $(GO) run ./redis -duration $(DURATION) -concurrency $(CONCURRENCY)
