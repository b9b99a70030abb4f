package redis

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// TestBatchDeniedRequestChargesNothing sends three requests in one script
// call: the second is denied by one of its checks, so it must leave the
// other check's key as the first request charged it.
func TestBatchDeniedRequestChargesNothing(t *testing.T) {
	t.Parallel()
	s, srv := newStore(t, Config{})
	c := newClient(t, srv.Addr)
	clock := newFakeClock()
	wide := check("batch:{k}:wide", algorithm.FixedWindow, 10, time.Minute)
	narrow := check("batch:{k}:narrow", algorithm.FixedWindow, 1, time.Minute)

	var sc scratch
	sc.reset(strconv.FormatInt(clock.Micros(), 10), modeCharge)
	sc.addRequest([]store.Check{wide, narrow}, 1)
	sc.addRequest([]store.Check{wide, narrow}, 1)
	sc.addRequest([]store.Check{wide}, 1)
	vals, err := sc.script().exec(context.Background(), c, sc.keys, sc.finish()).ToArray()
	if err != nil {
		t.Fatalf("script call = %v", err)
	}
	tests := []struct {
		name          string
		checks        []store.Check
		wantAllowed   bool
		wantRemaining int64
	}{
		{name: "first charges both", checks: []store.Check{wide, narrow}, wantAllowed: true, wantRemaining: 9},
		{name: "second is denied", checks: []store.Check{wide, narrow}, wantAllowed: false, wantRemaining: 9},
		{name: "third sees the first only", checks: []store.Check{wide}, wantAllowed: true, wantRemaining: 8},
	}
	i := 1
	for _, tt := range tests {
		out := make([]algorithm.Decision, len(tt.checks))
		var allowed bool
		if allowed, i, err = parseRequest(vals, i, tt.checks, out, nil); err != nil {
			t.Fatalf("%s: parsing the reply: %v", tt.name, err)
		}
		if allowed != tt.wantAllowed || out[0].Remaining != tt.wantRemaining {
			t.Errorf("%s: allowed, remaining = %v, %d, want %v, %d",
				tt.name, allowed, out[0].Remaining, tt.wantAllowed, tt.wantRemaining)
		}
	}

	// The stored state holds the two charges, seen by a request of cost 0.
	s.now = clock.Now
	if _, out := apply(t, s, 0, wide); out[0].Remaining != 8 {
		t.Errorf("Apply(wide, cost 0).Remaining = %d, want 8", out[0].Remaining)
	}
}
