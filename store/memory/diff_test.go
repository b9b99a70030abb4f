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

	// next holds the states the checks so far changed. A check reads the
	// state the last of them left on its key, fresh when another algorithm
	// wrote it, or the stored one when none changed the key.
	next := make(map[string]refEntry)
	allowed := true
	for i, c := range checks {
		e, ok := next[c.Key]
		if !ok {
			e = r.load(c, now)
		} else if e.kind != c.Algorithm {
			e = refEntry{}
		}
		var d algorithm.Decision
		before := e.state
		e.state, d = algorithm.Decide(c.Algorithm, e.state, now, c.Limit, cost)
		if e.state != before {
			e.kind, e.limit, e.shard = c.Algorithm, c.Limit, shards[i]
			next[c.Key] = e
		}
		out[i] = d
		allowed = allowed && d.Allowed
	}
	if allowed {
		for k, e := range next {
			r.states[k] = e
		}
		return true
	}
	// Nothing is charged: the checks that allowed report their budgets as
	// a request of cost 0 would get them before this request.
	for i, c := range checks {
		if out[i].Allowed {
			_, out[i] = algorithm.Decide(c.Algorithm, r.load(c, now).state, now, c.Limit, 0)
		}
	}
	return false
}

// load returns the stored entry of c's key as c reads it at now: the zero
// entry when another algorithm wrote it or it has expired under the rule
// that wrote it, even when c's limit differs.
func (r *referenceStore) load(c store.Check, now int64) refEntry {
	e, ok := r.states[c.Key]
	if !ok || e.kind != c.Algorithm || expiry(e.kind, e.limit.Window, e.state) <= now {
		return refEntry{}
	}
	return e
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
		// Slots of very different widths on the same keys: 22 bits for a
		// sliding window of 1/hour, 56 for GCRA at 1/day, and 58 with ext
		// for 2^20/minute. So shards widen while they hold keys.
		{Quota: 1, Window: time.Hour.Microseconds()},
		{Quota: 1, Window: 24 * time.Hour.Microseconds()},
		{Quota: 1 << 20, Window: time.Minute.Microseconds()},
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
				kinds := []algorithm.Kind{kind}
				runReferenceTrace(t, kinds, limits, uint64(kind), tc.firstKeys)
			})
		}
		// Every algorithm on the same keys: each check replaces the state
		// of another algorithm, in slots of another layout.
		t.Run(tc.name+"/mixed", func(t *testing.T) {
			t.Parallel()
			runReferenceTrace(t, benchKinds, limits, 100, tc.firstKeys)
		})
	}
}

// runReferenceTrace runs a trace whose checks take a kind from kinds and a
// limit from limits at random.
func runReferenceTrace(t *testing.T, kinds []algorithm.Kind, limits []algorithm.Limit,
	seed uint64, firstKeys int) {
	r := rand.New(rand.NewPCG(seed, 42))
	clk := newTestClock()
	// Room for every key of the trace, so that nothing is evicted.
	s := newTestStoreGrowing(t, clk, 1000, 4, firstKeys)
	ref := &referenceStore{states: map[string]refEntry{}, base: make([]int64, len(s.shards))}
	for i := range ref.base {
		ref.base[i] = s.shards[i].base
	}
	steps := []time.Duration{0, time.Microsecond, 337 * time.Microsecond, 40 * time.Millisecond,
		time.Second, 13 * time.Second, time.Minute, 3 * time.Minute, time.Hour,
		rebaseSpan*time.Microsecond + time.Microsecond}
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
				Algorithm: kinds[r.IntN(len(kinds))],
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
				t.Fatalf("step %d at %d: decision %d for %s = %+v, want %+v\nchecks %+v, cost %d",
					i, now, j, checks[j].Key, out[j], want[j], checks, cost)
			}
		}
	}
}
