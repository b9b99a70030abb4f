package memory

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

var (
	reportMemory = flag.Bool("memory.report", false,
		"print the heap bytes per key of 1,000,000 keys for every algorithm")
	memoryQuota  = flag.Int64("memory.quota", 100, "quota of the rule -memory.report applies")
	memoryWindow = flag.Duration("memory.window", time.Minute,
		"window of the rule -memory.report applies")
)

var benchKinds = []algorithm.Kind{
	algorithm.SlidingWindow,
	algorithm.FixedWindow,
	algorithm.TokenBucket,
	algorithm.LeakyBucket,
	algorithm.LeakyQueue,
	algorithm.GCRA,
}

// benchLimit is the rule the benchmarks apply: 100/minute, calm's default.
var benchLimit = algorithm.Limit{Quota: 100, Window: time.Minute.Microseconds()}

// benchKey returns a key shaped like the ones calm builds.
func benchKey(i int) string {
	return "development:ratelimit:v1:user:{GET /api/test:" + strconv.Itoa(i) + "}:60"
}

// benchChecks returns n one-check requests on distinct keys. The checks
// and their keys are laid out contiguously, as a caller that builds them
// per request would have them in cache, so the benchmarks measure the
// store rather than the loads of scattered test data.
func benchChecks(kind algorithm.Kind, n int) [][]store.Check {
	var keys strings.Builder
	ends := make([]int, n)
	for i := range n {
		keys.WriteString(benchKey(i))
		ends[i] = keys.Len()
	}
	all, flat := keys.String(), make([]store.Check, n)
	requests := make([][]store.Check, n)
	for i := range flat {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		flat[i] = store.Check{Key: all[start:ends[i]], Algorithm: kind, Limit: benchLimit}
		requests[i] = flat[i : i+1]
	}
	return requests
}

// runClock is a clock that advances by one microsecond per reading, so
// that the benchmarks see time pass without a system call.
func runClock() func() time.Time {
	var now int64 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	return func() time.Time {
		now++
		return time.UnixMicro(now)
	}
}

// keyBuilder builds benchmark keys in one reused buffer, as a server
// builds each request's key afresh, so that the benchmarks measure the
// store rather than cache misses on stored test data. The store keeps no
// reference to a key after Apply returns.
type keyBuilder struct{ buf []byte }

func (kb *keyBuilder) key(i int) string {
	kb.buf = append(kb.buf[:0], "development:ratelimit:v1:user:{GET /api/test:"...)
	kb.buf = strconv.AppendInt(kb.buf, int64(i), 10)
	kb.buf = append(kb.buf, "}:60"...)
	return unsafe.String(unsafe.SliceData(kb.buf), len(kb.buf))
}

// benchApply applies requests on keys drawn by next until the benchmark
// loop ends.
func benchApply(s *Store, kind algorithm.Kind, next func() int, more func() bool) {
	var kb keyBuilder
	checks := []store.Check{{Algorithm: kind, Limit: benchLimit}}
	out := make([]algorithm.Decision, 1)
	for more() {
		checks[0].Key = kb.key(next())
		s.Apply(context.Background(), checks, 1, out)
	}
}

func BenchmarkApplyHotKey(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			b.ReportAllocs()
			benchApply(s, kind, func() int { return 1 }, b.Loop)
		})
	}
}

const benchKeys = 100_000

func BenchmarkApply100kSerial(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			r := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			benchApply(s, kind, func() int { return r.IntN(benchKeys) }, b.Loop)
		})
	}
}

func BenchmarkApply100kParallel(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 0))
				benchApply(s, kind, func() int { return r.IntN(benchKeys) }, pb.Next)
			})
		})
	}
}

// TestMemoryPerKey prints, with -memory.report, one line per algorithm with
// the Go heap that 1,000,000 distinct keys take in a store with MaxKeys
// 1,000,000, measured after GC from before New to after the last Apply.
// The rule is 100/minute unless -memory.quota and -memory.window set
// another.
func TestMemoryPerKey(t *testing.T) {
	if !*reportMemory {
		t.Skip("run with -memory.report (make bench-memory)")
	}
	const keys = 1_000_000
	l := algorithm.Limit{Quota: *memoryQuota, Window: memoryWindow.Microseconds()}
	if err := l.Validate(); err != nil {
		t.Fatalf("-memory.quota %d -memory.window %s: %v", *memoryQuota, *memoryWindow, err)
	}
	for _, kind := range benchKinds {
		perKey, held := heapPerKey(t, kind, l, keys)
		fmt.Printf("memory %s keys=%d bytes_per_key=%.2f\n", kind, keys, perKey)
		t.Logf("%s: %d of %d keys held after inserting all", kind, held, keys)
	}
}

func heapPerKey(t *testing.T, kind algorithm.Kind, l algorithm.Limit, keys int) (float64, int) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	s := New(Config{MaxKeys: keys, Clock: runClock()})
	checks := []store.Check{{Algorithm: kind, Limit: l}}
	out := make([]algorithm.Decision, 1)
	for i := range keys {
		checks[0].Key = benchKey(i)
		if _, err := s.Apply(context.Background(), checks, 1, out); err != nil {
			t.Fatalf("Apply(%s) error: %v", checks[0].Key, err)
		}
	}

	runtime.GC()
	runtime.ReadMemStats(&after)
	held := s.Len()
	s.Close()
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(keys), held
}

// BenchmarkSweep times one sweep of a store holding 1,000,000 keys: every
// shard locked in turn, every slot decoded, checked and re-encoded.
func BenchmarkSweep(b *testing.B) {
	s := New(Config{Clock: runClock()})
	defer s.Close()
	var kb keyBuilder
	checks := []store.Check{{Algorithm: algorithm.GCRA, Limit: benchLimit}}
	out := make([]algorithm.Decision, 1)
	for i := range DefaultMaxKeys {
		checks[0].Key = kb.key(i)
		s.Apply(context.Background(), checks, 1, out)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.sweep()
	}
	perShard := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(s.shards))
	b.ReportMetric(perShard, "ns/shard")
}

// BenchmarkRebase times moving the base of every shard of a store holding
// 1,000,000 GCRA keys of 1/day: each shard locked once while all of its
// slots are decoded and re-encoded.
func BenchmarkRebase(b *testing.B) {
	clk := newTestClock()
	s := New(Config{Clock: clk.Now})
	defer s.Close()
	var kb keyBuilder
	checks := []store.Check{{Algorithm: algorithm.GCRA, Limit: perWindow(1, 24*time.Hour)}}
	out := make([]algorithm.Decision, 1)
	for i := range DefaultMaxKeys {
		checks[0].Key = kb.key(i)
		s.Apply(context.Background(), checks, 1, out)
	}
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(rebaseSpan / 2 * time.Microsecond)
		if n := s.sweep(); n != 0 {
			b.Fatalf("sweep() dropped %d keys, want 0", n)
		}
	}
	perShard := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(s.shards))
	b.ReportMetric(perShard, "ns/shard")
}

// BenchmarkGrow times the last growth of a shard of a store with MaxKeys
// 1,000,000: the GCRA keys of a table of level 1 filled to 3/4 of its room,
// about 5,900, moved to the full table under one lock hold.
func BenchmarkGrow(b *testing.B) {
	var reg registry
	idx, lay, err := reg.lookup(algorithm.GCRA, &benchLimit)
	if err != nil {
		b.Fatal(err)
	}
	layouts := reg.snapshot()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		var sh shard
		for sh.level != 1 || sh.count < sh.room*3/4 {
			if sh.wide == nil || sh.level == 0 {
				// Both buckets of a key were full, and the table grew to
				// level 0 early: start again.
				sh = shard{}
				sh.init(DefaultMaxKeys/minShards, startKeys, now)
			}
			st := algorithm.State{A: now + r.Int64N(benchLimit.Window)}
			sh.save(r.Uint64(), idx, lay, algorithm.GCRA, benchLimit, st, layouts)
		}
		b.StartTimer()
		sh.grow(layouts)
	}
}
