package algorithm

// Decide applies algorithm k to state s at time now (Unix microseconds) for
// a request of the given cost, and returns the next state with the decision.
// It is a pure function: safe for concurrent use, no allocation, no clock.
//
// The returned state differs from s only when a request of positive cost is
// allowed. A denied request consumes nothing, and a request of cost 0 is
// always allowed, consumes nothing and reports the budget. Callers that check
// several rules at once keep the returned states only when every rule allows
// (all or nothing).
//
// A clock that steps backwards (now earlier than the times in s) never
// admits more than the later time did, and never yields a negative duration.
//
// The caller must pass a Limit that passed Validate. A Limit with a Quota or
// Window that is not positive, or an unknown Kind, is denied with
// ReasonInvalidLimit instead of dividing by zero. Other invalid limits may
// give wrong decisions but never panic.
func Decide(k Kind, s State, now int64, l Limit, cost int64) (State, Decision) {
	if l.Quota <= 0 || l.Window <= 0 {
		return s, Decision{Reason: ReasonInvalidLimit}
	}
	switch k {
	case SlidingWindow:
		return decideSlidingWindow(s, now, l, cost)
	case FixedWindow:
		return decideFixedWindow(s, now, l, cost)
	case TokenBucket, LeakyBucket:
		return decideBucket(s, now, l, cost)
	case LeakyQueue:
		return decideLeakyQueue(s, now, l, cost)
	case GCRA:
		return decideGCRA(s, now, l, cost)
	}
	return s, Decision{Reason: ReasonInvalidLimit}
}

// costReason returns the reason that rejects cost before any budget is
// looked at, or ReasonAllowed.
func costReason(cost, capacity int64) Reason {
	switch {
	case cost < 0:
		return ReasonInvalidCost
	case cost > capacity:
		return ReasonCostTooLarge
	}
	return ReasonAllowed
}

// The helpers below match the Lua twins exactly: Go's / and % truncate
// toward zero, as (a - math.fmod(a, b)) / b does on doubles below 2^53.

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// floorMod returns a - b×⌊a/b⌋, which lies in [0, b), for b > 0.
func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// ceilDiv returns ⌈a/b⌉ for a ≥ 0 and b > 0.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// clamp returns v limited to [lo, hi]. Stores hand back what they were
// given, but a corrupted or hand-edited state must not push the arithmetic
// past 2^53.
func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}
