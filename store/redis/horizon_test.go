package redis

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
)

// TestHorizonForgetsNothingThatMatters checks the TTL rule: once a key's
// TTL has run out, its state must decide exactly as a fresh key, for every
// algorithm, so that expiring it admits nothing extra.
func TestHorizonForgetsNothingThatMatters(t *testing.T) {
	t.Parallel()
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(kind), 5))
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
			for trial := 0; trial < 300; trial++ {
				l := randomLimit(rng)
				var s algorithm.State
				var written int64
				for i := 0; i < 1+rng.IntN(40); i++ {
					now += rng.Int64N(l.Window / 4)
					next, d := algorithm.Decide(kind, s, now, l, 1+rng.Int64N(l.Capacity()))
					if d.Allowed {
						s, written = next, now
					}
				}
				if written == 0 {
					continue
				}
				expiry := written + 1000*horizonMillis(kind, l)
				for _, at := range []int64{expiry, expiry + 1, expiry + l.Window} {
					for cost := int64(0); cost <= l.Capacity()+1; cost++ {
						_, got := algorithm.Decide(kind, s, at, l, cost)
						_, want := algorithm.Decide(kind, algorithm.State{}, at, l, cost)
						if got != want {
							t.Fatalf("%v %+v: state %+v written at %d, at expiry+%d cost %d decides %+v, a fresh key %+v",
								kind, l, s, written, at-expiry, cost, got, want)
						}
					}
				}
			}
		})
	}
}

func TestMulDivCeil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		a, b, c int64
		want    int64
	}{
		{name: "exact", a: 60, b: 10, c: 5, want: 120},
		{name: "rounds up", a: 10, b: 1, c: 3, want: 4},
		{name: "product above int64", a: 1 << 40, b: 1 << 40, c: 1 << 20, want: 1 << 60},
		{name: "saturates", a: 1 << 62, b: 1 << 62, c: 1, want: 1 << 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := mulDivCeil(tt.a, tt.b, tt.c); got != tt.want {
				t.Errorf("mulDivCeil(%d, %d, %d) = %d, want %d", tt.a, tt.b, tt.c, got, tt.want)
			}
		})
	}
}
