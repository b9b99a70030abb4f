package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
)

func TestApplyAdmitsQuotaThenDenies(t *testing.T) {
	clock := newFakeClock()
	s, _ := newStore(t, Config{Now: clock.Now})
	c := check("test:quota:{a}:60", algorithm.FixedWindow, 3, time.Minute)
	for i := 1; i <= 3; i++ {
		ok, d := apply(t, s, 1, c)
		if !ok || !d[0].Allowed {
			t.Fatalf("Apply(request %d) = false, want true", i)
		}
		if d[0].Remaining != int64(3-i) {
			t.Errorf("Apply(request %d).Remaining = %d, want %d", i, d[0].Remaining, 3-i)
		}
	}
	ok, d := apply(t, s, 1, c)
	if ok {
		t.Fatalf("Apply(request 4) = true, want false")
	}
	if d[0].Reason != algorithm.ReasonLimited || d[0].RetryAfter <= 0 {
		t.Errorf("Apply(request 4) = %+v, want ReasonLimited with a RetryAfter", d[0])
	}
	clock.Advance(time.Minute)
	if ok, _ := apply(t, s, 1, c); !ok {
		t.Errorf("Apply(next window) = false, want true")
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	clock := newFakeClock()
	s, _ := newStore(t, Config{Now: clock.Now})
	wide := check("test:aon:{a}:3600", algorithm.FixedWindow, 10, time.Hour)
	narrow := check("test:aon:{a}:60", algorithm.FixedWindow, 1, time.Minute)

	if ok, _ := apply(t, s, 1, wide, narrow); !ok {
		t.Fatalf("Apply(first) = false, want true")
	}
	ok, d := apply(t, s, 1, wide, narrow)
	if ok {
		t.Fatalf("Apply(second) = true, want false")
	}
	if !d[0].Allowed || d[1].Allowed {
		t.Errorf("Apply(second) decisions allowed = %v, %v, want true, false", d[0].Allowed, d[1].Allowed)
	}
	// The denied request must not have charged the wide rule.
	_, d = apply(t, s, 0, wide)
	if d[0].Remaining != 9 {
		t.Errorf("wide rule Remaining after a denied request = %d, want 9", d[0].Remaining)
	}
}

func TestApplyRejectsInvalidChecks(t *testing.T) {
	s, _ := newStore(t, Config{})
	tests := []struct {
		name  string
		check store.Check
	}{
		{name: "zero quota", check: check("k", algorithm.FixedWindow, 0, time.Minute)},
		{name: "zero window", check: check("k", algorithm.FixedWindow, 1, 0)},
		{name: "unknown algorithm", check: check("k", algorithm.Kind(99), 1, time.Minute)},
		{name: "product over 2^53", check: check("k", algorithm.FixedWindow, 1<<40, 1<<20*time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]algorithm.Decision, 1)
			_, err := s.Apply(context.Background(), []store.Check{tt.check}, 1, out)
			if !errors.Is(err, algorithm.ErrInvalidLimit) {
				t.Errorf("Apply(%s) error = %v, want ErrInvalidLimit", tt.name, err)
			}
		})
	}
	_, err := s.Apply(context.Background(), []store.Check{check("k", 0, 1, time.Second)}, 1, nil)
	if err == nil {
		t.Errorf("Apply(out too short) error = nil, want an error")
	}
}

func TestApplyAfterClose(t *testing.T) {
	s, _ := newStore(t, Config{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	out := make([]algorithm.Decision, 1)
	_, err := s.Apply(context.Background(), []store.Check{check("k", 0, 1, time.Second)}, 1, out)
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("Apply after Close error = %v, want ErrClosed", err)
	}
}

// TestScriptFlushReloads flushes the script cache of a real Redis and
// expects the next Apply to succeed after one transparent reload.
func TestScriptFlushReloads(t *testing.T) {
	clock := newFakeClock()
	s, srv := newStore(t, Config{Now: clock.Now})
	c := check("test:flush:{a}:60", algorithm.FixedWindow, 5, time.Minute)
	apply(t, s, 1, c)
	if out, err := redistest.Command(srv.Addr, "SCRIPT", "FLUSH"); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v %s", err, out)
	}
	if out, _ := redistest.Command(srv.Addr, "SCRIPT", "EXISTS", scriptFor(c.Algorithm, false).sha); out != "0\n" {
		t.Fatalf("SCRIPT EXISTS after flush = %q, want 0", out)
	}
	ok, d := apply(t, s, 1, c)
	if !ok || d[0].Remaining != 3 {
		t.Errorf("Apply after SCRIPT FLUSH = %v remaining %d, want true remaining 3", ok, d[0].Remaining)
	}
	if out, _ := redistest.Command(srv.Addr, "SCRIPT", "EXISTS", scriptFor(c.Algorithm, false).sha); out != "1\n" {
		t.Errorf("SCRIPT EXISTS after reload = %q, want 1", out)
	}
}

func TestRedisTimeIsDefault(t *testing.T) {
	s, _ := newStore(t, Config{})
	c := check("test:time:{a}:1", algorithm.FixedWindow, 100, time.Second)
	_, d := apply(t, s, 1, c)
	if d[0].ResetAfter <= 0 || d[0].ResetAfter > time.Second.Microseconds() {
		t.Errorf("ResetAfter with Redis TIME = %dµs, want within (0, 1s]", d[0].ResetAfter)
	}
}

// TestEveryKeyHasTTL runs every algorithm with several limits and costs,
// then scans Redis and fails on any key without an expiry.
func TestEveryKeyHasTTL(t *testing.T) {
	s, srv := newStore(t, Config{})
	kinds := []algorithm.Kind{algorithm.SlidingWindow, algorithm.FixedWindow, algorithm.TokenBucket,
		algorithm.LeakyBucket, algorithm.LeakyQueue, algorithm.GCRA}
	for _, kind := range kinds {
		for i, window := range []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour} {
			key := fmt.Sprintf("test:ttl:%v:{client%d}:%d", kind, i, int(window.Seconds()))
			c := check(key, kind, 5, window)
			c.Limit.Burst = int64(i)
			c.Limit.MaxWait = window.Microseconds() / 2
			for _, cost := range []int64{0, 1, 3, 10} {
				apply(t, s, cost, c)
			}
		}
	}
	all, missing := keysWithoutTTL(t, newClient(t, srv.Addr))
	if len(all) == 0 {
		t.Fatal("no keys written")
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d keys have no TTL: %s", len(missing), len(all), keyList(missing))
	}
}

// TestConcurrentAppliesAdmitExactly sends 200 concurrent requests at a limit
// of 10 through 3 stores with their own clients.
func TestConcurrentAppliesAdmitExactly(t *testing.T) {
	srv := redistest.Start(t)
	var stores []*Store
	for i := 0; i < 3; i++ {
		s, err := New(Config{URL: "redis://" + srv.Addr, Timeout: testTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	for _, kind := range []algorithm.Kind{algorithm.SlidingWindow, algorithm.FixedWindow,
		algorithm.TokenBucket, algorithm.LeakyBucket, algorithm.GCRA} {
		t.Run(kind.String(), func(t *testing.T) {
			c := check("test:exact:"+kind.String()+":{c}:60", kind, 10, time.Minute)
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for i := 0; i < 200; i++ {
				wg.Add(1)
				go func(s *Store) {
					defer wg.Done()
					out := make([]algorithm.Decision, 1)
					ok, err := s.Apply(context.Background(), []store.Check{c}, 1, out)
					if err != nil {
						t.Errorf("Apply = %v", err)
					}
					if ok {
						admitted.Add(1)
					}
				}(stores[i%3])
			}
			wg.Wait()
			if n := admitted.Load(); n != 10 {
				t.Errorf("admitted %d of 200 concurrent requests, want exactly 10", n)
			}
		})
	}
}

// TestBatchSurvivesAbandonedRequests lets many requests give up while they
// wait in the batcher for a hung Redis, then expects the store to work as
// soon as Redis replies again, so that no request is stuck holding the lead.
func TestBatchSurvivesAbandonedRequests(t *testing.T) {
	s, srv := newStore(t, Config{Timeout: 300 * time.Millisecond})
	c := check("test:abandon:{a}:60", algorithm.FixedWindow, 1000, time.Minute)
	apply(t, s, 1, c)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(10+i)*time.Millisecond)
			defer cancel()
			out := make([]algorithm.Decision, 1)
			if _, err := s.Apply(ctx, []store.Check{c}, 1, out); err != nil {
				failed.Add(1)
				if !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("Apply against a hung redis = %v, want ErrUnavailable", err)
				}
			}
		}(i)
	}
	wg.Wait()
	if failed.Load() != 60 {
		t.Errorf("%d of 60 requests failed against a hung redis, want 60", failed.Load())
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := make([]algorithm.Decision, 1)
		_, err := s.Apply(context.Background(), []store.Check{c}, 1, out)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apply still fails 10s after redis resumed: %v", err)
		}
	}
	for i := 0; i < 20; i++ {
		apply(t, s, 1, c)
	}
}

// TestForeignValueReadsAsFresh writes values calm did not write into a key
// and expects a fresh state rather than a script error.
func TestForeignValueReadsAsFresh(t *testing.T) {
	clock := newFakeClock()
	s, srv := newStore(t, Config{Now: clock.Now})
	c := check("test:foreign:{a}:60", algorithm.TokenBucket, 5, time.Minute)
	for _, value := range []string{"garbage", "1 2 3 2", "\x93\x01\x02\x03"} {
		if out, err := redistest.Command(srv.Addr, "SET", c.Key, value); err != nil {
			t.Fatalf("SET: %v %s", err, out)
		}
		ok, d := apply(t, s, 1, c)
		if !ok || d[0].Remaining != 4 {
			t.Errorf("Apply over the value %q = %v remaining %d, want true remaining 4", value, ok, d[0].Remaining)
		}
	}
}

// TestManyChecksInOneRequest sends one request with more checks than Lua's
// stack holds values at once.
func TestManyChecksInOneRequest(t *testing.T) {
	s, _ := newStore(t, Config{})
	checks := make([]store.Check, 10000)
	for i := range checks {
		checks[i] = check(fmt.Sprintf("test:many:{a}:%d", i), algorithm.FixedWindow, 2, time.Minute)
	}
	out := make([]algorithm.Decision, len(checks))
	for round, want := range []bool{true, true, false} {
		ok, err := s.Apply(context.Background(), checks, 1, out)
		if err != nil {
			t.Fatalf("Apply(10000 checks) = %v", err)
		}
		if ok != want {
			t.Errorf("Apply(10000 checks), round %d = %v, want %v", round+1, ok, want)
		}
	}
}
