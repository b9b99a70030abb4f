package algorithm

import (
	"fmt"
	"testing"
)

const (
	ms     = int64(1_000)
	second = int64(1_000_000)
	minute = 60 * second
	hour   = 60 * minute
)

// step is one request of a table test: the time and cost it arrives with,
// and the decision it must get. A zero want.Limit means the limit's quota
// or capacity, whichever the algorithm reports.
type step struct {
	name string
	at   int64
	cost int64
	want Decision
}

func allowed(remaining, resetAfter int64) Decision {
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: resetAfter}
}

func limited(remaining, resetAfter, retryAfter int64) Decision {
	return Decision{Reason: ReasonLimited, Remaining: remaining, ResetAfter: resetAfter, RetryAfter: retryAfter}
}

func reportedLimit(k Kind, l Limit) int64 {
	if k == FixedWindow || k == SlidingWindow {
		return l.Quota
	}
	return l.Capacity()
}

// runSteps feeds the steps to Decide in order, starting from s, and checks
// every decision. A denied step must leave the state unchanged.
func runSteps(t *testing.T, k Kind, l Limit, s State, steps []step) State {
	t.Helper()
	for i, st := range steps {
		want := st.want
		if want.Limit == 0 {
			want.Limit = reportedLimit(k, l)
		}
		next, got := Decide(k, s, st.at, l, st.cost)
		if got != want {
			t.Fatalf("step %d %q: Decide(%v, t=%d, cost=%d) = %+v, want %+v (state %+v)",
				i, st.name, k, st.at, st.cost, got, want, s)
		}
		if (!got.Allowed || st.cost == 0) && next != s {
			t.Fatalf("step %d %q: state changed from %+v to %+v without a charge", i, st.name, s, next)
		}
		s = next
	}
	return s
}

func TestDecideInvalidLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind Kind
		l    Limit
	}{
		{"zero quota", GCRA, Limit{Window: second}},
		{"zero window", TokenBucket, Limit{Quota: 1}},
		{"negative window", SlidingWindow, Limit{Quota: 1, Window: -second}},
		{"unknown kind", Kind(200), Limit{Quota: 1, Window: second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := State{A: 1, B: 2, C: 3}
			next, d := Decide(tc.kind, s, 0, tc.l, 1)
			if d.Allowed || d.Reason != ReasonInvalidLimit {
				t.Errorf("Decide = %+v, want denied with %v", d, ReasonInvalidLimit)
			}
			if next != s {
				t.Errorf("state = %+v, want %+v unchanged", next, s)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		l    Limit
		ok   bool
	}{
		{"100 per minute", Limit{Quota: 100, Window: minute}, true},
		{"7 per 3s with burst", Limit{Quota: 7, Window: 3 * second, Burst: 20}, true},
		{"largest product", Limit{Quota: (MaxProduct - 1) / hour, Window: hour}, true},
		{"zero quota", Limit{Window: minute}, false},
		{"negative quota", Limit{Quota: -1, Window: minute}, false},
		{"window below 1ms", Limit{Quota: 1, Window: 999}, false},
		{"window above max", Limit{Quota: 1, Window: MaxDuration + 1}, false},
		{"negative burst", Limit{Quota: 1, Window: minute, Burst: -1}, false},
		{"negative delay", Limit{Quota: 1, Window: minute, Delay: -1}, false},
		{"negative max wait", Limit{Quota: 1, Window: minute, MaxWait: -1}, false},
		{"product 2^53", Limit{Quota: MaxProduct / (1 << 20), Window: 1 << 20}, false},
		{"burst product too large", Limit{Quota: 1, Window: hour, Burst: MaxProduct / hour * 2}, false},
		{"refill too long", Limit{Quota: 1, Window: MaxDuration, Burst: 2}, false},
		{"max wait too long", Limit{Quota: 1, Window: minute, MaxWait: MaxDuration + 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.l.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("%+v.Validate() = %v, want ok=%v", tc.l, err, tc.ok)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	t.Parallel()
	for k := SlidingWindow; k <= GCRA; k++ {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v, want %v", k.String(), got, err, k)
		}
	}
	if _, err := ParseKind("leaky"); err == nil {
		t.Error(`ParseKind("leaky") = nil error, want an error`)
	}
	if got := fmt.Sprint(Kind(99)); got != "algorithm(99)" {
		t.Errorf("Kind(99).String() = %q", got)
	}
}
