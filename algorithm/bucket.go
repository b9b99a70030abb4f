package algorithm

// decideBucket is the token bucket and the leaky bucket as a meter, which
// are one computation seen from two sides: the token deficit of a token
// bucket is the water level of a leaky bucket. The level is kept in
// unit·µs (units × Window) so that it drains by exactly Quota per
// microsecond, with no remainder to lose.
func decideBucket(s State, now int64, l Limit, cost int64) (State, Decision) {
	q, w, c := l.Quota, l.Window, l.Capacity()
	full := c * w
	at, level := s.A, clamp(s.B, 0, full)
	if now > at {
		// Drain for the time since the last charge, checking by division
		// first so that elapsed × Quota is formed only when it is ≤ level.
		if elapsed := now - at; elapsed > level/q {
			level = 0
		} else {
			level -= elapsed * q
		}
		at = now
	}
	// A clock that stepped back leaves at > now: the bucket drains from at,
	// never twice over the same interval.

	reason := costReason(cost, c)
	if reason == ReasonAllowed && cost > 0 {
		need := cost * w
		if need <= full-level {
			level += need
			return State{A: at, B: level}, Decision{
				Allowed:    true,
				Limit:      c,
				Remaining:  (full - level) / w,
				ResetAfter: bucketResetAfter(at, level, now, q),
			}
		}
		reason = ReasonLimited
	}

	// Nothing is charged: report the current budget.
	d := Decision{
		Allowed:    reason == ReasonAllowed,
		Reason:     reason,
		Limit:      c,
		Remaining:  (full - level) / w,
		ResetAfter: bucketResetAfter(at, level, now, q),
	}
	if reason == ReasonLimited {
		d.RetryAfter = at - now + ceilDiv(level-(full-cost*w), q)
	}
	return s, d
}

// bucketResetAfter returns the time from now until a bucket with the given
// level at time at (at ≥ now) has drained completely.
func bucketResetAfter(at, level, now, q int64) int64 {
	if level == 0 {
		return 0
	}
	return at - now + ceilDiv(level, q)
}
