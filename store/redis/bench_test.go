package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// BenchmarkApply measures one GCRA check per Apply from parallel
// goroutines over 10,000 keys on a local redis-server.
func BenchmarkApply(b *testing.B) {
	s, _ := newStore(b, Config{})
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "bench:{" + strconv.Itoa(i) + "}:60"
	}
	limit := algorithm.Limit{Quota: 1 << 20, Window: time.Minute.Microseconds()}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var out [1]algorithm.Decision
		for pb.Next() {
			i := next.Add(1) % int64(len(keys))
			checks := [1]store.Check{{Key: keys[i], Algorithm: algorithm.GCRA, Limit: limit}}
			if _, err := s.Apply(context.Background(), checks[:], 1, out[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
