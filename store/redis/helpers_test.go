package redis

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
)

// fakeClock is a clock that moves only when a test moves it.
type fakeClock struct{ us atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	// A round start keeps window boundaries predictable.
	c.us.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	return c
}

func (c *fakeClock) Now() time.Time            { return time.UnixMicro(c.us.Load()) }
func (c *fakeClock) Micros() int64             { return c.us.Load() }
func (c *fakeClock) Advance(d time.Duration)   { c.us.Add(d.Microseconds()) }
func (c *fakeClock) AdvanceMicros(us int64)    { c.us.Add(us) }
func (c *fakeClock) Set(t time.Time)           { c.us.Store(t.UnixMicro()) }
func (c *fakeClock) String() string            { return c.Now().UTC().Format(time.RFC3339Nano) }
func (c *fakeClock) Since(t0 time.Time) string { return c.Now().Sub(t0).String() }

// testTimeout replaces the 50ms default timeout in tests that do not test
// the timeout: `make test` runs every package at once under the race
// detector on two cores, where a round trip can take longer.
const testTimeout = 5 * time.Second

// newStore starts a redis-server and returns a Store on it with cfg, whose
// URL it sets, and whose Timeout it sets to testTimeout when zero.
func newStore(t testing.TB, cfg Config) (*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	cfg.URL = "redis://" + srv.Addr + "/0"
	if cfg.Timeout == 0 {
		cfg.Timeout = testTimeout
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s) = %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, srv
}

// newClient returns a rueidis client for addrs that the test closes.
func newClient(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("connecting to %v: %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// check returns a store.Check of kind with quota requests per window.
func check(key string, kind algorithm.Kind, quota int64, window time.Duration) store.Check {
	return store.Check{
		Key:       key,
		Algorithm: kind,
		Limit:     algorithm.Limit{Quota: quota, Window: window.Microseconds()},
	}
}

// apply calls s.Apply and fails the test on an error.
func apply(t testing.TB, s store.Store, cost int64, checks ...store.Check) (bool, []algorithm.Decision) {
	t.Helper()
	out := make([]algorithm.Decision, len(checks))
	ok, err := s.Apply(context.Background(), checks, cost, out)
	if err != nil {
		t.Fatalf("Apply(%s) = %v", checks[0].Key, err)
	}
	return ok, out
}

// keysWithoutTTL scans every key of the servers and returns those without
// an expiry.
func keysWithoutTTL(t testing.TB, c rueidis.Client) (all, missing []string) {
	t.Helper()
	ctx := context.Background()
	for addr, node := range c.Nodes() {
		if role, _ := node.Do(ctx, node.B().Role().Build()).ToArray(); len(role) > 0 {
			if r, _ := role[0].ToString(); r != "master" {
				continue
			}
		}
		var cursor uint64
		for {
			entry, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatalf("SCAN on %s: %v", addr, err)
			}
			for _, key := range entry.Elements {
				all = append(all, key)
				ttl, err := node.Do(ctx, node.B().Pttl().Key(key).Build()).AsInt64()
				if err != nil {
					t.Fatalf("PTTL %s: %v", key, err)
				}
				if ttl < 0 {
					missing = append(missing, key)
				}
			}
			if cursor = entry.Cursor; cursor == 0 {
				break
			}
		}
	}
	return all, missing
}

func keyList(keys []string) string {
	if len(keys) > 5 {
		keys = append(keys[:5:5], "...")
	}
	return strings.Join(keys, ", ")
}
