package algorithm

import "testing"

func TestFixedWindow(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 3, Window: 10 * second}
	runSteps(t, FixedWindow, l, State{}, []step{
		{"first", 0, 1, allowed(2, 10*second)},
		{"second", 5 * second, 1, allowed(1, 5*second)},
		{"last microsecond", 10*second - 1, 1, allowed(0, 1)},
		{"over quota", 10*second - 1, 1, limited(0, 1, 1)},
		{"next window", 10 * second, 1, allowed(2, 10*second)},
		{"free request", 10 * second, 0, allowed(2, 10*second)},
		{"cost above quota", 12 * second, 4, Decision{Reason: ReasonCostTooLarge, Remaining: 2, ResetAfter: 8 * second}},
		{"negative cost", 12 * second, -1, Decision{Reason: ReasonInvalidCost, Remaining: 2, ResetAfter: 8 * second}},
		{"cost two", 15 * second, 2, allowed(0, 5*second)},
		{"cost one over", 15 * second, 1, limited(0, 5*second, 5*second)},
		{"free when spent", 15 * second, 0, allowed(0, 5*second)},
		{"window skipped", 45 * second, 3, allowed(0, 5*second)},
	})
}

func TestFixedWindowClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 2, Window: 10 * second}
	s := runSteps(t, FixedWindow, l, State{}, []step{
		{"fill window", 25 * second, 2, allowed(0, 5*second)},
	})
	runSteps(t, FixedWindow, l, s, []step{
		// Back into the previous window: the budget of the stored window
		// still counts and the reset is measured from the earlier now.
		{"back one window", 15 * second, 1, limited(0, 15*second, 15*second)},
		{"back within window", 21 * second, 1, limited(0, 9*second, 9*second)},
		{"forward again", 30 * second, 1, allowed(1, 10*second)},
	})
}

func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 10, Window: 10 * second}
	runSteps(t, SlidingWindow, l, State{}, []step{
		{"first", 1 * second, 4, allowed(6, 19*second)},
		{"fill", 9 * second, 6, allowed(0, 11*second)},
		// 10 in this window: the next window must weigh them down to 9,
		// which happens 1 s into it.
		{"over quota", 9*second + 500*ms, 1, limited(0, 10*second+500*ms, 1*second+500*ms)},
		{"weight still 10", 11*second - 1, 1, limited(0, 9*second+1, 1)},
		{"weight 9", 11 * second, 1, allowed(0, 19*second)},
		// prev 10, current 1: at 15 s the estimate is 5 + 1.
		{"half weight", 15 * second, 4, allowed(0, 15*second)},
		{"needs weight 4", 15 * second, 1, limited(0, 15*second, 1*second)},
		{"free request", 16 * second, 0, allowed(1, 14*second)},
		{"cost above quota", 16 * second, 11, Decision{Reason: ReasonCostTooLarge, Remaining: 1, ResetAfter: 14 * second}},
		{"negative cost", 16 * second, -3, Decision{Reason: ReasonInvalidCost, Remaining: 1, ResetAfter: 14 * second}},
		// prev 5 at 25 s: estimate ⌈5 × 5/10⌉ = 3.
		{"rounded up", 25 * second, 7, allowed(0, 15*second)},
		{"two windows idle", 50 * second, 10, allowed(0, 20*second)},
		// current 10, quota 10, cost 10: wait for the whole next window.
		{"full cost waits two windows", 51 * second, 10, limited(0, 19*second, 19*second)},
		{"window after next", 70 * second, 10, allowed(0, 20*second)},
	})
}

func TestSlidingWindowPreviousOnly(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 4, Window: 4 * second}
	s := runSteps(t, SlidingWindow, l, State{}, []step{
		{"fill", 3 * second, 4, allowed(0, 5*second)},
	})
	runSteps(t, SlidingWindow, l, s, []step{
		// prev 4 weighs ⌈4 × 3/4⌉ = 3 at 5 s. A cost of 2 needs it at 2, so
		// 4 × (4 − e) ≤ 2 × 4 gives e = 2 s, 1 s from now.
		{"cost two", 5 * second, 2, limited(1, 3*second, 1*second)},
		{"cost one", 5 * second, 1, allowed(0, 7*second)},
		{"free request", 6 * second, 0, allowed(1, 6*second)},
	})
}

func TestSlidingWindowClockBack(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 4, Window: 10 * second}
	s := runSteps(t, SlidingWindow, l, State{}, []step{
		{"fill", 9 * second, 4, allowed(0, 11*second)},
		{"next window", 15 * second, 2, allowed(0, 15*second)},
	})
	runSteps(t, SlidingWindow, l, s, []step{
		// Back to 9 s: the stored window (10 s) counts with its previous
		// window at full weight, so nothing is admitted again. The previous
		// 4 must weigh 1 for a cost of 1 to fit, 7.5 s into the window.
		{"back a window", 9 * second, 1, limited(0, 21*second, 8*second+500*ms)},
		{"far back", 0, 1, limited(0, 30*second, 17*second+500*ms)},
		{"free request far back", 0, 0, allowed(0, 30*second)},
		{"forward", 20 * second, 1, allowed(1, 20*second)},
	})
}
