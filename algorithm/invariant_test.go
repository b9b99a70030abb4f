package algorithm

import "testing"

// checkInvariants verifies what every decision promises, for any kind.
// Durations and Remaining are never negative, and a denied or free request
// changes nothing. RetryAfter is the exact wait for the same request, and
// Remaining the exact number of cost-1 requests that would still pass at
// the same instant. The budget is full again after ResetAfter.
func checkInvariants(t testing.TB, k Kind, l Limit, s State, now, cost int64, next State, d Decision) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%v %+v, state %+v, now %d, cost %d: Decide = %+v, %+v: "+format,
			append([]any{k, l, s, now, cost, next, d}, args...)...)
	}

	if d.Remaining < 0 || d.ResetAfter < 0 || d.RetryAfter < 0 || d.Wait < 0 {
		fail("negative remaining or duration")
	}
	if d.Allowed != (d.Reason == ReasonAllowed) {
		fail("allowed and reason disagree")
	}
	if d.Limit != reportedLimit(k, l) {
		fail("limit %d, want %d", d.Limit, reportedLimit(k, l))
	}
	if d.Remaining > d.Limit {
		fail("remaining above the limit")
	}

	if (!d.Allowed || cost == 0) && next != s {
		fail("state changed without a charge")
	}
	if cost == 0 && !d.Allowed {
		fail("free request denied")
	}
	if (d.Allowed || d.Reason == ReasonCostTooLarge || d.Reason == ReasonInvalidCost) && d.RetryAfter != 0 {
		fail("retry after without a limit")
	}
	if d.Wait > 0 && (k != LeakyQueue || !d.Allowed) {
		fail("wait outside an admitted queue request")
	}

	if d.Reason == ReasonLimited || d.Reason == ReasonQueueFull {
		checkRetryAfter(t, k, l, s, now, cost, d, fail)
	}
	checkRemaining(t, k, l, next, now, d, fail)
	checkResetAfter(t, k, l, next, now, d, fail)
}

func checkRetryAfter(t testing.TB, k Kind, l Limit, s State, now, cost int64, d Decision, fail func(string, ...any)) {
	t.Helper()
	if d.RetryAfter <= 0 {
		fail("denied with no retry after")
	}
	if _, later := Decide(k, s, now+d.RetryAfter, l, cost); !later.Allowed {
		fail("denied again after retry after: %+v", later)
	}
	if _, early := Decide(k, s, now+d.RetryAfter-1, l, cost); early.Allowed {
		fail("allowed 1µs before retry after")
	}
}

func checkRemaining(t testing.TB, k Kind, l Limit, s State, now int64, d Decision, fail func(string, ...any)) {
	t.Helper()
	if d.Remaining > 64 {
		return
	}
	for i := int64(0); i < d.Remaining; i++ {
		var one Decision
		s, one = Decide(k, s, now, l, 1)
		if !one.Allowed {
			fail("request %d of remaining %d denied: %+v", i+1, d.Remaining, one)
		}
	}
	if _, over := Decide(k, s, now, l, 1); over.Allowed {
		fail("request past remaining %d allowed", d.Remaining)
	}
}

// checkResetAfter compares the budget at now+ResetAfter with the budget of
// a key never seen. A fixed window reports its window end even when the
// budget is already full, and a queue bounded by MaxWait can report its
// full budget while requests still wait, so for those two only the first
// half holds.
func checkResetAfter(t testing.TB, k Kind, l Limit, s State, now int64, d Decision, fail func(string, ...any)) {
	t.Helper()
	at := now + d.ResetAfter
	_, fresh := Decide(k, State{}, at, l, 0)
	if _, got := Decide(k, s, at, l, 0); got.Remaining != fresh.Remaining {
		fail("remaining %d at reset, want the full %d", got.Remaining, fresh.Remaining)
	}
	if d.ResetAfter == 0 || k == FixedWindow || k == LeakyQueue {
		return
	}
	_, fresh = Decide(k, State{}, at-1, l, 0)
	if _, got := Decide(k, s, at-1, l, 0); got.Remaining == fresh.Remaining {
		fail("budget already full 1µs before reset")
	}
}
