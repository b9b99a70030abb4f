package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
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

// BenchmarkApplyClusterLayers measures requests with a user, an endpoint
// and a global check, in three slots of a 3-master Redis Cluster, from
// parallel goroutines over 10,000 clients.
func BenchmarkApplyClusterLayers(b *testing.B) {
	cl := redistest.StartCluster(b, 3)
	s, err := New(Config{URL: clusterURL(cl), Timeout: testTimeout})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	limit := algorithm.Limit{Quota: 1 << 20, Window: time.Minute.Microseconds()}
	users := make([]string, 10000)
	for i := range users {
		users[i] = "bench:user:{GET_/x:" + strconv.Itoa(i) + "}:60"
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var out [3]algorithm.Decision
		for pb.Next() {
			i := next.Add(1) % int64(len(users))
			checks := [3]store.Check{
				{Key: users[i], Algorithm: algorithm.GCRA, Limit: limit},
				{Key: "bench:endpoint:{GET_/x:*}:60", Algorithm: algorithm.GCRA, Limit: limit},
				{Key: "bench:global:{*:*}:60", Algorithm: algorithm.GCRA, Limit: limit},
			}
			if _, err := s.Apply(context.Background(), checks[:], 1, out[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
