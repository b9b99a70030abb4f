package compare

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// speedLimit is generous enough that no benchmark run exhausts it, so every
// check is an allowed request that updates the key's state. calm requires
// quota × window (µs) below 2^53, and 1e8 × 6e7 is 6e15.
var speedLimit = Limit{Requests: 100_000_000, Window: time.Minute, Keys: manyKeys}

const (
	manyKeys    = 100_000
	orderLength = 1 << 20 // length of the random key sequence; a power of two
)

// BenchmarkCompare measures one check per iteration for every peer:
//
//   - hot: one key, every request;
//   - keys-100k-serial: 100,000 keys in a fixed random order, one goroutine;
//   - keys-100k-parallel: the same keys from GOMAXPROCS goroutines.
//
// The 100k-key cases admit every key once before the timer starts, so
// they measure updates of existing state, not first inserts.
func BenchmarkCompare(b *testing.B) {
	keys := Keys(manyKeys)
	order := Order(manyKeys, orderLength)
	for _, p := range Peers() {
		b.Run("case=hot/peer="+p.Name, func(b *testing.B) {
			benchHot(b, p, keys[0])
		})
		b.Run("case=keys-100k-serial/peer="+p.Name, func(b *testing.B) {
			benchSerial(b, p, keys, order)
		})
		b.Run("case=keys-100k-parallel/peer="+p.Name, func(b *testing.B) {
			benchParallel(b, p, keys, order)
		})
	}
}

func newBenchLimiter(b *testing.B, p Peer, l Limit) Limiter {
	b.Helper()
	lim, err := p.New(l)
	if err != nil {
		b.Fatalf("%s: New(%v) error: %v", p.Name, l, err)
	}
	b.Cleanup(func() {
		if err := lim.Close(); err != nil {
			b.Errorf("%s: Close() error: %v", p.Name, err)
		}
	})
	return lim
}

func prefill(b *testing.B, lim Limiter, keys []string) {
	b.Helper()
	for _, k := range keys {
		if !lim.Allow(k) {
			b.Fatalf("Allow(%q) on a fresh key = false, want true", k)
		}
	}
}

func benchHot(b *testing.B, p Peer, key string) {
	lim := newBenchLimiter(b, p, speedLimit)
	b.ReportAllocs()
	denied := 0
	for b.Loop() {
		if !lim.Allow(key) {
			denied++
		}
	}
	reportDenied(b, denied)
}

func benchSerial(b *testing.B, p Peer, keys []string, order []int32) {
	lim := newBenchLimiter(b, p, speedLimit)
	prefill(b, lim, keys)
	b.ReportAllocs()
	denied, i := 0, 0
	for b.Loop() {
		if !lim.Allow(keys[order[i&(orderLength-1)]]) {
			denied++
		}
		i++
	}
	reportDenied(b, denied)
}

func benchParallel(b *testing.B, p Peer, keys []string, order []int32) {
	lim := newBenchLimiter(b, p, speedLimit)
	prefill(b, lim, keys)
	var worker, denied atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine starts at its own place in the sequence, so they
		// do not walk the same keys in step.
		i := int(worker.Add(1)) * 104_729
		n := int64(0)
		for pb.Next() {
			if !lim.Allow(keys[order[i&(orderLength-1)]]) {
				n++
			}
			i++
		}
		denied.Add(n)
	})
	reportDenied(b, int(denied.Load()))
}

// reportDenied fails the benchmark when a check was denied: the limit is
// meant to admit every request, so a denial means the adapter measured
// something else.
func reportDenied(b *testing.B, denied int) {
	b.Helper()
	if denied > 0 {
		b.Fatalf("%d of %d checks denied, want all allowed under %v", denied, b.N, speedLimit)
	}
}

// heapKeys is the number of distinct keys in BenchmarkHeap.
const heapKeys = 1_000_000

// BenchmarkHeap reports the Go heap that each peer of HeapPeers keeps for
// 1,000,000 keys, in bytes per key (B/key), measured as the growth of
// runtime.MemStats.HeapAlloc between two forced collections. Each key
// string is built just before its first request, so a library that keeps
// the key pays for it, as it would with keys taken from requests. The
// time per iteration is the cost of admitting 1M new keys. Run it with
// -benchtime=1x: every iteration fills a new limiter.
//
// It runs under each of heapRules. Under one request per hour, two more
// figures show what a store gave up for its size:
//
//   - new-key-denials: new keys denied on their first request, because
//     the store took them for a key it already holds (a fingerprint
//     collision);
//   - lost-keys/1000: of every 1000th key, how many passed a second
//     request, because the store no longer held their state.
//
// Besides calm's own adapters, it runs calm's memory store under each
// algorithm that another peer uses (calm-token_bucket and so on), so that
// each peer can be compared with calm under the same algorithm.
//
// NOTE: calm's fixed windows start on multiples of the window since the
// Unix epoch. A run that crosses a full hour lets calm-fixed_window keys
// admitted before it pass their second request, counts them as lost and
// can fail the run. Running it again settles it.
func BenchmarkHeap(b *testing.B) {
	for _, r := range heapRules {
		for _, p := range HeapPeers() {
			b.Run("keys=1M/rule="+r.name+"/peer="+p.Name, func(b *testing.B) {
				benchHeap(b, p, r)
			})
		}
	}
}

// heapRule is a limit BenchmarkHeap applies.
type heapRule struct {
	name  string // in the benchmark name
	limit Limit
	// exact is true when the limit admits one request per key, so that
	// new-key-denials and lost-keys/1000 can be counted.
	exact bool
}

// heapRules are the limits of BenchmarkHeap. calm's bytes per key depend
// on the rule, because a slot holds exactly the bits its state needs: a
// window's counts take one bit each under 1/hour and seven under
// 100/minute. The other libraries keep the same state whatever the rule.
var heapRules = []heapRule{
	{name: "1-per-hour", limit: Limit{Requests: 1, Window: time.Hour, Keys: heapKeys}, exact: true},
	{name: "100-per-minute", limit: Limit{Requests: 100, Window: time.Minute, Keys: heapKeys}},
}

// maxWrongShare is the share of keys with a wrong first or second answer
// above which BenchmarkHeap fails, as the adapter is then broken rather
// than approximate.
const maxWrongShare = 0.05

func benchHeap(b *testing.B, p Peer, r heapRule) {
	limit := r.limit
	var bytes, denials, lost float64
	for b.Loop() {
		b.StopTimer()
		before := heapAlloc()
		b.StartTimer()

		lim := newBenchLimiter(b, p, limit)
		denied := 0
		for i := range heapKeys {
			if !lim.Allow(Key(i)) {
				denied++
			}
		}

		b.StopTimer()
		after := heapAlloc()
		bytes += float64(after) - float64(before)
		denials += float64(denied)
		if r.exact {
			lost += float64(countLost(lim))
		}
		b.StartTimer()
	}
	n := float64(b.N)
	if !r.exact {
		if denials > 0 {
			b.Fatalf("%s under %d/%v: %.0f first requests denied, want none", p.Name,
				limit.Requests, limit.Window, denials)
		}
		b.ReportMetric(bytes/n/heapKeys, "B/key")
		return
	}
	if denials/n > maxWrongShare*heapKeys || lost/n > maxWrongShare*heapSamples {
		b.Fatalf("%s under %d/%v: %.0f new keys denied, %.0f of %d sampled keys lost; want both "+
			"below %.0f%%", p.Name, limit.Requests, limit.Window, denials/n, lost/n, heapSamples,
			maxWrongShare*100)
	}
	b.ReportMetric(bytes/n/heapKeys, "B/key")
	b.ReportMetric(denials/n, "new-key-denials")
	b.ReportMetric(lost/n*1000/heapSamples, "lost-keys/1000")
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// heapSamples is the number of keys countLost requests a second time.
const heapSamples = heapKeys / 1000

// countLost sends a second request for every 1000th key and returns how
// many passed, which a store that kept the key would deny.
func countLost(lim Limiter) int {
	lost := 0
	for i := 0; i < heapKeys; i += heapKeys / heapSamples {
		if lim.Allow(Key(i)) {
			lost++
		}
	}
	return lost
}

func TestHeapKeysFitKeySpace(t *testing.T) {
	if heapKeys > maxKeys {
		t.Fatalf("heapKeys = %d, want at most %d, the number of distinct keys Key makes",
			heapKeys, maxKeys)
	}
}
