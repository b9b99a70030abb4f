package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// referenceStore is the plainest correct store: exact states in a map,
// never evicted, charged all or nothing.
type referenceStore map[string]algorithm.State

func (r referenceStore) apply(checks []store.Check, now, cost int64, out []algorithm.Decision) bool {
	next := make(map[string]algorithm.State)
	allowed := true
	for i, c := range checks {
		s, ok := next[c.Key]
		if !ok {
			s = r[c.Key]
		}
		var d algorithm.Decision
		s, d = algorithm.Decide(c.Algorithm, s, now, c.Limit, cost)
		next[c.Key] = s
		out[i] = d
		allowed = allowed && d.Allowed
	}
	if allowed {
		for k, s := range next {
			r[k] = s
		}
	}
	return allowed
}

// TestApplyMatchesReference runs random traces of stacked checks through
// the store and through referenceStore and requires the same decisions.
// The clock moves by steps from microseconds to hours, past expiries and
// shard rebases, now and then backwards, and the sweeper runs now and
// then. The reference gets the time the store uses: the latest of the
// clock and the times of the shards the call locks.
func TestApplyMatchesReference(t *testing.T) {
	t.Parallel()
	limits := []algorithm.Limit{
		{Quota: 3, Window: time.Second.Microseconds()},
		{Quota: 7, Window: 3 * time.Second.Microseconds()},
		{Quota: 100, Window: time.Minute.Microseconds(), Burst: 20},
		{Quota: 1000, Window: time.Hour.Microseconds()},
		{Quota: 5, Window: time.Minute.Microseconds(), Delay: 2, MaxWait: 30 * time.Second.Microseconds()},
	}
	for _, kind := range benchKinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			runReferenceTrace(t, kind, limits, uint64(kind))
		})
	}
}

func runReferenceTrace(t *testing.T, kind algorithm.Kind, limits []algorithm.Limit, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 42))
	clk := newTestClock()
	// Room for every key of the trace, so that nothing is evicted.
	s := newTestStore(t, clk, 1000, 4)
	ref := referenceStore{}
	steps := []time.Duration{0, time.Microsecond, 337 * time.Microsecond, 40 * time.Millisecond,
		time.Second, 13 * time.Second, time.Minute, 3 * time.Minute, time.Hour}
	out, want := make([]algorithm.Decision, 3), make([]algorithm.Decision, 3)
	shardNow := make([]int64, len(s.shards))
	for i := range shardNow {
		shardNow[i] = clk.Now().UnixMicro()
	}
	for i := range 20000 {
		step := steps[r.IntN(len(steps))]
		if r.IntN(50) == 0 {
			step = -step
		}
		clk.Advance(step)
		if r.IntN(500) == 0 {
			s.sweep()
			for i := range shardNow {
				shardNow[i] = max(shardNow[i], clk.Now().UnixMicro())
			}
		}

		checks := make([]store.Check, 1+r.IntN(3))
		for j := range checks {
			l := r.IntN(len(limits))
			checks[j] = store.Check{
				Key:       fmt.Sprintf("client%d:rule%d", r.IntN(20), l),
				Algorithm: kind,
				Limit:     limits[l],
			}
		}
		cost := int64(r.IntN(4))
		now := clk.Now().UnixMicro()
		for _, c := range checks {
			now = max(now, shardNow[s.shardOf(s.hash(c.Key))])
		}
		for _, c := range checks {
			shardNow[s.shardOf(s.hash(c.Key))] = now
		}
		got, err := s.Apply(context.Background(), checks, cost, out)
		if err != nil {
			t.Fatalf("step %d: Apply error: %v", i, err)
		}
		if ok := ref.apply(checks, now, cost, want); got != ok {
			t.Fatalf("step %d at %d: Apply(%+v, cost %d) = %v, want %v\ngot  %+v\nwant %+v",
				i, now, checks, cost, got, ok, out[:len(checks)], want[:len(checks)])
		}
		if i%1000 == 0 {
			checkInvariants(t, s)
		}
		for j := range checks {
			if out[j] != want[j] {
				t.Fatalf("step %d at %d: decision %d for %s = %+v, want %+v",
					i, now, j, checks[j].Key, out[j], want[j])
			}
		}
	}
}
