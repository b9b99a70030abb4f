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

// Short names for test tables.
const (
	sw   = algorithm.SlidingWindow
	fw   = algorithm.FixedWindow
	tb   = algorithm.TokenBucket
	lb   = algorithm.LeakyBucket
	lq   = algorithm.LeakyQueue
	gcra = algorithm.GCRA
)

type (
	lim   = algorithm.Limit
	state = algorithm.State
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
		{"sliding 100/minute", sw, lim{Quota: 100, Window: minute}, formWord},
		{"fixed 100/minute", fw, lim{Quota: 100, Window: minute}, formWord},
		{"gcra 100/minute", gcra, lim{Quota: 100, Window: minute}, formWord},
		{"gcra 1000/hour", gcra, lim{Quota: 1000, Window: hour}, formWord},
		{"gcra 7/3s", gcra, lim{Quota: 7, Window: 3_000_000}, formWord},
		{"gcra 1/day", gcra, lim{Quota: 1, Window: 24 * hour}, formWord},
		{"queue with max wait", lq, lim{Quota: 10, Window: minute, MaxWait: minute}, formWord},
		{"token bucket 100/minute", tb, lim{Quota: 100, Window: minute}, formWord},
		{"token bucket 1000/hour", tb, lim{Quota: 1000, Window: hour}, formWord},
		{"token bucket burst", tb, lim{Quota: 10, Window: 1_000_000, Burst: 1000}, formWord},
		{"leaky bucket 7/3s", lb, lim{Quota: 7, Window: 3_000_000}, formWord},
		{"leaky bucket 1/day", lb, lim{Quota: 1, Window: 24 * hour}, formWord},
		{"sliding 2^20/minute", sw, lim{Quota: 1 << 20, Window: minute}, formExt},
		{"fixed 2^40/ms", fw, lim{Quota: 1 << 40, Window: 1000}, formExt},
		{"sliding 2^40/ms", sw, lim{Quota: 1 << 40, Window: 1000}, formWide},
		{"token bucket 999983/s", tb, lim{Quota: 999_983, Window: 1_000_000}, formExt},
		{"bucket 2^40/ms", tb, lim{Quota: 1 << 40, Window: 1000}, formExt},
		{"bucket 2^43-1/ms", lb, lim{Quota: 1<<43 - 1, Window: 1000}, formWide},
		{"unknown kind", algorithm.Kind(200), lim{Quota: 1, Window: minute}, formWide},
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
		{"fixed current window", fw, l, state{A: testBase, B: 100}},
		{"fixed window before base", fw, l, state{A: testBase - minute, B: 1}},
		{"fixed window after span", fw, l, state{A: testBase + 3*minute, B: 7}},
		{"sliding full", sw, l, state{A: testBase + minute, B: 100, C: 100}},
		{"sliding empty current", sw, l, state{A: testBase, B: 0, C: 55}},
		{"gcra at base", gcra, l, state{A: testBase}},
		{"gcra far ahead", gcra, l, state{A: testBase + rebaseSpan + minute}},
		{"gcra fraction", gcra, odd, state{A: testBase + 999, B: 6}},
		{"queue fraction", lq, odd, state{A: testBase + 8_000_000, B: 3}},
		{"token bucket empty", tb, l, state{A: testBase + minute}},
		{"token bucket full at base", tb, l, state{A: testBase}},
		{"leaky bucket fraction", lb, odd, state{A: testBase + 17, B: 6}},
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

// TestLayoutRejectsStatesBeforeBase checks that a bucket state whose time
// lies before the base does not encode. The store writes such states only
// after its clock stepped back behind the base, and keeps them in the wide
// map unchanged.
func TestLayoutRejectsStatesBeforeBase(t *testing.T) {
	t.Parallel()
	l := algorithm.Limit{Quota: 100, Window: time.Minute.Microseconds()}
	for _, kind := range []algorithm.Kind{gcra, tb, lb, lq} {
		lay := newLayout(kind, l)
		s := state{A: testBase - 1}
		if _, ok := lay.encode(s, testBase); ok {
			t.Errorf("%s: encode(%+v) at base %d ok = true, want false", kind, s, testBase)
		}
	}
	lay := newLayout(sw, l)
	s := state{A: testBase - 2*time.Minute.Microseconds(), B: 1}
	if _, ok := lay.encode(s, testBase); ok {
		t.Errorf("%s: encode(%+v) at base %d ok = true, want false", sw, s, testBase)
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
		for _, kind := range benchKinds {
			lay := newLayout(kind, l)
			if lay.form == formWide {
				continue
			}
			for range 2000 {
				s := randomState(r, kind, l)
				p, ok := lay.encode(s, testBase)
				checkPackerAgrees(t, &lay, s, testBase, p, ok)
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
	unit, refill := gcd(l.Window, l.Quota), l.Capacity()*l.Window/l.Quota
	return algorithm.State{A: now + r.Int64N(refill+1), B: r.Int64N(l.Quota/unit) * unit}
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
		{"window start not aligned", fw, state{A: testBase + 1, B: 1}},
		{"count above quota bits", fw, state{A: testBase, B: 128}},
		{"negative count", fw, state{A: testBase, B: -1}},
		{"fixed window with C", fw, state{A: testBase, B: 1, C: 1}},
		{"window a day back", sw, state{A: testBase - 24*60*minute, B: 1}},
		{"gcra a year ahead", gcra, state{A: testBase + 365*24*60*minute}},
		{"gcra fraction off unit", gcra, state{A: testBase, B: 1}},
		{"gcra with C", gcra, state{A: testBase, C: 1}},
		{"bucket fraction off unit", tb, state{A: testBase, B: 150}},
		{"bucket fraction of a quota", lb, state{A: testBase, B: 100}},
		{"bucket a day back", tb, state{A: testBase - 24*60*minute}},
		{"bucket far ahead", tb, state{A: testBase + 100*rebaseSpan}},
		{"time overflow", gcra, state{A: -1 << 63}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lay := newLayout(tc.kind, l)
			p, ok := lay.encode(tc.state, testBase)
			checkPackerAgrees(t, &lay, tc.state, testBase, p, ok)
			if ok {
				t.Errorf("encode(%+v) = %+v, true; want false", tc.state, p)
			}
		})
	}
}

func TestShardKeepsUnfitStateExact(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, 1)
	l := perMinute(3)
	idx, lay, err := s.registry.lookup(algorithm.FixedWindow, &l)
	if err != nil {
		t.Fatalf("lookup error: %v", err)
	}
	sh, h, now := &s.shards[0], s.hash("k"), testBase
	layouts := s.registry.snapshot()

	// Decide never starts a window off its boundary, but a state that does
	// not fit must survive unchanged whatever the reason.
	unfit := algorithm.State{A: testBase + 1, B: 2}
	sh.save(h, idx, lay, algorithm.FixedWindow, l, unfit, layouts)
	if got := sh.load(h, algorithm.FixedWindow, now, layouts); got != unfit {
		t.Fatalf("load after saving %+v = %+v", unfit, got)
	}
	if len(sh.wide) != 1 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 1, 1", len(sh.wide), sh.count)
	}

	fit := algorithm.State{A: testBase, B: 3}
	sh.save(h, idx, lay, algorithm.FixedWindow, l, fit, layouts)
	if got := sh.load(h, algorithm.FixedWindow, now, layouts); got != fit {
		t.Fatalf("load after saving %+v = %+v", fit, got)
	}
	if len(sh.wide) != 0 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 0, 1", len(sh.wide), sh.count)
	}

	sh.save(h, idx, lay, algorithm.FixedWindow, l, unfit, layouts)
	if got := sh.load(h, algorithm.FixedWindow, now, layouts); got != unfit {
		t.Fatalf("load after saving %+v again = %+v", unfit, got)
	}
	if len(sh.wide) != 1 || sh.count != 1 {
		t.Fatalf("wide entries, count = %d, %d; want 1, 1", len(sh.wide), sh.count)
	}
}

func TestApplySharesKeyStateAcrossLimits(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	apply(t, s, check("k", perMinute(3)))
	apply(t, s, check("k", perMinute(3)))

	// The key identifies the state: a limit that changes for the key, here
	// from 3 to 5 per minute, counts what the earlier limit counted.
	if d := apply(t, s, check("k", perMinute(5))); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("request under 5/minute = %+v, want allowed with remaining 2", d)
	}

	// A key whose algorithm changes starts afresh.
	gcra := store.Check{Key: "k", Algorithm: algorithm.GCRA, Limit: perMinute(5)}
	if d := apply(t, s, gcra); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("request under gcra = %+v, want allowed with remaining 4", d)
	}
	if d := apply(t, s, check("k", perMinute(5))); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("request under fixed window again = %+v, want allowed with remaining 4", d)
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

// TestExpiryDecidesAsZeroState checks expiry against the algorithms: at
// and after its expiry a state decides as the zero State does, so the
// store may forget it.
func TestExpiryDecidesAsZeroState(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	limits := []algorithm.Limit{
		{Quota: 100, Window: time.Minute.Microseconds()},
		{Quota: 7, Window: 3_000_000, Burst: 3},
		{Quota: 5, Window: time.Minute.Microseconds(), Delay: 2, MaxWait: 20_000_000},
	}
	for _, kind := range benchKinds {
		for _, l := range limits {
			for range 3000 {
				s := randomState(r, kind, l)
				e := expiry(kind, l.Window, s)
				now := e + r.Int64N(3)*r.Int64N(l.Window)
				cost := r.Int64N(l.Capacity() + 2)
				gotState, got := algorithm.Decide(kind, s, now, l, cost)
				wantState, want := algorithm.Decide(kind, algorithm.State{}, now, l, cost)
				if got != want || (got.Allowed && cost > 0 && gotState != wantState) {
					t.Fatalf("%s %+v: Decide(%+v at its expiry %d + %d, cost %d) = %+v, %+v; "+
						"zero State gives %+v, %+v",
						kind, l, s, e, now-e, cost, gotState, got, wantState, want)
				}
			}
		}
	}
}

// FuzzLayoutRoundTrip checks that every state a layout accepts decodes to
// itself relative to the same base, so a packed form never changes a value.
func FuzzLayoutRoundTrip(f *testing.F) {
	minute := time.Minute.Microseconds()
	f.Add(uint8(tb), int64(100), minute, int64(0), int64(0), testBase+minute, int64(0), int64(0), testBase)
	f.Add(uint8(lb), int64(7), int64(3_000_000), int64(3), int64(0), testBase+999, int64(6), int64(0), testBase)
	f.Add(uint8(lq), int64(10), minute, int64(0), minute, testBase-5, int64(0), int64(0), testBase)
	f.Add(uint8(sw), int64(100), minute, int64(0), int64(0), testBase, int64(100), int64(7), testBase)
	f.Add(uint8(fw), int64(1<<40), int64(1000), int64(0), int64(0), testBase, int64(1<<39), int64(0), testBase)
	f.Fuzz(func(t *testing.T, kind uint8, quota, window, burst, maxWait, a, b, c, base int64) {
		l := algorithm.Limit{Quota: quota, Window: window, Burst: burst, MaxWait: maxWait}
		if l.Validate() != nil {
			return
		}
		lay := newLayout(algorithm.Kind(kind), l)
		s := algorithm.State{A: a, B: b, C: c}
		p, ok := lay.encode(s, base)
		checkPackerAgrees(t, &lay, s, base, p, ok)
		if !ok {
			return
		}
		if got := lay.decode(p, base); got != s {
			t.Fatalf("%v %+v, base %d: decode(encode(%+v)) = %+v", algorithm.Kind(kind), l, base, s, got)
		}
	})
}

// checkPackerAgrees checks that a formWord layout, which encodes and
// decodes with its own shifts, gives the payload and state that the
// packer gives for the same fields.
func checkPackerAgrees(t *testing.T, lay *layout, s algorithm.State, base int64, p payload,
	ok bool) {
	t.Helper()
	if lay.form != formWord {
		return
	}
	packed := *lay
	packed.form = formExt
	wantP, wantOK := packed.encode(s, base)
	if ok != wantOK || (ok && p != wantP) {
		t.Fatalf("%v %+v, base %d: encode(%+v) = %+v, %v; the packer gives %+v, %v",
			lay.kind, lay.limit, base, s, p, ok, wantP, wantOK)
	}
	if ok {
		if got, want := lay.decode(p, base), packed.decode(p, base); got != want {
			t.Fatalf("%v %+v, base %d: decode(%+v) = %+v; the packer gives %+v",
				lay.kind, lay.limit, base, p, got, want)
		}
	}
}

// TestApplyAcrossClockStepsStaysExact charges one key through clock steps
// back behind the shard's base, forward past rebases and back again, with
// a sweep before each request, under rules whose slots differ in width.
// After a step back, states before the base no longer fit their unsigned
// fields and go to the wide map. After a step forward they return to a
// slot. Every decision must equal Decide's on the exact state.
func TestApplyAcrossClockStepsStaysExact(t *testing.T) {
	t.Parallel()
	minute, hour := time.Minute.Microseconds(), time.Hour.Microseconds()
	limits := []algorithm.Limit{
		{Quota: 1, Window: hour},
		{Quota: 3, Window: 24 * hour},
		{Quota: 100, Window: minute},
		{Quota: 1 << 20, Window: minute},
	}
	span := rebaseSpan * time.Microsecond
	// A step of cost 0 sweeps and reads without writing. So after span/2
	// at cost 0 the sweeper has moved the base past the state, which
	// expired, and the request after -span/3 writes a state from before
	// the base.
	steps := []struct {
		by   time.Duration
		cost int64
	}{
		{0, 1}, {-2 * span, 2}, {time.Millisecond, 3}, {-time.Minute, 1}, {span / 2, 2},
		{3 * span, 3}, {-time.Hour, 1}, {time.Hour + time.Millisecond, 2}, {span + 1, 3},
		{span / 2, 0}, {-span / 3, 1}, {time.Minute, 2}, {-20 * time.Minute, 3},
		{25 * time.Hour, 0}, {-span - 1, 1}, {time.Second, 2}, {time.Hour, 3},
	}
	for _, kind := range benchKinds {
		for _, l := range limits {
			t.Run(fmt.Sprintf("%s/%d per %ds", kind, l.Quota, l.Window/1e6), func(t *testing.T) {
				t.Parallel()
				clk := newTestClock()
				s := newTestStore(t, clk, 100, 1)
				c := store.Check{Key: "k", Algorithm: kind, Limit: l}
				var st algorithm.State
				out := make([]algorithm.Decision, 1)
				for round := range 3 {
					for i, step := range steps {
						clk.Advance(step.by)
						now := clk.Now().UnixMicro()
						s.sweep()
						if expiry(kind, l.Window, st) <= now {
							st = algorithm.State{} // the sweep dropped it
						}
						cost := step.cost
						next, want := algorithm.Decide(kind, st, now, l, cost)
						if _, err := s.Apply(context.Background(), []store.Check{c}, cost, out); err != nil {
							t.Fatalf("round %d step %d: Apply error: %v", round, i, err)
						}
						if out[0] != want {
							t.Fatalf("round %d step %d (%s) at %d, cost %d: decision %+v, want %+v",
								round, i, step.by, now, cost, out[0], want)
						}
						if want.Allowed {
							st = next
						}
					}
				}
				checkInvariants(t, s)
			})
		}
	}
}
