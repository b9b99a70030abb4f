package algorithm

import (
	"math/rand/v2"
)

// event is one request of a trace.
type event struct {
	now  int64
	cost int64
}

// epoch is a realistic Unix time in microseconds (2025-06-01), so traces
// exercise timestamps of the size that stores pass in.
const epoch = int64(1_748_736_000_000_000)

var (
	traceQuotas  = []int64{1, 2, 3, 7, 10, 60, 100, 1000, 99_991}
	traceWindows = []int64{ms, 7 * ms, second, 3 * second, minute, hour, 24 * hour}
)

// randomLimit returns a valid Limit, sometimes with Quota × Window or
// Capacity × Window just below 2^53, where inexact arithmetic would show.
func randomLimit(r *rand.Rand) Limit {
	for {
		l := Limit{
			Quota:  traceQuotas[r.IntN(len(traceQuotas))],
			Window: traceWindows[r.IntN(len(traceWindows))],
		}
		switch r.IntN(8) {
		case 0:
			l.Window = MinWindow + r.Int64N(10*minute)
		case 1:
			l.Quota = (MaxProduct - 1) / l.Window
			l.Quota -= r.Int64N(l.Quota/4 + 1)
		}
		if r.IntN(2) == 0 {
			l.Burst = 1 + r.Int64N(3*l.Quota)
			if r.IntN(8) == 0 {
				l.Burst = (MaxProduct - 1) / l.Window
			}
		}
		l.Delay = r.Int64N(l.Capacity() + 2)
		if r.IntN(3) == 0 {
			l.Delay = 0
		}
		if r.IntN(2) == 0 {
			l.MaxWait = r.Int64N(2 * l.Window * max(l.Capacity()/l.Quota, 1))
		}
		if l.Validate() == nil {
			return l
		}
	}
}

// randomTrace returns n requests starting at start. Most steps move time
// forward by about one emission interval, some stay at the same instant,
// some jump by windows, and about one in fifty steps the clock back.
func randomTrace(r *rand.Rand, l Limit, start int64, n int, clockSteps bool) []event {
	interval := max(l.Window/l.Quota, 1)
	capacity := max(l.Quota, l.Capacity())
	events := make([]event, n)
	now := start
	for i := range events {
		switch p := r.IntN(100); {
		case p < 30:
			// Same instant: bursts.
		case p < 75:
			now += r.Int64N(2*interval + 1)
		case p < 85:
			now += r.Int64N(3)
		case p < 95:
			now += r.Int64N(2*l.Window + 1)
		case clockSteps && p < 98:
			now -= r.Int64N(2*l.Window + 1)
		default:
			now += r.Int64N(interval + 1)
		}
		cost := int64(1)
		switch p := r.IntN(100); {
		case p < 8:
			cost = 0
		case p < 30:
			cost = 1 + r.Int64N(capacity)
		case p < 33:
			cost = capacity + 1 + r.Int64N(3)
		case p < 35:
			cost = -1 - r.Int64N(3)
		}
		events[i] = event{now: now, cost: cost}
	}
	return events
}
