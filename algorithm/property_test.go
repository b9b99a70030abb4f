package algorithm

import (
	"math/rand/v2"
	"testing"
)

// admission is an allowed request as the bounds see it: at is the time
// the state had reached (the largest now charged so far, so a clock that
// stepped back counts at the later time), release is now + Wait.
type admission struct {
	at, release, cost int64
}

// spanBound returns the most units that kind k may admit in any span of
// span microseconds under l: the documented guarantee.
func spanBound(k Kind, l Limit, span int64) int64 {
	q, w := l.Quota, l.Window
	switch k {
	case FixedWindow:
		// A span of one window overlaps two windows, each spent in full.
		return 2 * q
	case SlidingWindow:
		// The previous window's units all at its last microsecond weigh
		// ⌈q × 2/w⌉ at the last microsecond of a span that holds them.
		return q + q*(w-2)/w
	}
	// Buckets and GCRA: the capacity, plus what drains while the span lasts.
	return l.Capacity() + (span-1)*q/w
}

// maxInSpan returns the most units of admissions (sorted by at) whose at
// falls in one span [s, s+span).
func maxInSpan(adm []admission, span int64, at func(admission) int64) int64 {
	var best, sum int64
	j := 0
	for i := range adm {
		sum += adm[i].cost
		for at(adm[j]) <= at(adm[i])-span {
			sum -= adm[j].cost
			j++
		}
		best = max(best, sum)
	}
	return best
}

// runTrace applies a trace and returns its admissions, checking the
// invariants of every decision on the way.
func runTrace(t *testing.T, k Kind, l Limit, events []event) []admission {
	t.Helper()
	var s State
	var adm []admission
	charged := int64(-1 << 62)
	for _, e := range events {
		next, d := Decide(k, s, e.now, l, e.cost)
		checkInvariants(t, k, l, s, e.now, e.cost, next, d)
		if d.Allowed && e.cost > 0 {
			charged = max(charged, e.now)
			adm = append(adm, admission{at: charged, release: e.now + d.Wait, cost: e.cost})
		}
		s = next
	}
	return adm
}

// propertyLimit returns a random valid limit whose quota is small enough
// for a trace of a few hundred requests to hit it many times.
func propertyLimit(r *rand.Rand) Limit {
	for {
		l := randomLimit(r)
		if l.Quota > 100 {
			l.Quota = 1 + r.Int64N(100)
		}
		if l.Burst > 300 {
			l.Burst = 1 + r.Int64N(300)
		}
		l.Delay = min(l.Delay, l.Capacity())
		if l.Validate() == nil {
			return l
		}
	}
}

func TestAdmissionBounds(t *testing.T) {
	t.Parallel()
	for k := SlidingWindow; k <= GCRA; k++ {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(k), 7))
			for trace := range 300 {
				l := propertyLimit(r)
				clockSteps := trace%2 == 0
				events := randomTrace(r, l, epoch+r.Int64N(hour), 400, clockSteps)
				adm := runTrace(t, k, l, events)
				checkSpans(t, k, l, adm)
				if k == LeakyQueue && !clockSteps {
					// Release times follow each request's own clock, so
					// they are ordered only when the clock is.
					checkReleases(t, l, adm)
				}
			}
		})
	}
}

func checkSpans(t *testing.T, k Kind, l Limit, adm []admission) {
	t.Helper()
	at := func(a admission) int64 { return a.at }
	spans := []int64{l.Window}
	if k != FixedWindow && k != SlidingWindow {
		spans = append(spans, 1, l.Window/3+1, 2*l.Window+5)
	}
	for _, span := range spans {
		if got, bound := maxInSpan(adm, span, at), spanBound(k, l, span); got > bound {
			t.Fatalf("%+v: %d units in a span of %dµs, bound %d", l, got, span, bound)
		}
	}
	if k == FixedWindow || k == SlidingWindow {
		for _, got := range alignedWindowUnits(adm, l.Window) {
			if got > l.Quota {
				t.Fatalf("%+v: %d units in one aligned window", l, got)
			}
		}
	}
}

func alignedWindowUnits(adm []admission, w int64) map[int64]int64 {
	units := map[int64]int64{}
	for _, a := range adm {
		units[floorDiv(a.at, w)] += a.cost
	}
	return units
}

// checkReleases verifies the queue's smoothing: requests leave (at + Wait)
// in order, and in any span of one window the units released before the
// last release in it are fewer than Quota + Delay.
func checkReleases(t *testing.T, l Limit, adm []admission) {
	t.Helper()
	for i := 1; i < len(adm); i++ {
		if adm[i].release < adm[i-1].release {
			t.Fatalf("%+v: release %d before the earlier request's %d", l, adm[i].release, adm[i-1].release)
		}
	}
	delay := min(l.Delay, l.Capacity())
	j := 0
	var sum int64
	for i := range adm {
		for adm[j].release <= adm[i].release-l.Window {
			sum -= adm[j].cost
			j++
		}
		if sum >= l.Quota+delay {
			t.Fatalf("%+v: %d units released within a window before one more", l, sum)
		}
		sum += adm[i].cost
	}
}

// greedy sends a request of the given cost at start and then, whenever one
// is denied, again exactly RetryAfter later, until end. It returns the
// admissions, the maximum any client can get.
func greedy(k Kind, l Limit, start, end, cost int64) []admission {
	var s State
	var adm []admission
	for now := start; now < end; {
		next, d := Decide(k, s, now, l, cost)
		if d.Allowed {
			adm = append(adm, admission{at: now, release: now + d.Wait, cost: cost})
			s = next
			continue
		}
		now += d.RetryAfter
	}
	return adm
}

func TestAdmissionBoundsTight(t *testing.T) {
	t.Parallel()
	at := func(a admission) int64 { return a.at }
	tests := []struct {
		name string
		kind Kind
		l    Limit
	}{
		{"token bucket 7 per 3s", TokenBucket, Limit{Quota: 7, Window: 3 * second}},
		{"token bucket burst", TokenBucket, Limit{Quota: 100, Window: minute, Burst: 20}},
		{"leaky bucket 100 per minute", LeakyBucket, Limit{Quota: 100, Window: minute}},
		{"gcra 10 per 10s", GCRA, Limit{Quota: 10, Window: 10 * second}},
		{"gcra burst 1", GCRA, Limit{Quota: 7, Window: 3 * second, Burst: 1}},
		{"leaky queue", LeakyQueue, Limit{Quota: 5, Window: second, Burst: 13, Delay: 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := tc.l.Window
			adm := greedy(tc.kind, tc.l, epoch, epoch+3*w, 1)
			if got, want := maxInSpan(adm, w, at), spanBound(tc.kind, tc.l, w); got != want {
				t.Errorf("greedy client: %d in a span of one window, want the bound %d", got, want)
			}
		})
	}
}

func TestLeakyQueueReleasesTight(t *testing.T) {
	t.Parallel()
	// With Delay 0 a queue releases no more than the quota in any window,
	// whatever it admitted: here 100 released of 199 admitted.
	l := Limit{Quota: 100, Window: minute}
	adm := greedy(LeakyQueue, l, epoch, epoch+3*minute, 1)
	release := func(a admission) int64 { return a.release }
	at := func(a admission) int64 { return a.at }
	if got := maxInSpan(adm, minute, release); got != 100 {
		t.Errorf("greedy client: %d released in one minute, want 100", got)
	}
	if got := maxInSpan(adm, minute, at); got != 199 {
		t.Errorf("greedy client: %d admitted in one minute, want 199", got)
	}
}

func TestWindowBoundsTight(t *testing.T) {
	t.Parallel()
	at := func(a admission) int64 { return a.at }
	w := minute
	l := Limit{Quota: 100, Window: w}
	start := epoch - epoch%w

	// Fixed window: a full window at its last microsecond and another at
	// the first microsecond of the next.
	s, d1 := Decide(FixedWindow, State{}, start+w-1, l, 100)
	_, d2 := Decide(FixedWindow, s, start+w, l, 100)
	if !d1.Allowed || !d2.Allowed {
		t.Fatalf("fixed window: Allow(end) = %v, Allow(start of next) = %v, want both true", d1.Allowed, d2.Allowed)
	}

	// Sliding window: 100 at the last microsecond of a window, then as much
	// as the weight allows 2µs before the span of one window ends.
	s, d1 = Decide(SlidingWindow, State{}, start+w-1, l, 100)
	room := l.Quota - ceilDiv(l.Quota*2, w)
	_, d2 = Decide(SlidingWindow, s, start+2*w-2, l, room)
	adm := []admission{{at: start + w - 1, cost: 100}, {at: start + 2*w - 2, cost: room}}
	if !d1.Allowed || !d2.Allowed {
		t.Fatalf("sliding window: Allow = %v, %v, want both true", d1.Allowed, d2.Allowed)
	}
	if got, want := maxInSpan(adm, w, at), spanBound(SlidingWindow, l, w); got != want {
		t.Errorf("sliding window: %d in one span, want the bound %d", got, want)
	}
	if want := int64(199); spanBound(SlidingWindow, l, w) != want {
		t.Errorf("sliding window bound for 100/minute = %d, want %d", spanBound(SlidingWindow, l, w), want)
	}
}

// TestSteadyTrafficExact sends one request every 10 ms for an hour against
// 7 per 3 s, a rate whose interval (428 571 3/7 µs) is not a whole number of
// microseconds, and counts admissions per 3 s window. For the leaky queue it
// also counts releases (admission + Wait) per window.
func TestSteadyTrafficExact(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 7, Window: 3 * second}
	start := epoch - epoch%l.Window
	tests := []struct {
		kind  Kind
		first int64 // admissions in the first window
		later int64 // admissions in every later window
	}{
		// Buckets and GCRA: a burst of 7 and 6 more as the first 6
		// intervals pass, then exactly one per interval, 7 per window:
		// 13 + 1199 × 7 = 8406 in the hour.
		{TokenBucket, 13, 7},
		{LeakyBucket, 13, 7},
		{LeakyQueue, 13, 7},
		{GCRA, 13, 7},
		{FixedWindow, 7, 7},
		// The sliding window counter settles at Quota − 1: at the last
		// request of a window, a sliver of the previous window's units
		// still weighs ⌈…⌉ = 1.
		{SlidingWindow, 7, 6},
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			var s State
			perWindow := make([]int64, hour/l.Window)
			released := make([]int64, hour/l.Window+1)
			for now := start; now < start+hour; now += 10 * ms {
				next, d := Decide(tc.kind, s, now, l, 1)
				if d.Allowed {
					perWindow[(now-start)/l.Window]++
					released[(now+d.Wait-start)/l.Window]++
					s = next
				}
			}
			if tc.kind == LeakyQueue {
				// With Delay 0 the 13 admitted in the first window leave
				// one interval apart: 7 in each window.
				for i, got := range released[:len(released)-2] {
					if got != 7 {
						t.Fatalf("leaky queue window %d released %d, want 7", i, got)
					}
				}
			}
			if perWindow[0] != tc.first {
				t.Errorf("first window admitted %d, want %d", perWindow[0], tc.first)
			}
			for i, got := range perWindow[1:] {
				if got != tc.later {
					t.Fatalf("window %d admitted %d, want %d", i+1, got, tc.later)
				}
			}
		})
	}
}
