package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
)

// sharedKeyRule is one rule of a shared-key trace: an algorithm and a
// limit. Rules of the same window write the same keys, as they would if a
// deployment changed a rule's algorithm or quota but kept its window.
type sharedKeyRule struct {
	kind  algorithm.Kind
	limit algorithm.Limit
}

// TestDifferentialSharedKeys replays seeded random traces through the
// Redis store and the memory store, where one key is read and written by
// several algorithms and often appears more than once in a request. Both
// stores must return the same allowed result and the same decisions, field
// by field. So the test pins down how a request treats a repeated key. A
// check reads the new state of the last earlier check of the request that
// changed the key, or the stored state when none did. A state written by
// another algorithm reads as zero, and only changed states are saved. A
// denied request reports each check's budget from the stored state, read
// under the check's own algorithm.
func TestDifferentialSharedKeys(t *testing.T) {
	clock := newFakeClock()
	rs, _ := newStore(t, Config{Now: clock.Now})
	ms := memory.New(memory.Config{Clock: clock.Now})
	t.Cleanup(func() { ms.Close() })

	seeds := []uint64{1, 2, 3, 4, 5, 6}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			rules := sharedKeyRules(rng)
			mixed := replaySharedKeys(t, rng, clock, seed, rules, rs, ms, 300)
			// Without such requests the trace would not test what it is for.
			if mixed < 10 {
				t.Fatalf("%d requests named one key under two algorithms, want at least 10", mixed)
			}
		})
	}
}

// sharedKeyRules returns 4 to 6 rules whose algorithms start at a random
// point of allKinds and follow its order, so that six rules cover every
// algorithm and fewer cover different ones per seed. The windows come from
// two values, so that rules of different algorithms share keys.
func sharedKeyRules(rng *rand.Rand) []sharedKeyRule {
	windows := []time.Duration{time.Second, 10 * time.Second, time.Minute}
	w1 := windows[rng.IntN(len(windows))]
	w2 := windows[rng.IntN(len(windows))]
	first := rng.IntN(len(allKinds))
	rules := make([]sharedKeyRule, 4+rng.IntN(3))
	for i := range rules {
		l := randomLimit(rng)
		l.Window = w1.Microseconds()
		if i%2 == 1 {
			l.Window = w2.Microseconds()
		}
		rules[i] = sharedKeyRule{kind: allKinds[(first+i)%len(allKinds)], limit: l}
	}
	return rules
}

// replaySharedKeys runs steps requests of 1 to 3 checks and costs 0 to 3
// through both stores and fails at the first difference. Each check takes
// a random rule and one of three clients. Its key is made of the client and
// the rule's window, as in calm's key layout. replaySharedKeys returns how
// many requests named one key under two algorithms.
func replaySharedKeys(t *testing.T, rng *rand.Rand, clock *fakeClock, seed uint64,
	rules []sharedKeyRule, rs, ms store.Store, steps int) (mixed int) {
	t.Helper()
	for step := 0; step < steps; step++ {
		clock.AdvanceMicros(randomStep(rng))
		checks := make([]store.Check, 1+rng.IntN(3))
		client := rng.IntN(3)
		for i := range checks {
			// Keeping the client of the check before makes repeated keys
			// in one request common.
			if rng.IntN(3) == 0 {
				client = rng.IntN(3)
			}
			r := rules[rng.IntN(len(rules))]
			checks[i] = store.Check{
				Key:       fmt.Sprintf("test:shared:%d:{client%d}:%d", seed, client, r.limit.Window),
				Algorithm: r.kind,
				Limit:     r.limit,
			}
		}
		if namesKeyUnderTwoKinds(checks) {
			mixed++
		}
		cost := rng.Int64N(4)
		compareApply(t, step, clock, checks, cost, rs, ms)
	}
	return mixed
}

// namesKeyUnderTwoKinds reports whether two checks share a key but not an
// algorithm.
func namesKeyUnderTwoKinds(checks []store.Check) bool {
	for i := range checks {
		for j := i + 1; j < len(checks); j++ {
			if checks[i].Key == checks[j].Key && checks[i].Algorithm != checks[j].Algorithm {
				return true
			}
		}
	}
	return false
}

// compareApply applies checks at cost to both stores and fails the test
// unless they agree on the result and on every decision.
func compareApply(t *testing.T, step int, clock *fakeClock, checks []store.Check, cost int64,
	rs, ms store.Store) {
	t.Helper()
	ctx := context.Background()
	gotOut := make([]algorithm.Decision, len(checks))
	wantOut := make([]algorithm.Decision, len(checks))
	got, err := rs.Apply(ctx, checks, cost, gotOut)
	if err != nil {
		t.Fatalf("step %d: redis Apply = %v", step, err)
	}
	want, err := ms.Apply(ctx, checks, cost, wantOut)
	if err != nil {
		t.Fatalf("step %d: memory Apply = %v", step, err)
	}
	if got != want {
		t.Fatalf("step %d at %s, cost %d: redis allowed = %v, memory allowed = %v\n"+
			"checks: %+v\nredis:  %+v\nmemory: %+v",
			step, clock, cost, got, want, checks, gotOut, wantOut)
	}
	for i := range gotOut {
		if gotOut[i] != wantOut[i] {
			t.Fatalf("step %d at %s, cost %d, check %d (%s %v %+v):\nchecks: %+v\n"+
				"redis:  %+v\nmemory: %+v",
				step, clock, cost, i, checks[i].Key, checks[i].Algorithm, checks[i].Limit,
				checks, gotOut[i], wantOut[i])
		}
	}
}
