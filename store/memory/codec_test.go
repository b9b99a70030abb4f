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

// testBase is a shard base on a minute boundary, like the test clock.
var testBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

func TestNewLayoutForm(t *testing.T) {
	t.Parallel()
	minute, hour := time.Minute.Microseconds(), time.Hour.Microseconds()
	tests := []struct {
		name  string
		kind  algorithm.Kind
		limit algorithm.Limit
		want  form
	}{
		{"sliding 100/minute", algorithm.SlidingWindow, algorithm.Limit{Quota: 100, Window: minute}, formWord},
		{"fixed 100/minute", algorithm.FixedWindow, algorithm.Limit{Quota: 100, Window: minute}, formWord},
		{"gcra 100/minute", algorithm.GCRA, algorithm.Limit{Quota: 100, Window: minute}, formWord},
		{"gcra 1000/hour", algorithm.GCRA, algorithm.Limit{Quota: 1000, Window: hour}, formWord},
		{"gcra 7/3s", algorithm.GCRA, algorithm.Limit{Quota: 7, Window: 3_000_000}, formWord},
		{"gcra 1/day", algorithm.GCRA, algorithm.Limit{Quota: 1, Window: 24 * hour}, formWord},
		{"queue with max wait", algorithm.LeakyQueue, algorithm.Limit{Quota: 10, Window: minute, MaxWait: minute}, formWord},
		{"token bucket 100/minute", algorithm.TokenBucket, algorithm.Limit{Quota: 100, Window: minute}, formWord},
		{"token bucket 1000/hour", algorithm.TokenBucket, algorithm.Limit{Quota: 1000, Window: hour}, formWord},
		{"leaky bucket 7/3s", algorithm.LeakyBucket, algorithm.Limit{Quota: 7, Window: 3_000_000}, formWord},
		{"sliding 2^20/minute", algorithm.SlidingWindow, algorithm.Limit{Quota: 1 << 20, Window: minute}, formExt},
		{"fixed 2^40/ms", algorithm.FixedWindow, algorithm.Limit{Quota: 1 << 40, Window: 1000}, formExt},
		{"sliding 2^40/ms", algorithm.SlidingWindow, algorithm.Limit{Quota: 1 << 40, Window: 1000}, formWide},
		{"token bucket 999983/s", algorithm.TokenBucket, algorithm.Limit{Quota: 999_983, Window: 1_000_000}, formExt},
		{"bucket smaller than quota", algorithm.TokenBucket, algorithm.Limit{Quota: 1_000_000, Window: 1000, Burst: 1}, formWide},
		{"unknown kind", algorithm.Kind(200), algorithm.Limit{Quota: 1, Window: minute}, formWide},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lay := newLayout(tc.kind, tc.limit)
			if lay.form != tc.want {
				t.Errorf("newLayout(%s, %+v).form = %d, want %d (bits %d+%d+%d)",
					tc.kind, tc.limit, lay.form, tc.want, lay.aBits, lay.bBits, lay.cBits)
			}
		})
	}
}

func TestLayoutRoundTripExact(t *testing.T) {
	t.Parallel()
	minute := time.Minute.Microseconds()
	l := algorithm.Limit{Quota: 100, Window: minute}
	odd := algorithm.Limit{Quota: 7, Window: 3_000_000, MaxWait: 5_000_000}
	tests := []struct {
		name  string
		kind  algorithm.Kind
		limit algorithm.Limit
		state algorithm.State
	}{
		{"fixed current window", algorithm.FixedWindow, l, algorithm.State{A: testBase, B: 100}},
		{"fixed window before base", algorithm.FixedWindow, l, algorithm.State{A: testBase - minute, B: 1}},
		{"fixed window after span", algorithm.FixedWindow, l, algorithm.State{A: testBase + 3*minute, B: 7}},
		{"sliding full", algorithm.SlidingWindow, l, algorithm.State{A: testBase + minute, B: 100, C: 100}},
		{"sliding empty current", algorithm.SlidingWindow, l, algorithm.State{A: testBase, B: 0, C: 55}},
		{"gcra at base", algorithm.GCRA, l, algorithm.State{A: testBase}},
		{"gcra far ahead", algorithm.GCRA, l, algorithm.State{A: testBase + rebaseSpan + minute}},
		{"gcra before base", algorithm.GCRA, l, algorithm.State{A: testBase - 12345}},
		{"gcra fraction", algorithm.GCRA, odd, algorithm.State{A: testBase + 999, B: 6}},
		{"queue fraction", algorithm.LeakyQueue, odd, algorithm.State{A: testBase + 8_000_000, B: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lay := newLayout(tc.kind, tc.limit)
			p, ok := lay.encode(tc.state, testBase)
			if !ok {
				t.Fatalf("encode(%+v) ok = false, want true", tc.state)
			}
			if got := lay.decode(p, testBase); got != tc.state {
				t.Fatalf("decode(encode(%+v)) = %+v", tc.state, got)
			}
		})
	}
}

func TestLayoutRoundTripRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	limits := []algorithm.Limit{
		{Quota: 100, Window: time.Minute.Microseconds()},
		{Quota: 7, Window: 3_000_000},
		{Quota: 1 << 20, Window: time.Minute.Microseconds()},
		{Quota: 1000, Window: time.Hour.Microseconds(), Burst: 50},
	}
	for _, l := range limits {
		for _, kind := range []algorithm.Kind{algorithm.FixedWindow, algorithm.SlidingWindow, algorithm.GCRA, algorithm.LeakyQueue} {
			lay := newLayout(kind, l)
			if lay.form == formWide {
				continue
			}
			for range 2000 {
				s := randomState(r, kind, l)
				p, ok := lay.encode(s, testBase)
				if !ok {
					t.Fatalf("%s %+v: encode(%+v) ok = false, want true", kind, l, s)
				}
				if got := lay.decode(p, testBase); got != s {
					t.Fatalf("%s %+v: decode(encode(%+v)) = %+v", kind, l, s, got)
				}
			}
		}
	}
}

// randomState returns a state that kind could hold relative to testBase
// within one rebase span.
func randomState(r *rand.Rand, kind algorithm.Kind, l algorithm.Limit) algorithm.State {
	now := testBase + r.Int64N(rebaseSpan)
	switch kind {
	case algorithm.FixedWindow, algorithm.SlidingWindow:
		start := now - now%l.Window - r.Int64N(2)*l.Window
		s := algorithm.State{A: start, B: r.Int64N(l.Quota + 1)}
		if kind == algorithm.SlidingWindow {
			s.C = r.Int64N(l.Quota + 1)
		}
		return s
	}
	unit := gcd(l.Window, l.Quota)
	ahead := r.Int64N(l.Capacity()*l.Window/l.Quota + 1)
	return algorithm.State{A: now + ahead, B: r.Int64N(l.Quota/unit) * unit}
}

func TestLayoutRejectsUnfitState(t *testing.T) {
	t.Parallel()
	minute := time.Minute.Microseconds()
	l := algorithm.Limit{Quota: 100, Window: minute}
	tests := []struct {
		name  string
		kind  algorithm.Kind
		state algorithm.State
	}{
		{"window start not aligned", algorithm.FixedWindow, algorithm.State{A: testBase + 1, B: 1}},
		{"count above quota bits", algorithm.FixedWindow, algorithm.State{A: testBase, B: 128}},
		{"negative count", algorithm.FixedWindow, algorithm.State{A: testBase, B: -1}},
		{"fixed window with C", algorithm.FixedWindow, algorithm.State{A: testBase, B: 1, C: 1}},
		{"window a day back", algorithm.SlidingWindow, algorithm.State{A: testBase - 24*60*minute, B: 1}},
		{"gcra a year ahead", algorithm.GCRA, algorithm.State{A: testBase + 365*24*60*minute}},
		{"gcra fraction off unit", algorithm.GCRA, algorithm.State{A: testBase, B: 1}},
		{"gcra with C", algorithm.GCRA, algorithm.State{A: testBase, C: 1}},
		{"bucket level above full", algorithm.TokenBucket, algorithm.State{A: testBase, B: 100*minute + 100}},
		{"bucket level off unit", algorithm.TokenBucket, algorithm.State{A: testBase, B: 150}},
		{"bucket full before base", algorithm.TokenBucket, algorithm.State{A: testBase - 2*minute, B: 100 * minute / 2}},
		{"bucket far ahead", algorithm.TokenBucket, algorithm.State{A: testBase + 100*rebaseSpan, B: minute}},
		{"time overflow", algorithm.GCRA, algorithm.State{A: -1 << 63}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lay := newLayout(tc.kind, l)
			if p, ok := lay.encode(tc.state, testBase); ok {
				t.Errorf("encode(%+v) = %+v, true; want false", tc.state, p)
			}
		})
	}
}

// TestBucketCanonicalKeepsFullTime checks the bucket encoding: the decoded
// state reaches a full bucket at the same instant, starts no later and has
// a level within the bucket.
func TestBucketCanonicalKeepsFullTime(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	limits := []algorithm.Limit{
		{Quota: 100, Window: time.Minute.Microseconds()},
		{Quota: 7, Window: 3_000_000},
		{Quota: 1000, Window: time.Hour.Microseconds(), Burst: 5},
		{Quota: 3, Window: 1000, Burst: 1},
	}
	for _, l := range limits {
		lay := newLayout(algorithm.TokenBucket, l)
		unit, full := gcd(l.Window, l.Quota), l.Capacity()*l.Window
		for range 5000 {
			s := algorithm.State{
				A: testBase + r.Int64N(rebaseSpan),
				B: r.Int64N(full/unit+1) * unit,
			}
			if s.B == 0 {
				s.B = unit
			}
			p, ok := lay.encode(s, testBase)
			if !ok {
				t.Fatalf("%+v: encode(%+v) ok = false, want true", l, s)
			}
			got := lay.decode(p, testBase)
			if got.A > s.A || got.B < 0 || got.B > full || got.C != 0 {
				t.Fatalf("%+v: decode(encode(%+v)) = %+v, want A ≤ %d and 0 ≤ B ≤ %d",
					l, s, got, s.A, full)
			}
			if (got.A-s.A)*l.Quota+got.B != s.B {
				t.Fatalf("%+v: decode(encode(%+v)) = %+v, full time differs", l, s, got)
			}
			if e, want := expiry(algorithm.TokenBucket, l, got), expiry(algorithm.TokenBucket, l, s); e != want {
				t.Fatalf("%+v: expiry(%+v) = %d, want %d", l, got, e, want)
			}
		}
	}
}

func TestShardKeepsUnfitStateExact(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, 1)
	l := perMinute(3)
	idx, lay, err := s.registry.lookup(algorithm.FixedWindow, l)
	if err != nil {
		t.Fatalf("lookup error: %v", err)
	}
	sh, h, now := &s.shards[0], s.hash("k"), testBase
	layouts := s.registry.snapshot()

	// Decide never starts a window off its boundary, but a state that does
	// not fit must survive unchanged whatever the reason.
	unfit := algorithm.State{A: testBase + 1, B: 2}
	sh.save(h, idx, lay, algorithm.FixedWindow, l, unfit, now, layouts)
	if got := sh.load(h, idx, lay, now); got != unfit {
		t.Fatalf("load after saving %+v = %+v", unfit, got)
	}
	if len(sh.wide) != 1 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 1, 1", len(sh.wide), sh.count)
	}

	fit := algorithm.State{A: testBase, B: 3}
	sh.save(h, idx, lay, algorithm.FixedWindow, l, fit, now, layouts)
	if got := sh.load(h, idx, lay, now); got != fit {
		t.Fatalf("load after saving %+v = %+v", fit, got)
	}
	if len(sh.wide) != 0 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 0, 1", len(sh.wide), sh.count)
	}

	sh.save(h, idx, lay, algorithm.FixedWindow, l, unfit, now, layouts)
	if got := sh.load(h, idx, lay, now); got != unfit {
		t.Fatalf("load after saving %+v again = %+v", unfit, got)
	}
	if len(sh.wide) != 1 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 1, 1", len(sh.wide), sh.count)
	}
}

func TestApplyHoldsTimeAfterClockStepBack(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 0, maxShards)
	c := check("k", perMinute(2))
	apply(t, s, c)
	apply(t, s, c)

	steps := []struct {
		name      string
		advance   time.Duration
		wantReset time.Duration
	}{
		{"10s on", 10 * time.Second, 50 * time.Second},
		{"30s back", -30 * time.Second, 50 * time.Second}, // held at 10s
		{"caught up", 20 * time.Second, 50 * time.Second},
		{"past the hold", 20 * time.Second, 40 * time.Second},
	}
	for _, step := range steps {
		clk.Advance(step.advance)
		d := apply(t, s, c)
		if d.Allowed {
			t.Fatalf("%s: request = %+v, want denied", step.name, d)
		}
		if d.ResetAfter != step.wantReset.Microseconds() {
			t.Fatalf("%s: ResetAfter = %d, want %d", step.name, d.ResetAfter, step.wantReset.Microseconds())
		}
	}
}

func TestApplyLimitWithoutCompactForm(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	c := store.Check{Key: "k", Algorithm: algorithm.SlidingWindow,
		Limit: algorithm.Limit{Quota: 1 << 40, Window: 1000}}
	out := make([]algorithm.Decision, 1)
	if ok, err := s.Apply(context.Background(), []store.Check{c}, 1<<40, out); !ok || err != nil {
		t.Fatalf("Apply(cost 2^40) = %v, %v, want true, nil", ok, err)
	}
	if ok, err := s.Apply(context.Background(), []store.Check{c}, 1, out); ok || err != nil {
		t.Fatalf("Apply(cost 1) = %v, %v, want false, nil", ok, err)
	}
	if n := wideLen(s); n != 1 {
		t.Fatalf("wide entries = %d, want 1", n)
	}
}

func TestApplyBeyondRegistryStaysExact(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	const limits = maxLayouts + 5
	for i := range limits {
		c := check(fmt.Sprintf("k%d", i), perMinute(int64(i+2)))
		for j := 0; j < i+2; j++ {
			if d := apply(t, s, c); !d.Allowed {
				t.Fatalf("limit %d request %d = %+v, want allowed", i, j+1, d)
			}
		}
		if d := apply(t, s, c); d.Allowed {
			t.Fatalf("limit %d request %d = %+v, want denied", i, i+3, d)
		}
	}
	if n := wideLen(s); n != limits-maxLayouts {
		t.Fatalf("wide entries = %d, want %d", n, limits-maxLayouts)
	}
}

func wideLen(s *Store) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.wide)
		sh.mu.Unlock()
	}
	return n
}

func TestApplySteadyStateAllocatesNothing(t *testing.T) {
	s := newTestStore(t, newTestClock(), 0, maxShards)
	requests := benchChecks(algorithm.SlidingWindow, 1000)
	for _, kind := range benchKinds {
		for _, r := range requests {
			r[0].Algorithm = kind
		}
		out := make([]algorithm.Decision, 1)
		ctx := context.Background()
		i := 0
		for range requests {
			s.Apply(ctx, requests[i], 1, out)
			i++
		}
		allocs := testing.AllocsPerRun(5000, func() {
			s.Apply(ctx, requests[i%len(requests)], 1, out)
			i++
		})
		if allocs != 0 {
			t.Errorf("Apply(%s) allocates %.1f times per call, want 0", kind, allocs)
		}
	}
}

// TestBucketCanonicalDecidesAlike checks that Decide treats a bucket state
// and its canonical form alike at every time from the state's A on: the
// same decision and, after a charge, the same next state.
func TestBucketCanonicalDecidesAlike(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	limits := []algorithm.Limit{
		{Quota: 100, Window: time.Minute.Microseconds()},
		{Quota: 7, Window: 3_000_000},
		{Quota: 1000, Window: time.Hour.Microseconds(), Burst: 5},
		{Quota: 10, Window: time.Second.Microseconds(), Burst: 30},
	}
	for _, kind := range []algorithm.Kind{algorithm.TokenBucket, algorithm.LeakyBucket} {
		for _, l := range limits {
			lay := newLayout(kind, l)
			unit, full := gcd(l.Window, l.Quota), l.Capacity()*l.Window
			refill := full / l.Quota
			for range 5000 {
				s := algorithm.State{A: testBase + r.Int64N(rebaseSpan), B: r.Int64N(full/unit+1) * unit}
				p, ok := lay.encode(s, testBase)
				if !ok {
					continue // a bucket full before the base is not stored
				}
				canonical := lay.decode(p, testBase)
				now := s.A + r.Int64N(2*refill+2)
				cost := r.Int64N(l.Capacity() + 2)
				wantState, want := algorithm.Decide(kind, s, now, l, cost)
				gotState, got := algorithm.Decide(kind, canonical, now, l, cost)
				// A request of cost 0 returns the state it was given.
				if got != want || (want.Allowed && cost > 0 && gotState != wantState) {
					t.Fatalf("%s %+v at %d cost %d:\nDecide(%+v) = %+v, %+v\nDecide(%+v) = %+v, %+v",
						kind, l, now, cost, s, wantState, want, canonical, gotState, got)
				}
			}
		}
	}
}
