package algorithm

import "testing"

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
	// 7 per 3 s: one token per 428571.43 µs, kept exactly as 3 000 000
	// token·µs per token refilled at 7 per µs.
	l := Limit{Quota: 7, Window: 3 * second}
	runSteps(t, TokenBucket, l, State{}, []step{
		{"burst", 0, 7, allowed(0, 3*second)},
		{"just short", 428_571, 1, limited(0, 3*second-428_571, 1)},
		{"one token", 428_572, 1, allowed(0, 3*second)},
		// 4 token·µs short of two tokens: 857 142 µs × 7 = 5 999 994.
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
		// The bucket refills from 10 s, whatever the earlier now.
		{"back", 5 * second, 1, limited(0, 7*second, 6*second)},
		{"free back", 5 * second, 0, allowed(0, 7*second)},
		{"forward", 11 * second, 1, allowed(0, 2*second)},
	})
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
