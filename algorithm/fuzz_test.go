package algorithm

import (
	"encoding/binary"
	"testing"
)

// fuzzLimit maps arbitrary integers onto a valid Limit, so that the
// invariants are checked on limits the stores can pass.
func fuzzLimit(quota, window, burst, delay, maxWait int64) (Limit, bool) {
	l := Limit{
		Quota:   1 + abs(quota)%1_000_000,
		Window:  MinWindow + abs(window)%(30*24*hour),
		Burst:   abs(burst) % 2_000_000,
		Delay:   abs(delay) % 1_000,
		MaxWait: abs(maxWait) % (2 * hour),
	}
	return l, l.Validate() == nil
}

func abs(v int64) int64 {
	if v < 0 {
		if v == -v { // math.MinInt64
			return 0
		}
		return -v
	}
	return v
}

// fuzzDecide runs a trace decoded from ops against kind k: every 8 bytes
// are a time step (which may be negative, a clock stepping back) and a
// cost. It checks the invariants at every step, then also calls Decide on
// the raw, unvalidated inputs to show that nothing panics.
func fuzzDecide(f *testing.F, k Kind) {
	f.Add(int64(10), int64(10*second), int64(0), int64(0), int64(0), []byte{1, 0, 0, 0, 1, 0, 0, 0})
	f.Add(int64(7), int64(3*second), int64(20), int64(5), int64(second), []byte("steady traffic with some bursts"))
	f.Add(int64(1), int64(MinWindow), int64(1), int64(0), int64(1), []byte{0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0})
	f.Add(int64(-5), int64(0), int64(-1), int64(-1), int64(-1), []byte{})
	f.Fuzz(func(t *testing.T, quota, window, burst, delay, maxWait int64, ops []byte) {
		raw := Limit{Quota: quota, Window: window, Burst: burst, Delay: delay, MaxWait: maxWait}
		Decide(k, State{A: quota, B: window, C: burst}, delay, raw, maxWait)

		l, ok := fuzzLimit(quota, window, burst, delay, maxWait)
		if !ok {
			return
		}
		now := epoch
		var s State
		for len(ops) >= 8 {
			step := int64(int32(binary.LittleEndian.Uint32(ops)))
			cost := int64(int16(binary.LittleEndian.Uint16(ops[4:])))
			ops = ops[8:]
			now += step * max(l.Window/1000, 1) / 64
			next, d := Decide(k, s, now, l, cost)
			checkInvariants(t, k, l, s, now, cost, next, d)
			s = next
		}
	})
}

func FuzzSlidingWindow(f *testing.F) { fuzzDecide(f, SlidingWindow) }
func FuzzFixedWindow(f *testing.F)   { fuzzDecide(f, FixedWindow) }
func FuzzTokenBucket(f *testing.F)   { fuzzDecide(f, TokenBucket) }
func FuzzLeakyBucket(f *testing.F)   { fuzzDecide(f, LeakyBucket) }
func FuzzLeakyQueue(f *testing.F)    { fuzzDecide(f, LeakyQueue) }
func FuzzGCRA(f *testing.F)          { fuzzDecide(f, GCRA) }
