package nearcache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
	"github.com/calm-limiter/calm/store/redis"
)

// frozenClock is a clock that moves only when a test moves it.
type frozenClock struct{ us atomic.Int64 }

func newFrozenClock() *frozenClock {
	c := &frozenClock{}
	c.us.Store(time.Date(2030, 1, 1, 0, 0, 10, 0, time.UTC).UnixMicro())
	return c
}

func (c *frozenClock) Now() time.Time          { return time.UnixMicro(c.us.Load()) }
func (c *frozenClock) Advance(d time.Duration) { c.us.Add(d.Microseconds()) }

// countingStore counts the calls that reach a shared store.
type countingStore struct {
	store.Store
	calls atomic.Int64
}

func (c *countingStore) Apply(ctx context.Context, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	c.calls.Add(1)
	return c.Store.Apply(ctx, checks, cost, out)
}

func testCheck(kind algorithm.Kind, quota int64) store.Check {
	return store.Check{
		Key:       fmt.Sprintf("test:near:%v:{c}:60", kind),
		Algorithm: kind,
		Limit:     algorithm.Limit{Quota: quota, Window: time.Minute.Microseconds()},
	}
}

func apply(t *testing.T, s store.Store, c store.Check, cost int64) (bool, algorithm.Decision) {
	t.Helper()
	var out [1]algorithm.Decision
	ok, err := s.Apply(context.Background(), []store.Check{c}, cost, out[:])
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	return ok, out[0]
}

func TestLeaseGrowsWithDemandAndSavesCalls(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock()
	mem := memory.New(memory.Config{Clock: clock.Now})
	shared := &countingStore{Store: mem}
	s, err := New(Config{Store: shared, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := testCheck(algorithm.TokenBucket, 1000)
	admitted := 0
	for i := 0; i < 1000; i++ {
		if ok, _ := apply(t, s, c, 1); ok {
			admitted++
		}
	}
	if admitted != 1000 {
		t.Errorf("admitted %d of 1000 requests on a limit of 1000, want 1000", admitted)
	}
	if n := shared.calls.Load(); n > 100 {
		t.Errorf("%d calls reached the shared store for 1000 requests, want far fewer", n)
	}
	if ok, _ := apply(t, s, c, 1); ok {
		t.Error("request 1001 admitted on a limit of 1000")
	}
}

func TestQuietKeyLeasesOneAtATime(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock()
	mem := memory.New(memory.Config{Clock: clock.Now})
	shared := &countingStore{Store: mem}
	s, _ := New(Config{Store: shared, Now: clock.Now})
	defer s.Close()
	c := testCheck(algorithm.SlidingWindow, 10)
	for i := 1; i <= 10; i++ {
		clock.Advance(time.Second)
		ok, d := apply(t, s, c, 1)
		if !ok {
			t.Fatalf("request %d, one per second on 10/minute: denied, want admitted", i)
		}
		if d.Remaining != int64(10-i) {
			t.Errorf("request %d: Remaining = %d, want %d", i, d.Remaining, 10-i)
		}
	}
	if n := shared.calls.Load(); n != 10 {
		t.Errorf("quiet key: %d calls to the shared store for 10 requests, want 10", n)
	}
}

func TestDenialIsCachedUntilRetryAfter(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock()
	mem := memory.New(memory.Config{Clock: clock.Now})
	shared := &countingStore{Store: mem}
	s, _ := New(Config{Store: shared, Now: clock.Now})
	defer s.Close()
	c := testCheck(algorithm.FixedWindow, 2)
	apply(t, s, c, 1)
	apply(t, s, c, 1)
	ok, d := apply(t, s, c, 1)
	if ok || d.RetryAfter <= 0 {
		t.Fatalf("third request = %v, %+v, want a denial with RetryAfter", ok, d)
	}
	before := shared.calls.Load()
	clock.Advance(time.Second)
	ok, cached := apply(t, s, c, 1)
	if ok {
		t.Fatal("request during the cached denial admitted")
	}
	if shared.calls.Load() != before {
		t.Error("a request during the cached denial reached the shared store")
	}
	if want := d.RetryAfter - time.Second.Microseconds(); cached.RetryAfter != want {
		t.Errorf("cached RetryAfter = %d, want %d", cached.RetryAfter, want)
	}
	clock.Advance(time.Duration(d.RetryAfter) * time.Microsecond)
	if ok, _ := apply(t, s, c, 1); !ok {
		t.Error("request after RetryAfter denied, want admitted")
	}
}

func TestLeaseEndsWithTheWindow(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock()
	mem := memory.New(memory.Config{Clock: clock.Now})
	s, _ := New(Config{Store: mem, Now: clock.Now, LeaseTime: time.Hour})
	defer s.Close()
	c := testCheck(algorithm.FixedWindow, 1000)
	for i := 0; i < 200; i++ {
		apply(t, s, c, 1)
	}
	// Move into the next window: leased units of the old one must not be
	// used there, so the new window's count starts from the shared store.
	clock.Advance(time.Minute)
	_, d := apply(t, s, c, 1)
	if d.Remaining > 999 {
		t.Errorf("first request of the next window: Remaining = %d, want at most 999", d.Remaining)
	}
	_, fresh := apply(t, mem, c, 0)
	if fresh.Remaining == 1000 {
		t.Error("the shared store was not charged in the new window")
	}
}

// TestOverAdmissionAcrossInstances measures 2 and 4 servers, each with its
// own Redis client and near-cache, sending concurrent requests to one key
// with a limit of 100, against a naive near-cache that counts locally and
// syncs every 10 requests. The near-cache must never pass the limit.
func TestOverAdmissionAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFrozenClock()
	for _, instances := range []int{2, 4} {
		for _, kind := range []algorithm.Kind{algorithm.FixedWindow, algorithm.SlidingWindow,
			algorithm.TokenBucket, algorithm.GCRA} {
			t.Run(fmt.Sprintf("%d_instances/%v", instances, kind), func(t *testing.T) {
				c := testCheck(kind, 100)
				c.Key = fmt.Sprintf("test:near:%d:%v:{c}:60", instances, kind)
				admitted, calls := runInstances(t, srv, clock, instances, c)
				naive := runNaive(t, srv, instances, fmt.Sprintf("test:naive:%d:%v", instances, kind))
				t.Logf("%d instances, %v, limit 100, %d requests: near-cache admitted %d with %d calls "+
					"to Redis; naive near-cache admitted %d", instances, kind, instances*(300/8)*8,
					admitted, calls, naive)
				if admitted > 100 {
					t.Errorf("near-cache admitted %d over a limit of 100", admitted)
				}
			})
		}
	}
}

// runInstances sends 300 requests per instance from 8 goroutines each and
// returns how many were admitted in total.
func runInstances(t *testing.T, srv *redistest.Server, clock *frozenClock, instances int, c store.Check) (admitted, calls int64) {
	t.Helper()
	var admittedN atomic.Int64
	var counters []*countingStore
	var wg sync.WaitGroup
	for i := 0; i < instances; i++ {
		rs, err := redis.New(redis.Config{URL: "redis://" + srv.Addr, Now: clock.Now, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		counted := &countingStore{Store: rs}
		counters = append(counters, counted)
		s, _ := New(Config{Store: counted, Now: clock.Now})
		defer s.Close()
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < 300/8; r++ {
					var out [1]algorithm.Decision
					ok, err := s.Apply(context.Background(), []store.Check{c}, 1, out[:])
					if err != nil {
						t.Errorf("Apply = %v", err)
						return
					}
					if ok {
						admittedN.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, c := range counters {
		calls += c.calls.Load()
	}
	return admittedN.Load(), calls
}

// runNaive runs the naive near-cache: each instance admits while its last
// synced total plus its unsynced local count stays under 100, and adds its
// local count to a shared Redis counter every 10 requests.
func runNaive(t *testing.T, srv *redistest.Server, instances int, key string) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < instances; i++ {
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		var mu sync.Mutex
		var synced, local, seen int64
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < 300/8; r++ {
					mu.Lock()
					if synced+local < 100 {
						local++
						admitted.Add(1)
					}
					seen++
					if seen%10 == 0 {
						n, err := client.Do(context.Background(),
							client.B().Incrby().Key(key).Increment(local).Build()).AsInt64()
						if err != nil {
							t.Errorf("INCRBY: %v", err)
						}
						synced, local = n, 0
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return admitted.Load()
}
