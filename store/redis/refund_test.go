package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
)

// charge applies one check in the mode cross-slot requests use and returns
// whether it was admitted with the states before and after.
func charge(t *testing.T, s *Store, c store.Check, cost int64) (bool, []int64) {
	t.Helper()
	conn := s.conn.Load()
	var sc scratch
	sc.reset(s.nowArg(), modeChargeWithState)
	sc.addRequest([]store.Check{c}, cost)
	vals, err := sc.script().exec(context.Background(), conn.client, sc.keys, sc.finish()).ToArray()
	if err != nil {
		t.Fatalf("charge: %v", err)
	}
	states := make([]int64, stateFields)
	out := make([]algorithm.Decision, 1)
	ok, err := parseOne(vals, []store.Check{c}, out, states)
	if err != nil {
		t.Fatalf("charge: %v", err)
	}
	return ok, states
}

// refundOne runs the refund of one charge.
func refundOne(s *Store, c store.Check, cost int64, states []int64) {
	calls := []slotCall{{idx: []int{0}, states: states}}
	s.refund(context.Background(), s.conn.Load().client, []store.Check{c}, cost, calls, []int{0})
}

// stateOf reads the state of key back from Redis, the zero State when the
// key is missing or another algorithm wrote it.
func stateOf(t *testing.T, addr, key string, kind algorithm.Kind) algorithm.State {
	t.Helper()
	const decode = `local v = redis.call('GET', KEYS[1])
if not v then return {} end
local a, b, c, k = cmsgpack.unpack(v)
return {string.format('%.0f', a), string.format('%.0f', b), string.format('%.0f', c), k}`
	out, err := redistest.Command(addr, "EVAL", decode, "1", key)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 4 || f[3] != strconv.Itoa(int(kind)) {
		return algorithm.State{}
	}
	a, _ := strconv.ParseInt(f[0], 10, 64)
	b, _ := strconv.ParseInt(f[1], 10, 64)
	c, _ := strconv.ParseInt(f[2], 10, 64)
	return algorithm.State{A: a, B: b, C: c}
}

// TestRefundNeverGivesMoreThanUncharged charges a key, lets other requests
// charge it, refunds the first charge, and compares the key with the state
// it would have had without the first charge: the refunded key must never
// admit a request that state would deny.
func TestRefundNeverGivesMoreThanUncharged(t *testing.T) {
	clock := newFakeClock()
	s, srv := newStore(t, Config{Now: clock.Now})
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(kind), 11))
			for trial := 0; trial < 60; trial++ {
				refundTrial(t, rng, s, srv.Addr, clock, kind, trial)
			}
		})
	}
}

func refundTrial(t *testing.T, rng *rand.Rand, s *Store, addr string, clock *fakeClock, kind algorithm.Kind, trial int) {
	t.Helper()
	l := randomLimit(rng)
	l.MaxWait = 0 // the wait bound makes admission depend on more than the budget
	c := store.Check{Key: fmt.Sprintf("test:refund:%v:{%d}:x", kind, trial), Algorithm: kind, Limit: l}
	step := func() { clock.AdvanceMicros(rng.Int64N(l.Window / 3)) }

	// Some traffic before, then the charge to refund.
	var cf algorithm.State
	for i := 0; i < rng.IntN(6); i++ {
		step()
		cost := 1 + rng.Int64N(l.Capacity())
		if ok, _ := apply(t, s, cost, c); ok {
			cf, _ = algorithm.Decide(kind, cf, clock.Micros(), l, cost)
		}
	}
	step()
	cost := 1 + rng.Int64N(l.Capacity())
	ok, states := charge(t, s, c, cost)
	if !ok {
		return
	}

	// Other requests charge the key before the refund, or none do.
	for i := 0; i < rng.IntN(4); i++ {
		if rng.IntN(2) == 0 {
			step()
		}
		other := 1 + rng.Int64N(l.Capacity())
		if ok, _ := apply(t, s, other, c); ok {
			cf, _ = algorithm.Decide(kind, cf, clock.Micros(), l, other)
		}
	}
	if rng.IntN(2) == 0 {
		step()
	}
	refundOne(s, c, cost, states)
	got := stateOf(t, addr, c.Key, kind)

	for _, ahead := range []int64{0, l.Window / 7, l.Window / 2, l.Window} {
		at := clock.Micros() + ahead
		for probe := int64(1); probe <= l.Capacity(); probe++ {
			_, dGot := algorithm.Decide(kind, got, at, l, probe)
			_, dWant := algorithm.Decide(kind, cf, at, l, probe)
			if dGot.Allowed && !dWant.Allowed {
				t.Fatalf("trial %d %+v: after refunding cost %d, cost %d at +%dµs is admitted by %+v "+
					"but denied without the charge (%+v)", trial, l, cost, probe, ahead, got, cf)
			}
		}
	}
}
