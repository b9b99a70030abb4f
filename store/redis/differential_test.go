package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
)

// randomLimit returns a valid limit with small numbers, so that random
// traces reach the edges of the budget often.
func randomLimit(rng *rand.Rand) algorithm.Limit {
	windows := []time.Duration{time.Second, 10 * time.Second, time.Minute, 15 * time.Minute, time.Hour}
	l := algorithm.Limit{
		Quota:  1 + rng.Int64N(20),
		Window: windows[rng.IntN(len(windows))].Microseconds(),
	}
	if rng.IntN(2) == 0 {
		l.Burst = 1 + rng.Int64N(2*l.Quota)
	}
	if rng.IntN(3) == 0 {
		l.Delay = rng.Int64N(l.Capacity() + 2)
	}
	if rng.IntN(3) == 0 {
		l.MaxWait = rng.Int64N(l.Window)
	}
	return l
}

// randomStep returns a clock step forward: mostly small, sometimes a
// window or more. After a step back, the memory store keeps deciding at the
// latest time it has seen, while a Redis store with client time decides at
// the time given. So the traces never step back; the algorithm package's
// own Go-versus-Lua test covers steps back.
func randomStep(rng *rand.Rand) int64 {
	switch rng.IntN(10) {
	case 0, 1:
		return 0
	case 2:
		return rng.Int64N(2 * time.Hour.Microseconds())
	case 3:
		return rng.Int64N(time.Minute.Microseconds())
	}
	return rng.Int64N(300 * time.Millisecond.Microseconds())
}

func randomCost(rng *rand.Rand, capacity int64) int64 {
	switch rng.IntN(12) {
	case 0:
		return 0
	case 1:
		return capacity
	case 2:
		return capacity + 1
	case 3:
		return 1 + rng.Int64N(capacity)
	case 4:
		return -1
	}
	return 1
}

// TestDifferentialAgainstMemory replays the same seeded random traces
// through the memory store and the Redis store with one fake clock, and
// requires identical results and decisions, field by field.
func TestDifferentialAgainstMemory(t *testing.T) {
	clock := newFakeClock()
	rs, _ := newStore(t, Config{Now: clock.Now})
	ms := memory.New(memory.Config{Clock: clock.Now})
	t.Cleanup(func() { ms.Close() })

	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(kind)+1, 42))
			pool := make([]store.Check, 8)
			for i := range pool {
				pool[i] = store.Check{
					Key:       fmt.Sprintf("test:diff:%v:{client%d}:%d", kind, i%3, i),
					Algorithm: kind,
					Limit:     randomLimit(rng),
				}
			}
			replay(t, rng, clock, pool, rs, ms, 400)
		})
	}
	t.Run("mixed", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(99, 7))
		pool := make([]store.Check, 12)
		for i := range pool {
			kind := allKinds[rng.IntN(len(allKinds))]
			pool[i] = store.Check{
				Key:       fmt.Sprintf("test:diff:mixed:{client%d}:%d", i%4, i),
				Algorithm: kind,
				Limit:     randomLimit(rng),
			}
		}
		replay(t, rng, clock, pool, rs, ms, 600)
	})
}

func replay(t *testing.T, rng *rand.Rand, clock *fakeClock, pool []store.Check, redis, mem store.Store, steps int) {
	t.Helper()
	ctx := context.Background()
	for step := 0; step < steps; step++ {
		clock.AdvanceMicros(randomStep(rng))
		n := 1 + rng.IntN(3)
		checks := make([]store.Check, n)
		for i := range checks {
			checks[i] = pool[rng.IntN(len(pool))]
		}
		cost := randomCost(rng, checks[0].Limit.Capacity())

		gotOut := make([]algorithm.Decision, n)
		wantOut := make([]algorithm.Decision, n)
		got, err := redis.Apply(ctx, checks, cost, gotOut)
		if err != nil {
			t.Fatalf("step %d: redis Apply = %v", step, err)
		}
		want, err := mem.Apply(ctx, checks, cost, wantOut)
		if err != nil {
			t.Fatalf("step %d: memory Apply = %v", step, err)
		}
		if got != want {
			t.Fatalf("step %d at %s, cost %d: redis allowed = %v, memory allowed = %v\nchecks: %+v\nredis:  %+v\nmemory: %+v",
				step, clock, cost, got, want, checks, gotOut, wantOut)
		}
		for i := range gotOut {
			if gotOut[i] != wantOut[i] {
				t.Fatalf("step %d at %s, cost %d, check %d (%v %+v):\nredis:  %+v\nmemory: %+v",
					step, clock, cost, i, checks[i].Algorithm, checks[i].Limit, gotOut[i], wantOut[i])
			}
		}
	}
}

// TestDifferentialLimiterResults runs calm.Limiter over both stores with the
// same clock and requires identical Results, which carry every value the
// HTTP headers are made of. Each key keeps one algorithm and one limit, as
// it does in a deployment.
func TestDifferentialLimiterResults(t *testing.T) {
	clock := newFakeClock()
	rs, _ := newStore(t, Config{Now: clock.Now})
	ms := memory.New(memory.Config{Clock: clock.Now})
	t.Cleanup(func() { ms.Close() })

	rules := []string{"3/second", "10/minute", "5/15m", "100/hour", "2/10s"}
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			env := "test-" + kind.String()
			onRedis, err := calm.New(calm.Config{Store: rs, Environment: env, Algorithm: kind})
			if err != nil {
				t.Fatal(err)
			}
			onMemory, err := calm.New(calm.Config{Store: ms, Environment: env, Algorithm: kind})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(kind), 4))
			scopes := []calm.Scope{calm.ScopeUser, calm.ScopeEndpoint, calm.ScopeGlobal}
			bursts := []int64{0, 3, 25}
			ctx := context.Background()
			for step := 0; step < 150; step++ {
				clock.AdvanceMicros(randomStep(rng))
				var checks []calm.Check
				for i := 0; i < 1+rng.IntN(3); i++ {
					r1, _ := calm.ParseRule(rules[rng.IntN(2)])
					r2, _ := calm.ParseRule(rules[2+rng.IntN(3)])
					checks = append(checks, calm.Check{
						Scope:    scopes[i],
						Endpoint: "GET /items/{id}",
						Client:   fmt.Sprintf("client-%d", rng.IntN(3)),
						Rules:    []calm.Rule{r1, r2},
						Burst:    bursts[i],
					})
				}
				cost := rng.Int64N(4)
				got, err := onRedis.Allow(ctx, checks, cost)
				if err != nil {
					t.Fatalf("step %d: Allow on redis = %v", step, err)
				}
				want, err := onMemory.Allow(ctx, checks, cost)
				if err != nil {
					t.Fatalf("step %d: Allow on memory = %v", step, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d at %s (cost %d):\nredis:  %+v\nmemory: %+v", step, clock, cost, got, want)
				}
			}
		})
	}
}

// TestAlgorithmChangeResetsState switches the algorithm of a key, as a
// configuration change would, and expects a fresh state instead of one
// read under the other algorithm's layout.
func TestAlgorithmChangeResetsState(t *testing.T) {
	clock := newFakeClock()
	s, _ := newStore(t, Config{Now: clock.Now})
	c := check("test:switch:{a}:60", algorithm.TokenBucket, 5, time.Minute)
	for i := 0; i < 5; i++ {
		apply(t, s, 1, c)
	}
	c.Algorithm = algorithm.FixedWindow
	ok, d := apply(t, s, 1, c)
	if !ok || d[0].Remaining != 4 {
		t.Errorf("Apply after switching to fixed_window = %v remaining %d, want true remaining 4", ok, d[0].Remaining)
	}
}
