package algorithm

// arrival is a theoretical arrival time (TAT) of A + B/Quota microseconds,
// with 0 ≤ B < Quota. Keeping the fraction exactly makes an emission
// interval of Window/Quota add up without drift for any quota.
type arrival struct {
	a, b int64
}

// loadArrival returns max(TAT of s, now): the time from which the next
// request is scheduled.
func loadArrival(s State, now, q int64) arrival {
	if s.A < now {
		return arrival{a: now}
	}
	return arrival{a: s.A, b: clamp(s.B, 0, q-1)}
}

// add returns t advanced by units/Quota microseconds, for 0 ≤ units < 2^53.
func (t arrival) add(units, q int64) arrival {
	t.a += units / q
	t.b += units % q
	if t.b >= q {
		t.a++
		t.b -= q
	}
	return t
}

// earliest returns the first whole microsecond at or after t − slack/Quota,
// for slack ≥ 0: ⌈t.a + (t.b − slack)/Quota⌉ = t.a − ⌊(slack − t.b)/Quota⌋.
// With slack − t.b > −Quota the floor needs no general division by a
// negative number.
func (t arrival) earliest(slack, q int64) int64 {
	return t.a - floorDiv(slack-t.b, q)
}

// resetAfter returns ⌈t − now⌉ for t ≥ now: the time until the bucket is
// empty and the whole capacity is available.
func (t arrival) resetAfter(now int64) int64 {
	if t.b > 0 {
		return t.a - now + 1
	}
	return t.a - now
}

// remaining returns how many requests of cost 1 would conform right after
// a request that left the TAT at t (t ≥ now): the largest k with
// t − now ≤ (capacity − k) × Window/Quota, at least 0.
func (t arrival) remaining(now int64, l Limit) int64 {
	q, w := l.Quota, l.Window
	room := l.Capacity()*w - t.b
	ahead := t.a - now
	// ahead×Quota is formed only once it is known to be ≤ room.
	if room < 0 || ahead > room/q {
		return 0
	}
	return (room - ahead*q) / w
}

// decideGCRA is the generic cell rate algorithm in its virtual scheduling
// form, GCRA(T, τ) with emission interval T = Window/Quota and tolerance
// τ = (Capacity − 1) × T: a request of cost n conforms when
// max(TAT, now) − now ≤ (Capacity − n) × T, and then moves the TAT to
// max(TAT, now) + n × T. All of it is computed in units of 1/Quota µs.
func decideGCRA(s State, now int64, l Limit, cost int64) (State, Decision) {
	q, w, c := l.Quota, l.Window, l.Capacity()
	tat := loadArrival(s, now, q)

	reason := costReason(cost, c)
	var earliest int64
	if reason == ReasonAllowed && cost > 0 {
		earliest = tat.earliest((c-cost)*w, q)
		if now >= earliest {
			tat = tat.add(cost*w, q)
			return State{A: tat.a, B: tat.b}, Decision{
				Allowed:    true,
				Limit:      c,
				Remaining:  tat.remaining(now, l),
				ResetAfter: tat.resetAfter(now),
			}
		}
		reason = ReasonLimited
	}

	// Nothing is charged: report the current budget.
	d := Decision{
		Allowed:    reason == ReasonAllowed,
		Reason:     reason,
		Limit:      c,
		Remaining:  tat.remaining(now, l),
		ResetAfter: tat.resetAfter(now),
	}
	if reason == ReasonLimited {
		d.RetryAfter = earliest - now
	}
	return s, d
}

// decideLeakyQueue is the leaky bucket as a queue, with the behaviour of
// nginx limit_req (burst=Capacity−1, delay=Delay). Requests leave at
// Quota per Window. A request is admitted when the queue has room for its
// cost and it would wait at most MaxWait. It then waits until the units
// queued before it, less the first Delay units, have left.
//
// The queue is the GCRA schedule: max(TAT, now) − now is the time the
// queued units need to leave, so admission by capacity is GCRA's test, and
// the wait is ⌈max(TAT, now) − now − Delay × T⌉.
func decideLeakyQueue(s State, now int64, l Limit, cost int64) (State, Decision) {
	q, w, c := l.Quota, l.Window, l.Capacity()
	tat := loadArrival(s, now, q)

	reason := costReason(cost, c)
	var earliest int64
	if reason == ReasonAllowed && cost > 0 {
		start := tat.earliest(clamp(l.Delay, 0, c)*w, q)
		earliest = tat.earliest((c-cost)*w, q)
		if l.MaxWait > 0 {
			earliest = max(earliest, start-l.MaxWait)
		}
		if now >= earliest {
			tat = tat.add(cost*w, q)
			return State{A: tat.a, B: tat.b}, Decision{
				Allowed:    true,
				Limit:      c,
				Remaining:  queueRemaining(tat, now, l),
				ResetAfter: tat.resetAfter(now),
				Wait:       max(start-now, 0),
			}
		}
		reason = ReasonQueueFull
	}

	// Nothing is charged: report the current budget.
	d := Decision{
		Allowed:    reason == ReasonAllowed,
		Reason:     reason,
		Limit:      c,
		Remaining:  queueRemaining(tat, now, l),
		ResetAfter: tat.resetAfter(now),
	}
	if reason == ReasonQueueFull {
		d.RetryAfter = earliest - now
	}
	return s, d
}

// queueRemaining returns how many requests of cost 1 the queue would admit
// right after a request that left the TAT at t (t ≥ now): the capacity
// bound of remaining, further limited by MaxWait.
//
// The k-th next request waits ⌈t + (k − 1 − Delay) × T − now⌉, which is at
// most MaxWait exactly when (k − 1 − Delay) × Window ≤ g × Quota − t.b with
// g = now + MaxWait − t.a. The product g × Quota may pass 2^53, so it is
// split as g = hi × Window + lo. Outside ±gMax the result is known to be
// 0 or at least the capacity.
func queueRemaining(t arrival, now int64, l Limit) int64 {
	k := t.remaining(now, l)
	if l.MaxWait <= 0 {
		return k
	}
	q, w, c := l.Quota, l.Window, l.Capacity()
	g := now + l.MaxWait - t.a
	gMax := c*w/q + 2*w
	switch {
	case g >= gMax:
		return k
	case g <= -gMax:
		return 0
	}
	hi, lo := floorDiv(g, w), floorMod(g, w)
	byWait := clamp(l.Delay, 0, c) + 1 + hi*q + floorDiv(lo*q-t.b, w)
	return clamp(min(k, byWait), 0, c)
}
