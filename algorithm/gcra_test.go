package algorithm

import (
	"math/rand/v2"
	"testing"
)

func TestGCRATenPerTenSeconds(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 10, Window: 10 * second}
	var steps []step
	for i := int64(0); i < 10; i++ {
		steps = append(steps, step{"burst", 0, 1, allowed(9-i, (i+1)*second)})
	}
	steps = append(steps,
		step{"eleventh", 0, 1, limited(0, 10*second, 1*second)},
		step{"just before 1s", 1*second - 1, 1, limited(0, 9*second+1, 1)},
		step{"at 1s", 1 * second, 1, allowed(0, 10*second)},
		step{"again at 1s", 1 * second, 1, limited(0, 10*second, 1*second)},
		step{"free request", 1 * second, 0, allowed(0, 10*second)},
		step{"cost above capacity", 1 * second, 11, Decision{Reason: ReasonCostTooLarge, ResetAfter: 10 * second}},
		step{"negative cost", 1 * second, -1, Decision{Reason: ReasonInvalidCost, ResetAfter: 10 * second}},
		// TAT is 11 s: a cost of 5 needs TAT − now ≤ 5 s.
		step{"cost five", 5 * second, 5, limited(4, 6*second, 1*second)},
		step{"cost four", 5 * second, 4, allowed(0, 10*second)},
		step{"idle", 30 * second, 0, allowed(10, 0)},
	)
	runSteps(t, GCRA, l, State{}, steps)
}

func TestGCRAFractionalInterval(t *testing.T) {
	t.Parallel()
	// 7 per 3 s: T = 428571 + 3/7 µs, kept as A µs + B/7 µs.
	l := Limit{Quota: 7, Window: 3 * second, Burst: 1}
	s := runSteps(t, GCRA, l, State{}, []step{
		{"first", 0, 1, allowed(0, 428_572)},
		{"too soon", 428_571, 1, limited(0, 1, 1)},
		// It arrives 4/7 µs after the TAT, so the TAT restarts from it.
		{"second", 428_572, 1, allowed(0, 428_572)},
	})
	if want := (State{A: 857_143, B: 3}); s != want {
		t.Fatalf("state after two = %+v, want %+v", s, want)
	}
	s = runSteps(t, GCRA, l, s, []step{
		{"third too soon", 857_143, 1, limited(0, 1, 1)},
		{"third", 857_144, 1, allowed(0, 428_572)},
	})
	if want := (State{A: 1_285_715, B: 3}); s != want {
		t.Fatalf("state after three = %+v, want %+v", s, want)
	}
}

func TestLeakyQueueNginxBurstDelay(t *testing.T) {
	t.Parallel()
	// nginx: limit_req rate=5r/s burst=12 delay=8. The first request and 8
	// more pass at once, the next 4 wait 200 ms more each, then the queue is
	// full until one leaves.
	l := Limit{Quota: 5, Window: second, Burst: 13, Delay: 8}
	var steps []step
	for i := int64(0); i < 13; i++ {
		d := allowed(12-i, (i+1)*200*ms)
		if i > 8 {
			d.Wait = (i - 8) * 200 * ms
		}
		steps = append(steps, step{"burst", 0, 1, d})
	}
	steps = append(steps,
		step{"full", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 2600 * ms, RetryAfter: 200 * ms}},
		step{"one left", 200 * ms, 1, Decision{Allowed: true, ResetAfter: 2600 * ms, Wait: 800 * ms}},
	)
	runSteps(t, LeakyQueue, l, State{}, steps)
}

func TestLeakyQueueMaxWait(t *testing.T) {
	t.Parallel()
	// 2 per second, every excess request waits, at most 1 s.
	l := Limit{Quota: 2, Window: second, MaxWait: second}
	runSteps(t, LeakyQueue, l, State{}, []step{
		{"first", 0, 1, allowed(1, 500*ms)},
		// Capacity 2 would admit one more, waiting 500 ms.
		{"second waits", 0, 1, Decision{Allowed: true, ResetAfter: 1 * second, Wait: 500 * ms}},
		{"capacity full", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 1 * second, RetryAfter: 500 * ms}},
		{"free request", 100 * ms, 0, allowed(0, 900*ms)},
		{"cost above capacity", 0, 3, Decision{Reason: ReasonCostTooLarge, ResetAfter: 1 * second}},
	})

	// A larger queue than the wait allows: MaxWait decides.
	l = Limit{Quota: 2, Window: second, Burst: 10, MaxWait: second}
	runSteps(t, LeakyQueue, l, State{}, []step{
		{"first", 0, 1, allowed(2, 500*ms)},
		{"waits 500ms", 0, 1, Decision{Allowed: true, Remaining: 1, ResetAfter: 1 * second, Wait: 500 * ms}},
		{"waits 1s", 0, 1, Decision{Allowed: true, ResetAfter: 1500 * ms, Wait: 1 * second}},
		{"would wait 1.5s", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 1500 * ms, RetryAfter: 500 * ms}},
		// The wait depends on what is queued before, not on the cost.
		{"would wait 1.1s", 400 * ms, 2, Decision{Reason: ReasonQueueFull, ResetAfter: 1100 * ms, RetryAfter: 100 * ms}},
		{"cost two waits 1s", 500 * ms, 2, Decision{Allowed: true, ResetAfter: 2 * second, Wait: 1 * second}},
	})
}

// The reference below is the generic cell rate algorithm GCRA(I, L) as
// ITU-T Recommendation I.371 and the ATM Forum Traffic Management
// Specification 4.0 define it, in its two equivalent forms:
//
// Virtual scheduling: the first cell sets TAT to its arrival time ta. A
// cell arriving at ta with TAT < ta conforms and sets TAT = ta + I. One
// with TAT > ta + L does not conform and leaves TAT alone. Any other
// conforms and sets TAT = TAT + I.
//
// Continuous-state leaky bucket: the first cell sets the counter X = 0 and
// the last conformance time LCT = ta. A cell computes X' = X − (ta − LCT),
// with X' = 0 when negative. It does not conform when X' > L, and
// otherwise sets X = X' + I and LCT = ta.
//
// calm's GCRA with quota q per window w and capacity c is GCRA(w/q,
// (c−1)·w/q) for requests of cost 1. The references run on times scaled by
// q, so that I = w and L = (c−1)·w are integers.

type virtualScheduling struct {
	tat, increment, limit int64
	started               bool
}

func (v *virtualScheduling) arrive(ta int64) bool {
	if !v.started || v.tat < ta {
		v.started = true
		v.tat = ta + v.increment
		return true
	}
	if v.tat > ta+v.limit {
		return false
	}
	v.tat += v.increment
	return true
}

type continuousBucket struct {
	x, lct, increment, limit int64
	started                  bool
}

func (b *continuousBucket) arrive(ta int64) bool {
	if !b.started {
		b.started = true
		b.x, b.lct = 0, ta
	}
	x := max(b.x-(ta-b.lct), 0)
	if x > b.limit {
		return false
	}
	b.x, b.lct = x+b.increment, ta
	return true
}

// TestGCRAReferenceTrace checks GCRA(I = 1.5 s, L = 3 s) against a trace
// worked out by hand from the virtual scheduling rules, value by value:
// conformance and the TAT after each arrival.
func TestGCRAReferenceTrace(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 2, Window: 3 * second, Burst: 3} // I = 1.5 s, L = 2 × I
	tests := []struct {
		name    string
		at      int64 // arrival time ta
		conform bool
		tat     int64 // TAT after the arrival
	}{
		{"first cell sets TAT", 0, true, 1500 * ms},
		{"TAT 1.5 ≤ 0 + 3", 0, true, 3 * second},
		{"TAT 3 ≤ 0 + 3", 0, true, 4500 * ms},
		{"TAT 4.5 > 0 + 3", 0, false, 4500 * ms},
		{"TAT 4.5 > 1 + 3", 1 * second, false, 4500 * ms},
		{"TAT 4.5 ≤ 2 + 3", 2 * second, true, 6 * second},
		{"TAT 6 ≤ 4.5 + 3", 4500 * ms, true, 7500 * ms},
		{"TAT 7.5 ≤ 4.5 + 3", 4500 * ms, true, 9 * second},
		{"TAT 9 > 4.5 + 3", 4500 * ms, false, 9 * second},
		{"TAT 9 < 10 restarts", 10 * second, true, 11500 * ms},
		{"TAT 11.5 ≤ 10.1 + 3", 10100 * ms, true, 13 * second},
		{"TAT 13 ≤ 10.1 + 3", 10100 * ms, true, 14500 * ms},
		{"TAT 14.5 > 10.1 + 3", 10100 * ms, false, 14500 * ms},
	}
	var s State
	for i, tc := range tests {
		next, d := Decide(GCRA, s, epoch+tc.at, l, 1)
		if d.Allowed != tc.conform {
			t.Fatalf("arrival %d (%s): Allow(%d) = %v, want %v", i, tc.name, tc.at, d.Allowed, tc.conform)
		}
		if d.Allowed {
			s = next
		}
		if got := s.A - epoch; got != tc.tat || s.B != 0 {
			t.Fatalf("arrival %d (%s): TAT = %d + %d/q, want %d", i, tc.name, got, s.B, tc.tat)
		}
	}
}

// TestGCRAMatchesReference replays random traces through Decide and both
// reference forms, with rates that do not divide the window.
func TestGCRAMatchesReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 71))
	for trace := range 200 {
		q := 1 + r.Int64N(20)
		w := MinWindow + r.Int64N(10*second)
		c := 1 + r.Int64N(12)
		l := Limit{Quota: q, Window: w, Burst: c}
		vs := virtualScheduling{increment: w, limit: (c - 1) * w}
		lb := continuousBucket{increment: w, limit: (c - 1) * w}

		var s State
		now := int64(0)
		for i := range 300 {
			now += r.Int64N(2*w/q + 1)
			next, d := Decide(GCRA, s, epoch+now, l, 1)
			wantVS, wantLB := vs.arrive(now*q), lb.arrive(now*q)
			if d.Allowed != wantVS || d.Allowed != wantLB {
				t.Fatalf("trace %d (%+v) arrival %d at %d: Allow = %v, virtual scheduling %v, leaky bucket %v",
					trace, l, i, now, d.Allowed, wantVS, wantLB)
			}
			if d.Allowed {
				s = next
			}
			if got := (s.A-epoch)*q + s.B; got != vs.tat {
				t.Fatalf("trace %d (%+v) arrival %d: TAT×q = %d, reference %d", trace, l, i, got, vs.tat)
			}
		}
	}
}

func TestGCRAClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 2, Window: 2 * second, Burst: 2}
	s := runSteps(t, GCRA, l, State{}, []step{
		{"burst", 10 * second, 2, allowed(0, 2*second)},
	})
	runSteps(t, GCRA, l, s, []step{
		// The TAT (12 s) stays put: from 5 s the wait includes the step.
		{"back", 5 * second, 1, limited(0, 7*second, 6*second)},
		{"free back", 5 * second, 0, allowed(0, 7*second)},
		{"forward", 11 * second, 1, allowed(0, 2*second)},
	})
}

func TestLeakyQueueClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 2, Window: 2 * second, Burst: 2}
	s := runSteps(t, LeakyQueue, l, State{}, []step{
		{"first", 10 * second, 1, allowed(1, 1*second)},
		{"second waits", 10 * second, 1, Decision{Allowed: true, ResetAfter: 2 * second, Wait: 1 * second}},
	})
	runSteps(t, LeakyQueue, l, s, []step{
		{"back", 5 * second, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 7 * second, RetryAfter: 6 * second}},
		{"forward", 11 * second, 1, Decision{Allowed: true, ResetAfter: 2 * second, Wait: 1 * second}},
	})
}

func TestLeakyQueueLongestWait(t *testing.T) {
	t.Parallel()
	// Without MaxWait the capacity bounds the wait to
	// (capacity − 1 − Delay) × Window/Quota: here (6 − 1 − 2) × 250 ms.
	l := Limit{Quota: 4, Window: second, Burst: 6, Delay: 2}
	var s State
	var longest int64
	for range 6 {
		next, d := Decide(LeakyQueue, s, epoch, l, 1)
		if !d.Allowed {
			t.Fatalf("Decide = %+v, want allowed", d)
		}
		s, longest = next, max(longest, d.Wait)
	}
	if want := 750 * ms; longest != want {
		t.Errorf("longest wait = %d, want %d", longest, want)
	}
	if _, d := Decide(LeakyQueue, s, epoch, l, 1); d.Reason != ReasonQueueFull {
		t.Errorf("seventh request: Decide = %+v, want %v", d, ReasonQueueFull)
	}
}
