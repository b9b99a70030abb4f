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

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

var reportMemory = flag.Bool("memory.report", false,
	"print the heap bytes per key of 1,000,000 keys for every algorithm")

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

func BenchmarkApplyHotKey(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			checks := benchChecks(kind, 1)[0]
			out := make([]algorithm.Decision, 1)
			b.ReportAllocs()
			for b.Loop() {
				s.Apply(context.Background(), checks, 1, out)
			}
		})
	}
}

func BenchmarkApply100kSerial(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			checks := benchChecks(kind, 100_000)
			order := rand.Perm(len(checks))
			out := make([]algorithm.Decision, 1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Apply(context.Background(), checks[order[i%len(order)]], 1, out)
				i++
			}
		})
	}
}

func BenchmarkApply100kParallel(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind.String(), func(b *testing.B) {
			s := New(Config{})
			defer s.Close()
			checks := benchChecks(kind, 100_000)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				out := make([]algorithm.Decision, 1)
				r := rand.New(rand.NewPCG(rand.Uint64(), 0))
				for pb.Next() {
					s.Apply(context.Background(), checks[r.IntN(len(checks))], 1, out)
				}
			})
		})
	}
}

// TestMemoryPerKey prints, with -memory.report, one line per algorithm with
// the Go heap that 1,000,000 distinct keys take, measured after GC from
// before New to after the last Apply.
func TestMemoryPerKey(t *testing.T) {
	if !*reportMemory {
		t.Skip("run with -memory.report (make bench-memory)")
	}
	const keys = 1_000_000
	for _, kind := range benchKinds {
		perKey, held := heapPerKey(t, kind, keys)
		fmt.Printf("memory %s keys=%d bytes_per_key=%.2f\n", kind, keys, perKey)
		t.Logf("%s: %d of %d keys held after inserting all", kind, held, keys)
	}
}

func heapPerKey(t *testing.T, kind algorithm.Kind, keys int) (float64, int) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	s := New(Config{MaxKeys: keys, Clock: runClock()})
	checks := []store.Check{{Algorithm: kind, Limit: benchLimit}}
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
