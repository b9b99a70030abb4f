package algorithm

// Decide applies algorithm k to state s at time now (Unix microseconds) for
// a request of the given cost, and returns the next state with the decision.
// When the decision denies the request, the returned state equals s: a denied
// request consumes nothing. Callers that check several rules at once keep the
// returned states only when every rule allows (all or nothing).
//
// The caller must pass a Limit that passed Validate.
func Decide(k Kind, s State, now int64, l Limit, cost int64) (State, Decision) {
	// NOTE: placeholder fixed window for every kind until each algorithm lands.
	return decideFixedWindow(s, now, l, cost)
}

func decideFixedWindow(s State, now int64, l Limit, cost int64) (State, Decision) {
	start := now - now%l.Window
	if start < s.A {
		start = s.A
	}
	used := int64(0)
	if s.A == start {
		used = s.B
	}
	d := Decision{Limit: l.Quota, ResetAfter: start + l.Window - now}
	switch {
	case cost < 0:
		d.Reason = ReasonInvalidCost
		d.Remaining = max(l.Quota-used, 0)
		return s, d
	case cost > l.Quota:
		d.Reason = ReasonCostTooLarge
		d.Remaining = max(l.Quota-used, 0)
		return s, d
	case used+cost > l.Quota:
		d.Reason = ReasonLimited
		d.Remaining = max(l.Quota-used, 0)
		d.RetryAfter = d.ResetAfter
		return s, d
	}
	d.Allowed = true
	d.Remaining = l.Quota - used - cost
	return State{A: start, B: used + cost}, d
}
