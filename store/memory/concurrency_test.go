package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// TestApplyConcurrentWithSweeper runs goroutines that apply pairs of
// checks on overlapping keys while the sweeper runs every millisecond,
// through phases that move the clock past rebases, back behind the
// shards' bases and forward again. Each phase adds a rule with wider
// slots, so shards widen, grow and rebase while other goroutines wait on
// their locks. The clock stands still within a phase, so after it the
// budget of every key must be its capacity less exactly the costs of the
// requests that Apply allowed.
func TestApplyConcurrentWithSweeper(t *testing.T) {
	t.Parallel()
	second, minute := time.Second.Microseconds(), time.Minute.Microseconds()
	hour, day := time.Hour.Microseconds(), 24*time.Hour.Microseconds()
	rules := []store.Check{
		{Algorithm: sw, Limit: lim{Quota: 50, Window: hour}},
		{Algorithm: fw, Limit: lim{Quota: 40, Window: minute}},
		{Algorithm: lq, Limit: lim{Quota: 20, Window: minute, Delay: 5}},
		{Algorithm: gcra, Limit: lim{Quota: 30, Window: day}},
		{Algorithm: tb, Limit: lim{Quota: 10, Window: second, Burst: 60}},
		{Algorithm: sw, Limit: lim{Quota: 1 << 20, Window: minute}},
		{Algorithm: lb, Limit: lim{Quota: 1 << 40, Window: 1000}},
		{Algorithm: sw, Limit: lim{Quota: 1 << 40, Window: 1000}},
	}
	steps := []time.Duration{
		0,
		rebaseSpan*time.Microsecond + time.Second, // Apply rebases
		rebaseSpan / 2 * time.Microsecond,         // the sweeper rebases
		-3 * time.Hour,                            // behind every base
		time.Minute,
		3*time.Hour + time.Minute,
		-30 * time.Second,
		rebaseSpan * time.Microsecond,
	}
	const goroutines, requests, keysPerPhase = 8, 300, 48

	clk := newTestClock()
	s := newStore(Config{MaxKeys: 1 << 16, Clock: clk.Now, CleanupInterval: time.Millisecond},
		4, 2)
	t.Cleanup(func() { s.Close() })
	key := func(phase, i int) store.Check {
		c := rules[i%min(len(rules), phase+1)]
		c.Key = fmt.Sprintf("phase%d:key%d", phase, i)
		return c
	}
	alone := keysAlone(s, len(steps), keysPerPhase, key)

	for phase, step := range steps {
		clk.Advance(step)
		charged := make([]atomic.Int64, keysPerPhase)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(phase), uint64(g)))
				applyPairs(t, s, r, requests, keysPerPhase, func(i int) store.Check {
					return key(phase, i)
				}, charged)
			}()
		}
		wg.Wait()
		checkInvariants(t, s)

		for i := range keysPerPhase {
			c := key(phase, i)
			if !alone[c.Key] {
				continue
			}
			capacity := c.Limit.Capacity()
			out := make([]algorithm.Decision, 1)
			if _, err := s.Apply(context.Background(), []store.Check{c}, 0, out); err != nil {
				t.Fatalf("phase %d: Apply(%s, cost 0) error: %v", phase, c.Key, err)
			}
			n := charged[i].Load()
			if n > capacity {
				t.Errorf("phase %d: %s %s charged %d, above its capacity %d",
					phase, c.Key, c.Algorithm, n, capacity)
			}
			if out[0].Remaining != capacity-n {
				t.Errorf("phase %d: %s %s remaining %d after %d charged, want %d",
					phase, c.Key, c.Algorithm, out[0].Remaining, n, capacity-n)
			}
		}
	}
}

// applyPairs applies requests of two checks on keys drawn from [0, keys),
// at a cost of 1 or 2, and adds the cost of every allowed request to the
// charged count of each of its checks' keys.
func applyPairs(t *testing.T, s *Store, r *rand.Rand, requests, keys int,
	check func(int) store.Check, charged []atomic.Int64) {
	out := make([]algorithm.Decision, 2)
	for range requests {
		i, j := r.IntN(keys), r.IntN(keys)
		checks := []store.Check{check(i), check(j)}
		cost := 1 + r.Int64N(2)
		ok, err := s.Apply(context.Background(), checks, cost, out)
		if err != nil {
			t.Errorf("Apply(%s, %s) error: %v", checks[0].Key, checks[1].Key, err)
			return
		}
		if ok {
			charged[i].Add(cost)
			charged[j].Add(cost)
		}
	}
}

// keysAlone returns, for every key of the phases, whether no other key of
// the test has its shard and fingerprint. Such keys share a slot (see the
// package documentation), so only the others have exact budgets.
func keysAlone(s *Store, phases, keys int, key func(phase, i int) store.Check) map[string]bool {
	owners := make(map[[2]uint64]int)
	for phase := range phases {
		for i := range keys {
			h := s.hash(key(phase, i).Key)
			owners[[2]uint64{uint64(s.shardOf(h)), fingerprint(h)}]++
		}
	}
	alone := make(map[string]bool)
	for phase := range phases {
		for i := range keys {
			k := key(phase, i).Key
			h := s.hash(k)
			alone[k] = owners[[2]uint64{uint64(s.shardOf(h)), fingerprint(h)}] == 1
		}
	}
	return alone
}
