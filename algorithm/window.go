package algorithm

// decideFixedWindow counts units in windows aligned to multiples of Window.
func decideFixedWindow(s State, now int64, l Limit, cost int64) (State, Decision) {
	q, w := l.Quota, l.Window
	start := now - floorMod(now, w)
	used := int64(0)
	if s.A >= start {
		// The stored window is the current one, or a later one because the
		// clock stepped back: keep counting in it so nothing is admitted twice.
		start = s.A
		used = clamp(s.B, 0, q)
	}

	d := Decision{Limit: q, Remaining: q - used, ResetAfter: start + w - now}
	if d.Reason = costReason(cost, q); d.Reason != ReasonAllowed {
		return s, d
	}
	if cost == 0 {
		d.Allowed = true
		return s, d
	}
	if cost > q-used {
		// The next window starts empty and cost ≤ Quota, so it passes then.
		d.Reason = ReasonLimited
		d.RetryAfter = d.ResetAfter
		return s, d
	}

	d.Allowed = true
	d.Remaining -= cost
	return State{A: start, B: used + cost}, d
}

// slidingWindow is a sliding window state seen at one instant.
type slidingWindow struct {
	start   int64 // start of the current window
	elapsed int64 // time since start, in [0, Window)
	current int64 // units used in the current window
	prev    int64 // units used in the previous window
}

// loadSlidingWindow rolls s forward to the window that contains now.
func loadSlidingWindow(s State, now int64, l Limit) slidingWindow {
	q, w := l.Quota, l.Window
	sw := slidingWindow{start: now - floorMod(now, w)}
	switch {
	case s.A >= sw.start:
		// Same window, or the clock stepped back: stay in the stored window
		// and weigh the previous one fully, which is the most conservative.
		sw.start = s.A
		sw.current = clamp(s.B, 0, q)
		sw.prev = clamp(s.C, 0, q)
	case s.A == sw.start-w:
		sw.prev = clamp(s.B, 0, q)
	}
	sw.elapsed = max(now-sw.start, 0)
	return sw
}

// estimate returns ⌈prev × (Window − elapsed) / Window⌉ + current: the units
// counted against the window that ends now. Rounding up makes the estimate
// never smaller than the weighted count, so the comparison with the quota is
// the exact comparison of the real-valued weighted count.
func (sw slidingWindow) estimate(w int64) int64 {
	return ceilDiv(sw.prev*(w-sw.elapsed), w) + sw.current
}

// resetAfter returns the time from now until the estimate falls to zero.
func (sw slidingWindow) resetAfter(now, w int64) int64 {
	switch {
	case sw.current > 0:
		return sw.start + 2*w - now
	case sw.prev > 0:
		return sw.start + w - now
	}
	return 0
}

// retryAfter returns the time from now until a request of the given cost
// passes, for 0 < cost ≤ Quota, when no other request comes first.
func (sw slidingWindow) retryAfter(now int64, l Limit, cost int64) int64 {
	q, w := l.Quota, l.Window
	if room := q - cost - sw.current; room >= 0 {
		// It passes later in this window, once the weighted previous count
		// has fallen to room: prev × (w − e) ≤ room × w.
		return sw.start + w - room*w/sw.prev - now
	}
	// It waits for the next window, where this window's count is weighed.
	room := q - cost
	if room >= sw.current {
		return sw.start + w - now
	}
	return sw.start + 2*w - room*w/sw.current - now
}

// decideSlidingWindow is the sliding window counter: the previous window's
// count, weighted by the share of it that the window ending now still
// covers, plus the current window's count.
func decideSlidingWindow(s State, now int64, l Limit, cost int64) (State, Decision) {
	q, w := l.Quota, l.Window
	sw := loadSlidingWindow(s, now, l)
	used := sw.estimate(w)

	d := Decision{Limit: q, Remaining: max(q-used, 0), ResetAfter: sw.resetAfter(now, w)}
	if d.Reason = costReason(cost, q); d.Reason != ReasonAllowed {
		return s, d
	}
	if cost == 0 {
		d.Allowed = true
		return s, d
	}
	if cost > q-used {
		d.Reason = ReasonLimited
		d.RetryAfter = sw.retryAfter(now, l, cost)
		return s, d
	}

	sw.current += cost
	d.Allowed = true
	d.Remaining = q - used - cost
	d.ResetAfter = sw.resetAfter(now, w)
	return State{A: sw.start, B: sw.current, C: sw.prev}, d
}
