package algorithm

import "testing"

func TestGCRATenPerTenSeconds(t *testing.T) {
	t.Parallel()
	l := Limit{Quota: 10, Window: 10 * second}
	var steps []step
	for i := int64(0); i < 10; i++ {
		steps = append(steps, step{"burst", 0, 1, allowed(9-i, (i+1)*second)})
	}
	steps = append(steps,
		step{"eleventh", 0, 1, limited(0, 10*second, 1*second)},
		step{"just before 1s", 1*second - 1, 1, limited(0, 9*second+1, 1)},
		step{"at 1s", 1 * second, 1, allowed(0, 10*second)},
		step{"again at 1s", 1 * second, 1, limited(0, 10*second, 1*second)},
		step{"free request", 1 * second, 0, allowed(0, 10*second)},
		step{"cost above capacity", 1 * second, 11, Decision{Reason: ReasonCostTooLarge, ResetAfter: 10 * second}},
		step{"negative cost", 1 * second, -1, Decision{Reason: ReasonInvalidCost, ResetAfter: 10 * second}},
		// TAT is 11 s: a cost of 5 needs TAT − now ≤ 5 s.
		step{"cost five", 5 * second, 5, limited(4, 6*second, 1*second)},
		step{"cost four", 5 * second, 4, allowed(0, 10*second)},
		step{"idle", 30 * second, 0, allowed(10, 0)},
	)
	runSteps(t, GCRA, l, State{}, steps)
}

func TestGCRAFractionalInterval(t *testing.T) {
	t.Parallel()
	// 7 per 3 s: T = 428571 + 3/7 µs, kept as A µs + B/7 µs.
	l := Limit{Quota: 7, Window: 3 * second, Burst: 1}
	s := runSteps(t, GCRA, l, State{}, []step{
		{"first", 0, 1, allowed(0, 428_572)},
		{"too soon", 428_571, 1, limited(0, 1, 1)},
		// It arrives 4/7 µs after the TAT, so the TAT restarts from it.
		{"second", 428_572, 1, allowed(0, 428_572)},
	})
	if want := (State{A: 857_143, B: 3}); s != want {
		t.Fatalf("state after two = %+v, want %+v", s, want)
	}
	s = runSteps(t, GCRA, l, s, []step{
		{"third too soon", 857_143, 1, limited(0, 1, 1)},
		{"third", 857_144, 1, allowed(0, 428_572)},
	})
	if want := (State{A: 1_285_715, B: 3}); s != want {
		t.Fatalf("state after three = %+v, want %+v", s, want)
	}
}

func TestLeakyQueueNginxBurstDelay(t *testing.T) {
	t.Parallel()
	// nginx: limit_req rate=5r/s burst=12 delay=8. The first request and 8
	// more pass at once, the next 4 wait 200 ms more each, then the queue is
	// full until one leaves.
	l := Limit{Quota: 5, Window: second, Burst: 13, Delay: 8}
	var steps []step
	for i := int64(0); i < 13; i++ {
		d := allowed(12-i, (i+1)*200*ms)
		if i > 8 {
			d.Wait = (i - 8) * 200 * ms
		}
		steps = append(steps, step{"burst", 0, 1, d})
	}
	steps = append(steps,
		step{"full", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 2600 * ms, RetryAfter: 200 * ms}},
		step{"one left", 200 * ms, 1, Decision{Allowed: true, ResetAfter: 2600 * ms, Wait: 800 * ms}},
	)
	runSteps(t, LeakyQueue, l, State{}, steps)
}

func TestLeakyQueueMaxWait(t *testing.T) {
	t.Parallel()
	// 2 per second, every excess request waits, at most 1 s.
	l := Limit{Quota: 2, Window: second, MaxWait: second}
	runSteps(t, LeakyQueue, l, State{}, []step{
		{"first", 0, 1, allowed(1, 500*ms)},
		// Capacity 2 would admit one more, waiting 500 ms.
		{"second waits", 0, 1, Decision{Allowed: true, ResetAfter: 1 * second, Wait: 500 * ms}},
		{"capacity full", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 1 * second, RetryAfter: 500 * ms}},
		{"free request", 100 * ms, 0, allowed(0, 900*ms)},
		{"cost above capacity", 0, 3, Decision{Reason: ReasonCostTooLarge, ResetAfter: 1 * second}},
	})

	// A larger queue than the wait allows: MaxWait decides.
	l = Limit{Quota: 2, Window: second, Burst: 10, MaxWait: second}
	runSteps(t, LeakyQueue, l, State{}, []step{
		{"first", 0, 1, allowed(2, 500*ms)},
		{"waits 500ms", 0, 1, Decision{Allowed: true, Remaining: 1, ResetAfter: 1 * second, Wait: 500 * ms}},
		{"waits 1s", 0, 1, Decision{Allowed: true, ResetAfter: 1500 * ms, Wait: 1 * second}},
		{"would wait 1.5s", 0, 1, Decision{Reason: ReasonQueueFull, ResetAfter: 1500 * ms, RetryAfter: 500 * ms}},
		// The wait depends on what is queued before, not on the cost.
		{"would wait 1.1s", 400 * ms, 2, Decision{Reason: ReasonQueueFull, ResetAfter: 1100 * ms, RetryAfter: 100 * ms}},
		{"cost two waits 1s", 500 * ms, 2, Decision{Allowed: true, ResetAfter: 2 * second, Wait: 1 * second}},
	})
}
