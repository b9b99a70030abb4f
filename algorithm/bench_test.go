package algorithm

import "testing"

var sinkDecision Decision

// BenchmarkDecide measures one decision per kind on a key that is hit
// continuously, so every branch of the common path runs.
func BenchmarkDecide(b *testing.B) {
	l := Limit{Quota: 100, Window: minute, Burst: 120, Delay: 10, MaxWait: 5 * second}
	for k := SlidingWindow; k <= GCRA; k++ {
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			var s State
			now := epoch
			for b.Loop() {
				next, d := Decide(k, s, now, l, 1)
				if d.Allowed {
					s = next
				}
				now += 50 * ms
				sinkDecision = d
			}
		})
	}
}

// BenchmarkDecideParallel runs Decide on every core with a state per
// goroutine, as a sharded store would.
func BenchmarkDecideParallel(b *testing.B) {
	l := Limit{Quota: 100, Window: minute}
	for k := SlidingWindow; k <= GCRA; k++ {
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var s State
				now := epoch
				var d Decision
				for pb.Next() {
					var next State
					next, d = Decide(k, s, now, l, 1)
					if d.Allowed {
						s = next
					}
					now += 50 * ms
				}
				_ = d
			})
		})
	}
}

func TestDecideAllocatesNothing(t *testing.T) {
	l := Limit{Quota: 7, Window: 3 * second, MaxWait: second}
	for k := SlidingWindow; k <= GCRA; k++ {
		var s State
		now := epoch
		allocs := testing.AllocsPerRun(100, func() {
			s, sinkDecision = Decide(k, s, now, l, 1)
			now += 100 * ms
		})
		if allocs != 0 {
			t.Errorf("Decide(%v) allocates %.1f times per call, want 0", k, allocs)
		}
	}
}
