package algorithm

import (
	"math/rand/v2"
	"testing"
)

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 10, Window: 10 * second} // 1 token per second
	runSteps(t, TokenBucket, l, State{}, []step{
		{"burst", 0, 10, allowed(0, 10*second)},
		{"empty", 0, 1, limited(0, 10*second, 1*second)},
		{"half a token", 500 * ms, 1, limited(0, 9*second+500*ms, 500*ms)},
		{"one token", 1 * second, 1, allowed(0, 10*second)},
		{"four tokens", 5 * second, 4, allowed(0, 10*second)},
		{"free request", 7 * second, 0, allowed(2, 8*second)},
		{"cost above capacity", 7 * second, 11, Decision{Reason: ReasonCostTooLarge, Remaining: 2, ResetAfter: 8 * second}},
		{"negative cost", 7 * second, -1, Decision{Reason: ReasonInvalidCost, Remaining: 2, ResetAfter: 8 * second}},
		{"cost three waits", 7 * second, 3, limited(2, 8*second, 1*second)},
		{"full again", 20 * second, 0, allowed(10, 0)},
		{"full cost", 20 * second, 10, allowed(0, 10*second)},
	})
}

func TestTokenBucketBurst(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 1, Window: second, Burst: 3}
	runSteps(t, TokenBucket, l, State{}, []step{
		{"burst of three", 0, 3, allowed(0, 3*second)},
		{"refill one", 1 * second, 1, allowed(0, 3*second)},
		{"cost four", 1 * second, 4, Decision{Reason: ReasonCostTooLarge, ResetAfter: 3 * second}},
	})
}

func TestTokenBucketFractionalRate(t *testing.T) {
	t.Parallel()
	// 7 per 3 s: one token per 428 571 3/7 µs, kept exactly as whole µs
	// plus sevenths of a µs.
	l := Limit{Quota: 7, Window: 3 * second}
	runSteps(t, TokenBucket, l, State{}, []step{
		{"burst", 0, 7, allowed(0, 3*second)},
		{"just short", 428_571, 1, limited(0, 3*second-428_571, 1)},
		{"one token", 428_572, 1, allowed(0, 3*second)},
		// 6/7 µs short of the refill time of two tokens, 857 142 6/7 µs.
		{"two tokens short", 428_572 + 857_142, 2, limited(1, 2_142_858, 1)},
		{"two tokens", 428_572 + 857_143, 2, allowed(0, 3*second)},
	})
}

func TestTokenBucketClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 2, Window: 2 * second}
	s := runSteps(t, TokenBucket, l, State{}, []step{
		{"empty it", 10 * second, 2, allowed(0, 2*second)},
	})
	runSteps(t, TokenBucket, l, s, []step{
		// The bucket is full again at 12 s, whatever the earlier now.
		{"back", 5 * second, 1, limited(0, 7*second, 6*second)},
		{"free back", 5 * second, 0, allowed(0, 7*second)},
		{"forward", 11 * second, 1, allowed(0, 2*second)},
	})

	s = runSteps(t, TokenBucket, l, State{}, []step{
		{"one of two", 10 * second, 1, allowed(1, 1*second)},
	})
	runSteps(t, TokenBucket, l, s, []step{
		// As in GCRA, the step back counts as deficit still to refill:
		// the token left at 10 s is not there at 9 s.
		{"back one second", 9 * second, 1, limited(0, 2*second, 1*second)},
		{"back to the charge", 10 * second, 1, allowed(0, 2*second)},
	})
}

func TestTokenBucketState(t *testing.T) {
	t.Parallel()
	// 7 per 3 s: the state is the time at which the bucket is full again,
	// in whole µs plus sevenths of a µs.
	l := Limit{Quota: 7, Window: 3 * second}
	tests := []struct {
		name string
		at   int64
		cost int64
		want State
	}{
		{"first token", 0, 1, State{A: 428_571, B: 3}},
		{"second token", 0, 1, State{A: 857_142, B: 6}},
		{"third token", 0, 1, State{A: 1_285_714, B: 2}},
		{"refilled meanwhile", 2 * second, 2, State{A: 2*second + 857_142, B: 6}},
	}
	var s State
	for _, tc := range tests {
		next, d := Decide(TokenBucket, s, tc.at, l, tc.cost)
		if !d.Allowed {
			t.Fatalf("%s: Decide(t=%d, cost=%d) = %+v, want allowed", tc.name, tc.at, tc.cost, d)
		}
		if next != tc.want {
			t.Fatalf("%s: state = %+v, want %+v", tc.name, next, tc.want)
		}
		s = next
	}
}

func TestLeakyBucket(t *testing.T) {
	t.Parallel()
	// A meter: 5 units of room draining at 1 per 200 ms.
	l := Limit{Quota: 5, Window: second}
	runSteps(t, LeakyBucket, l, State{}, []step{
		{"fill", 0, 5, allowed(0, 1*second)},
		{"full", 100 * ms, 1, limited(0, 900*ms, 100*ms)},
		{"one leaked", 200 * ms, 1, allowed(0, 1*second)},
		{"three leaked", 800 * ms, 3, allowed(0, 1*second)},
		{"empty", 5 * second, 0, allowed(5, 0)},
	})
}

func TestLeakyBucketClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 5, Window: second}
	s := runSteps(t, LeakyBucket, l, State{}, []step{
		{"two units", 10 * second, 2, allowed(3, 400*ms)},
	})
	runSteps(t, LeakyBucket, l, s, []step{
		// The bucket is empty again at 10.4 s: from 9.9 s the level
		// counts 500 ms of drain still ahead, 2.5 units.
		{"back", 9*second + 900*ms, 0, allowed(2, 500*ms)},
		{"back, cost 3", 9*second + 900*ms, 3, limited(2, 500*ms, 100*ms)},
		{"at the charge", 10 * second, 3, allowed(0, 1*second)},
	})
}

// levelBucket is a reference token bucket in its textbook form: the
// deficit (tokens × Window) at the time of the last charge, refilled by
// Quota per microsecond.
type levelBucket struct {
	at, level int64
}

func (b *levelBucket) decide(now int64, l Limit, cost int64) Decision {
	q, w, c := l.Quota, l.Window, l.Capacity()
	full := c * w
	at, level := b.at, b.level
	if now > at {
		level = max(level-min(now-at, full/q+1)*q, 0)
		at = now
	}
	resetAfter := func(level int64) int64 {
		if level == 0 {
			return 0
		}
		return at - now + ceilDiv(level, q)
	}

	d := Decision{Limit: c, Reason: costReason(cost, c)}
	if d.Reason == ReasonAllowed && cost*w > full-level {
		d.Reason = ReasonLimited
		d.RetryAfter = at - now + ceilDiv(level-(full-cost*w), q)
	}
	d.Allowed = d.Reason == ReasonAllowed
	if d.Allowed && cost > 0 {
		level += cost * w
		b.at, b.level = at, level
	}
	d.Remaining = (full - level) / w
	d.ResetAfter = resetAfter(level)
	return d
}

// TestBucketMatchesLevelForm replays random traces through the buckets and
// through levelBucket. While the clock moves forward every decision must
// match, and the TAT must be the last charge plus the deficit's refill
// time: A + B/Quota = at + level/Quota.
func TestBucketMatchesLevelForm(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 8))
	for trace := range 300 {
		l := randomLimit(r)
		kind := TokenBucket
		if trace%2 == 1 {
			kind = LeakyBucket
		}
		var s State
		var ref levelBucket
		for i, e := range randomTrace(r, l, epoch, 200, false) {
			next, got := Decide(kind, s, e.now, l, e.cost)
			if want := ref.decide(e.now, l, e.cost); got != want {
				t.Fatalf("trace %d (%v %+v) step %d, now %d, cost %d: Decide = %+v, level form %+v",
					trace, kind, l, i, e.now, e.cost, got, want)
			}
			s = next
			if ref.level > 0 && (s.A != ref.at+ref.level/l.Quota || s.B != ref.level%l.Quota) {
				t.Fatalf("trace %d (%v %+v) step %d: state %+v, want the TAT of level %d at %d",
					trace, kind, l, i, s, ref.level, ref.at)
			}
		}
	}
}
