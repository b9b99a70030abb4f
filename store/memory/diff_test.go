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
// charged all or nothing, never evicted. Like the store under test, it
// reads a state past the expiry of the rule that wrote it as the zero
// State, and it forgets expired states when that store sweeps, per shard,
// so that a clock stepping back after a sweep meets the same memory in
// both.
type referenceStore struct {
	states map[string]refEntry
	base   []int64 // per shard, as the store's
}

type refEntry struct {
	state algorithm.State
	kind  algorithm.Kind
	limit algorithm.Limit
	shard int
}

func (r *referenceStore) apply(checks []store.Check, shards []int, now, cost int64,
	out []algorithm.Decision) bool {
	for _, i := range shards {
		if now-r.base[i] >= rebaseSpan {
			r.sweep(i, now)
		}
	}

	next := make(map[string]refEntry)
	changed := make(map[string]bool)
	allowed := true
	for i, c := range checks {
		e, ok := next[c.Key]
		// Like the store, write a key named once only when its state
		// changes, so that the rule that wrote it stays the same.
		changed[c.Key] = ok
		if !ok {
			// A state past the expiry of the rule that wrote it reads as
			// the zero State, even under another limit, and so does a
			// state another algorithm wrote.
			e, ok = r.states[c.Key]
			if ok && (e.kind != c.Algorithm || expiry(e.kind, e.limit.Window, e.state) <= now) {
				e = refEntry{}
			}
		}
		var d algorithm.Decision
		before := e.state
		e.state, d = algorithm.Decide(c.Algorithm, e.state, now, c.Limit, cost)
		changed[c.Key] = changed[c.Key] || e.state != before
		e.kind, e.limit, e.shard = c.Algorithm, c.Limit, shards[i]
		next[c.Key] = e
		out[i] = d
		allowed = allowed && d.Allowed
	}
	if allowed {
		for k, e := range next {
			if changed[k] {
				r.states[k] = e
			}
		}
	} else {
		// Nothing is charged: the checks that allowed report their budgets
		// as a request of cost 0 would get them before this request.
		for i, c := range checks {
			if !out[i].Allowed {
				continue
			}
			e, ok := r.states[c.Key]
			if ok && (e.kind != c.Algorithm || expiry(e.kind, e.limit.Window, e.state) <= now) {
				e = refEntry{}
			}
			_, out[i] = algorithm.Decide(c.Algorithm, e.state, now, c.Limit, 0)
		}
	}
	return allowed
}

// sweep forgets the states of shard i that expired at now and, as the
// store's sweep does, moves the shard's base when it is half a span old.
func (r *referenceStore) sweep(i int, now int64) {
	for k, e := range r.states {
		if e.shard == i && expiry(e.kind, e.limit.Window, e.state) <= now {
			delete(r.states, k)
		}
	}
	if now-r.base[i] >= rebaseSpan/2 {
		r.base[i] = now
	}
}

// TestApplyMatchesReference runs random traces of stacked checks through
// the store and through referenceStore and requires the same decisions.
// The clock moves by steps from microseconds to hours, past expiries and
// shard rebases, now and then backwards, and the sweeper runs now and
// then. The keys of one client share a key across rules, so that one
// state is read and written under several limits.
func TestApplyMatchesReference(t *testing.T) {
	t.Parallel()
	limits := []algorithm.Limit{
		{Quota: 3, Window: time.Second.Microseconds()},
		{Quota: 7, Window: 3 * time.Second.Microseconds()},
		{Quota: 100, Window: time.Minute.Microseconds(), Burst: 20},
		{Quota: 1000, Window: time.Hour.Microseconds()},
		{Quota: 5, Window: time.Minute.Microseconds(), Delay: 2, MaxWait: 30 * time.Second.Microseconds()},
		// Needs the ext array under every kind but a fixed window.
		{Quota: 999_983, Window: time.Second.Microseconds()},
	}
	tables := []struct {
		name      string
		firstKeys int
	}{
		{"full tables", startKeys},
		// Tables that start with room for 2 keys grow several times
		// while the trace runs.
		{"growing tables", 2},
	}
	for _, tc := range tables {
		for _, kind := range benchKinds {
			t.Run(tc.name+"/"+kind.String(), func(t *testing.T) {
				t.Parallel()
				runReferenceTrace(t, kind, limits, uint64(kind), tc.firstKeys)
			})
		}
	}
}

func runReferenceTrace(t *testing.T, kind algorithm.Kind, limits []algorithm.Limit, seed uint64,
	firstKeys int) {
	r := rand.New(rand.NewPCG(seed, 42))
	clk := newTestClock()
	// Room for every key of the trace, so that nothing is evicted.
	s := newTestStoreGrowing(t, clk, 1000, 4, firstKeys)
	ref := &referenceStore{states: map[string]refEntry{}, base: make([]int64, len(s.shards))}
	for i := range ref.base {
		ref.base[i] = s.shards[i].base
	}
	steps := []time.Duration{0, time.Microsecond, 337 * time.Microsecond, 40 * time.Millisecond,
		time.Second, 13 * time.Second, time.Minute, 3 * time.Minute, time.Hour}
	out, want := make([]algorithm.Decision, 3), make([]algorithm.Decision, 3)
	for i := range 20000 {
		step := steps[r.IntN(len(steps))]
		if r.IntN(50) == 0 {
			step = -step
		}
		clk.Advance(step)
		if r.IntN(500) == 0 {
			s.sweep()
			for i := range ref.base {
				ref.sweep(i, clk.Now().UnixMicro())
			}
		}

		checks := make([]store.Check, 1+r.IntN(3))
		for j := range checks {
			l := r.IntN(len(limits))
			checks[j] = store.Check{
				Key:       fmt.Sprintf("client%d:rule%d", r.IntN(20), l%3),
				Algorithm: kind,
				Limit:     limits[l],
			}
		}
		cost := int64(r.IntN(4))
		now := clk.Now().UnixMicro()
		got, err := s.Apply(context.Background(), checks, cost, out)
		if err != nil {
			t.Fatalf("step %d: Apply error: %v", i, err)
		}
		shards := make([]int, len(checks))
		for j, c := range checks {
			shards[j] = s.shardOf(s.hash(c.Key))
		}
		if ok := ref.apply(checks, shards, now, cost, want); got != ok {
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
