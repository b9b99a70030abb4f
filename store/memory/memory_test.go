package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// testClock is a clock that moves only when a test moves it.
type testClock struct{ micros atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.micros.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	return c
}

func (c *testClock) Now() time.Time          { return time.UnixMicro(c.micros.Load()) }
func (c *testClock) Advance(d time.Duration) { c.micros.Add(d.Microseconds()) }

func perMinute(n int64) algorithm.Limit {
	return algorithm.Limit{Quota: n, Window: time.Minute.Microseconds()}
}

func perWindow(n int64, window time.Duration) algorithm.Limit {
	return algorithm.Limit{Quota: n, Window: window.Microseconds()}
}

func check(key string, l algorithm.Limit) store.Check {
	return store.Check{Key: key, Algorithm: algorithm.FixedWindow, Limit: l}
}

// newTestStore returns a store on clk with at most the given number of
// shards, closed when the test ends.
func newTestStore(t testing.TB, clk *testClock, maxKeys, shards int) *Store {
	t.Helper()
	return newTestStoreGrowing(t, clk, maxKeys, shards, startKeys)
}

// newTestStoreGrowing is newTestStore with tables that start with room for
// firstKeys keys and grow from there.
func newTestStoreGrowing(t testing.TB, clk *testClock, maxKeys, shards, firstKeys int) *Store {
	t.Helper()
	s := newStore(Config{MaxKeys: maxKeys, Clock: clk.Now}, shards, firstKeys)
	t.Cleanup(func() { s.Close() })
	return s
}

// apply runs one check of cost 1 and fails the test on error.
func apply(t testing.TB, s *Store, c store.Check) algorithm.Decision {
	t.Helper()
	out := make([]algorithm.Decision, 1)
	if _, err := s.Apply(context.Background(), []store.Check{c}, 1, out); err != nil {
		t.Fatalf("Apply(%q) error: %v", c.Key, err)
	}
	return out[0]
}

// keysInDistinctShards returns two keys that fall in different shards of s.
func keysInDistinctShards(t *testing.T, s *Store) (string, string) {
	t.Helper()
	first := "a"
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("b%d", i)
		if s.shardOf(s.hash(k)) != s.shardOf(s.hash(first)) {
			return first, k
		}
	}
	t.Fatal("no two keys in distinct shards")
	return "", ""
}

func TestApplyLimitsOneKey(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 0, maxShards)
	c := check("k", perMinute(3))

	for i := 1; i <= 3; i++ {
		if d := apply(t, s, c); !d.Allowed || d.Remaining != int64(3-i) {
			t.Fatalf("request %d = %+v, want allowed with remaining %d", i, d, 3-i)
		}
	}
	if d := apply(t, s, c); d.Allowed {
		t.Fatalf("request 4 = %+v, want denied", d)
	}
	clk.Advance(time.Minute)
	if d := apply(t, s, c); !d.Allowed {
		t.Fatalf("request after a minute = %+v, want allowed", d)
	}
}

func TestApplyEvictsSoonestExpiry(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 3, 1)
	minute, hour, day := perMinute(1), perWindow(1, time.Hour), perWindow(1, 24*time.Hour)

	apply(t, s, check("hour", hour))
	apply(t, s, check("minute", minute))
	apply(t, s, check("day", day))
	apply(t, s, check("new", hour))
	wantContains(t, s, map[string]bool{"hour": true, "minute": false, "day": true, "new": true})

	if n := s.Len(); n != 3 {
		t.Errorf("Len() = %d, want 3", n)
	}
}

func wantContains(t *testing.T, s *Store, want map[string]bool) {
	t.Helper()
	for key, w := range want {
		if got := s.contains(key); got != w {
			t.Errorf("contains(%q) = %v, want %v", key, got, w)
		}
	}
}

func TestApplyNeverExceedsMaxKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		maxKeys int
	}{
		{name: "one key", maxKeys: 1},
		{name: "fewer keys than shards", maxKeys: 5},
		{name: "many shards", maxKeys: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, newTestClock(), tc.maxKeys, maxShards)
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 1000; i++ {
						apply(t, s, mixedCheck(fmt.Sprintf("g%d-k%d", g, i), i))
					}
				}()
			}
			wg.Wait()
			checkInvariants(t, s)
			if n := s.Len(); n > tc.maxKeys || n == 0 {
				t.Errorf("Len() = %d, want between 1 and %d", n, tc.maxKeys)
			}
		})
	}
}

// mixedCheck returns a check on key whose kind and limit vary with i,
// including a limit with no compact form, so that keys land in the
// compact table and in the wide map alike.
func mixedCheck(key string, i int) store.Check {
	c := store.Check{Key: key, Algorithm: benchKinds[i%len(benchKinds)], Limit: perMinute(5)}
	if i%7 == 0 {
		c.Algorithm = algorithm.SlidingWindow
		c.Limit = algorithm.Limit{Quota: 1 << 40, Window: 1000}
	}
	return c
}

func TestSweepDropsExpiredKeys(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 0, maxShards)
	short := algorithm.Limit{Quota: 1, Window: time.Second.Microseconds()}
	long := algorithm.Limit{Quota: 1, Window: time.Hour.Microseconds()}
	apply(t, s, check("short", short))
	apply(t, s, check("long", long))

	if n := s.sweep(); n != 0 {
		t.Fatalf("sweep() at once dropped %d keys, want 0", n)
	}
	clk.Advance(time.Minute)
	if n := s.sweep(); n != 1 {
		t.Fatalf("sweep() after a minute dropped %d keys, want 1", n)
	}
	if s.contains("short") || !s.contains("long") {
		t.Fatalf("after sweep: contains(short) = %v, contains(long) = %v, want false, true",
			s.contains("short"), s.contains("long"))
	}
	clk.Advance(24 * time.Hour)
	if n := s.sweep(); n != 1 {
		t.Fatalf("sweep() after a day dropped %d keys, want 1", n)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len() = %d, want 0", n)
	}
}

func TestApplyReadsExpiredKeyAsFresh(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 0, maxShards)
	c := check("k", algorithm.Limit{Quota: 1, Window: time.Second.Microseconds()})
	apply(t, s, c)
	if d := apply(t, s, c); d.Allowed {
		t.Fatalf("second request = %+v, want denied", d)
	}
	clk.Advance(time.Hour)
	if d := apply(t, s, c); !d.Allowed {
		t.Fatalf("request an hour later = %+v, want allowed", d)
	}
}

func TestApplyConcurrentAdmitsExactlyQuota(t *testing.T) {
	t.Parallel()
	for _, kind := range benchKinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, newTestClock(), 0, maxShards)
			c := []store.Check{{Key: "login", Algorithm: kind, Limit: perMinute(10)}}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					out := make([]algorithm.Decision, 1)
					ok, err := s.Apply(context.Background(), c, 1, out)
					if err != nil {
						t.Errorf("Apply error: %v", err)
					}
					if ok {
						admitted.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if n := admitted.Load(); n != 10 {
				t.Fatalf("200 concurrent requests on 10/minute admitted %d, want 10", n)
			}
		})
	}
}

func TestApplyAllOrNothingAcrossShards(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	k1, k2 := keysInDistinctShards(t, s)
	checks := []store.Check{check(k1, perMinute(5)), check(k2, perMinute(1))}
	out := make([]algorithm.Decision, 2)

	ok, err := s.Apply(context.Background(), checks, 1, out)
	if err != nil || !ok {
		t.Fatalf("first Apply = %v, %v, want true, nil", ok, err)
	}
	for i := 0; i < 3; i++ {
		ok, err = s.Apply(context.Background(), checks, 1, out)
		if err != nil || ok {
			t.Fatalf("Apply %d = %v, %v, want false, nil", i+2, ok, err)
		}
		if out[1].Allowed {
			t.Fatalf("Apply %d decision for %s = %+v, want denied", i+2, k2, out[1])
		}
	}
	if d := apply(t, s, check(k1, perMinute(5))); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("Apply(%s) after denied calls = %+v, want allowed with remaining 3", k1, d)
	}
}

func TestApplyOppositeOrdersDoNotDeadlock(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	k1, k2 := keysInDistinctShards(t, s)
	l := perMinute(1_000_000)
	orders := [][]store.Check{
		{check(k1, l), check(k2, l)},
		{check(k2, l), check(k1, l)},
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]algorithm.Decision, 2)
			for i := 0; i < 500; i++ {
				if _, err := s.Apply(context.Background(), orders[(g+i)%2], 1, out); err != nil {
					t.Errorf("Apply error: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if d := apply(t, s, check(k1, l)); d.Remaining != 1_000_000-4001 {
		t.Fatalf("Remaining(%s) = %d, want %d", k1, d.Remaining, 1_000_000-4001)
	}
}

func TestApplySameKeyTwiceChargesTwice(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	c := check("k", perMinute(3))
	out := make([]algorithm.Decision, 2)
	ok, err := s.Apply(context.Background(), []store.Check{c, c}, 1, out)
	if err != nil || !ok {
		t.Fatalf("Apply = %v, %v, want true, nil", ok, err)
	}
	if out[1].Remaining != 1 {
		t.Fatalf("second decision Remaining = %d, want 1", out[1].Remaining)
	}
	if d := apply(t, s, c); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("third request = %+v, want allowed with remaining 0", d)
	}
}

func TestApplyRejectsBadInput(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	good := check("k", perMinute(1))
	bg := context.Background()
	// withSecond returns good followed by a check on another key under l.
	withSecond := func(l algorithm.Limit) []store.Check {
		return []store.Check{good, check("k2", l)}
	}
	tests := []struct {
		name    string
		ctx     context.Context
		checks  []store.Check
		out     int
		wantErr error
	}{
		{"zero quota", bg, withSecond(algorithm.Limit{Window: 1}), 2, algorithm.ErrInvalidLimit},
		{"negative window", bg, withSecond(algorithm.Limit{Quota: 1, Window: -1}), 2, algorithm.ErrInvalidLimit},
		{"overflowing limit", bg, withSecond(algorithm.Limit{Quota: 1 << 40, Window: 1 << 20}), 2,
			algorithm.ErrInvalidLimit},
		{"short output", bg, []store.Check{good, good}, 1, ErrShortOutput},
		{"canceled context", canceled, []store.Check{good}, 1, context.Canceled},
	}
	for _, tc := range tests {
		ok, err := s.Apply(tc.ctx, tc.checks, 1, make([]algorithm.Decision, tc.out))
		if ok || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: Apply = %v, %v, want false, %v", tc.name, ok, err, tc.wantErr)
		}
	}
	if d := apply(t, s, good); !d.Allowed {
		t.Fatalf("Apply(k) after rejected calls = %+v, want allowed", d)
	}
}

func TestApplyNoChecksAllows(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	ok, err := s.Apply(context.Background(), nil, 1, nil)
	if !ok || err != nil {
		t.Fatalf("Apply(no checks) = %v, %v, want true, nil", ok, err)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	t.Parallel()
	s := New(Config{CleanupInterval: time.Millisecond})
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("sweeper still running after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
	checks := []store.Check{check("k", perMinute(1))}
	_, err := s.Apply(context.Background(), checks, 1, make([]algorithm.Decision, 1))
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Apply after Close error = %v, want %v", err, store.ErrClosed)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero", cfg: Config{}},
		{
			name:    "negative max keys",
			cfg:     Config{MaxKeys: -1},
			wantErr: "RATELIMIT_MEMORY_MAX_KEYS is -1",
		},
		{
			name:    "negative interval",
			cfg:     Config{CleanupInterval: -time.Second},
			wantErr: "RATELIMIT_MEMORY_CLEANUP_INTERVAL is -1s",
		},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

// checkInvariants fails the test when a shard's count differs from its
// occupied slots plus wide entries, or exceeds its capacity.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		occupied := len(sh.wide)
		for pos := range sh.words.n {
			if sh.words.get(pos) != 0 {
				occupied++
				checkSlotHash(t, sh, i, pos)
			}
		}
		count, capacity := sh.count, sh.cap
		room, level := sh.room, sh.level
		sh.mu.Unlock()
		if count != occupied || count > capacity {
			t.Fatalf("shard %d: count %d, occupied %d, capacity %d", i, count, occupied, capacity)
		}
		if room != roomAt(capacity, level) || (level == 0) != (room == capacity) {
			t.Fatalf("shard %d: room %d at level %d, capacity %d", i, room, level, capacity)
		}
		total += capacity
	}
	if total > s.maxKeys {
		t.Fatalf("shard capacities add up to %d, above MaxKeys %d", total, s.maxKeys)
	}
}

// checkSlotHash fails the test when a table below full size keeps a hash
// for the occupied slot pos whose buckets do not include it. The caller
// holds sh.mu.
func checkSlotHash(t testing.TB, sh *shard, shardIndex, pos int) {
	t.Helper()
	if (sh.hashes == nil) != (sh.level == 0) {
		t.Fatalf("shard %d at level %d: hashes present = %v", shardIndex, sh.level, sh.hashes != nil)
	}
	if sh.hashes == nil {
		return
	}
	x := sh.hashes[pos]
	b1, b2 := sh.bucketsOf(x)
	if b := uint64(pos / bucketSlots); b != b1 && b != b2 {
		t.Fatalf("shard %d: slot %d in bucket %d holds hash bits %#x of buckets %d and %d",
			shardIndex, pos, b, x, b1, b2)
	}
}

// TestGrowKeepsEveryKey fills one shard from its smallest table to its
// full size and checks that the keys kept their states through each
// growth. A new key whose fingerprint matches a held key's shares that
// key's slot, as the package documentation describes; the test counts such
// keys and allows one wrong decision for each. Growing re-places keys, so
// two held keys with one fingerprint may meet in the larger table: about
// 1 in 20,000 keys here, allowed for up to 1 in 1000.
func TestGrowKeepsEveryKey(t *testing.T) {
	t.Parallel()
	const keys = 50_000
	s := newTestStoreGrowing(t, newTestClock(), 64_000, 1, startKeys)
	if level := s.shards[0].level; level == 0 {
		t.Fatalf("level of the first table = 0, want above 0")
	}

	key := func(i int) store.Check {
		return store.Check{Key: fmt.Sprintf("client%d", i), Algorithm: algorithm.GCRA,
			Limit: perMinute(5)}
	}
	shared := 0
	for i := range keys {
		if s.contains(key(i).Key) {
			shared++
			continue
		}
		if d := apply(t, s, key(i)); d.Remaining != 4 {
			t.Fatalf("first request of %s = %+v, want remaining 4", key(i).Key, d)
		}
	}

	checkInvariants(t, s)
	if sh := &s.shards[0]; sh.level != 0 || sh.count != keys-shared {
		t.Fatalf("level, count = %d, %d; want 0, %d", sh.level, sh.count, keys-shared)
	}

	wrong := 0
	for i := range keys {
		if d := apply(t, s, key(i)); d.Remaining != 3 {
			wrong++
		}
	}
	if wrong > shared+keys/1000 {
		t.Fatalf("%d keys answered wrongly after growing, want at most %d "+
			"(keys that share a fingerprint) + %d", wrong, shared, keys/1000)
	}
}

func TestApplyWhileRulesAreAdded(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, maxShards)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				// Every goroutine adds rules and reads keys that the
				// others write under their newest rules.
				c := store.Check{
					Key:       fmt.Sprintf("k%d", i%10),
					Algorithm: algorithm.GCRA,
					Limit:     perMinute(int64(1000 + g*200 + i)),
				}
				apply(t, s, c)
			}
		}()
	}
	wg.Wait()
	checkInvariants(t, s)
}

func TestDeniedRequestReportsUnchargedBudgets(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, newTestClock(), 0, 0)
	kinds := []algorithm.Kind{
		algorithm.SlidingWindow, algorithm.FixedWindow, algorithm.TokenBucket,
		algorithm.LeakyBucket, algorithm.LeakyQueue, algorithm.GCRA,
	}
	for _, kind := range kinds {
		minute := store.Check{Key: "k:" + kind.String() + ":60", Algorithm: kind, Limit: perMinute(3)}
		hour := store.Check{Key: "k:" + kind.String() + ":3600", Algorithm: kind, Limit: perWindow(1, time.Hour)}
		checks := []store.Check{minute, hour}
		out := make([]algorithm.Decision, 2)
		if ok, err := s.Apply(context.Background(), checks, 1, out); err != nil || !ok {
			t.Fatalf("%s: first Apply = %v, %v; want allowed", kind, ok, err)
		}
		// The hour rule denies the second request, so the minute rule is
		// not charged and must report the 2 units it still has.
		ok, err := s.Apply(context.Background(), checks, 1, out)
		if err != nil || ok {
			t.Fatalf("%s: second Apply = %v, %v; want denied", kind, ok, err)
		}
		if !out[0].Allowed || out[0].Remaining != 2 {
			t.Errorf("%s: minute decision of a denied request = %+v, want allowed with Remaining 2", kind, out[0])
		}
		free := make([]algorithm.Decision, 1)
		if _, err := s.Apply(context.Background(), checks[:1], 0, free); err != nil {
			t.Fatalf("%s: Apply(cost 0) error: %v", kind, err)
		}
		if free[0] != out[0] {
			t.Errorf("%s: minute decision of a denied request = %+v, want the cost-0 view %+v", kind, out[0], free[0])
		}
	}
}

// TestApplySameKeyUnderTwoAlgorithms names one key under two algorithms in
// one request, and expects what the Redis store does. A check reads the
// state that the earlier checks of the request leave on the key, which is
// fresh for it when another algorithm wrote it. A request that changes
// nothing writes nothing. A denied request reports the budget of each
// check that allowed as a request of cost 0 on that check alone gets it.
func TestApplySameKeyUnderTwoAlgorithms(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 0, maxShards)
	hour := time.Hour.Microseconds()
	window := store.Check{Key: "k", Algorithm: algorithm.SlidingWindow,
		Limit: algorithm.Limit{Quota: 1000, Window: hour}}
	bucket := store.Check{Key: "k", Algorithm: algorithm.TokenBucket,
		Limit: algorithm.Limit{Quota: 1, Window: hour}}
	gcra := store.Check{Key: "k", Algorithm: algorithm.GCRA,
		Limit: algorithm.Limit{Quota: 10, Window: hour}}
	applyCost := func(checks []store.Check, cost int64) (bool, []algorithm.Decision) {
		t.Helper()
		out := make([]algorithm.Decision, len(checks))
		ok, err := s.Apply(context.Background(), checks, cost, out)
		if err != nil {
			t.Fatalf("Apply(%+v, cost %d) error: %v", checks, cost, err)
		}
		return ok, out
	}
	budget := func(c store.Check) algorithm.Decision {
		t.Helper()
		_, out := applyCost([]store.Check{c}, 0)
		return out[0]
	}

	applyCost([]store.Check{window}, 1)
	before := budget(window)
	if before.Remaining != 999 {
		t.Fatalf("sliding window budget after one request = %+v, want remaining 999", before)
	}

	// Nothing changes at cost 0, so nothing may be written: the sliding
	// window state stays.
	applyCost([]store.Check{window, gcra}, 0)
	if got := budget(window); got != before {
		t.Fatalf("sliding window budget after a cost-0 request with GCRA = %+v, want %+v",
			got, before)
	}

	// The bucket denies cost 2, above its capacity, so the sliding window
	// check reports its budget without the request.
	ok, out := applyCost([]store.Check{bucket, window}, 2)
	if ok || out[0].Allowed {
		t.Fatalf("Apply(bucket, window; cost 2) = %v, %+v; want the bucket to deny", ok, out)
	}
	if out[1] != before {
		t.Errorf("sliding window decision of a denied request = %+v, want the cost-0 view %+v",
			out[1], before)
	}

	// GCRA charges first and leaves its state on the key, which the
	// sliding window then reads as fresh.
	clk.Advance(time.Second)
	now := clk.Now().UnixMicro()
	_, wantWindow := algorithm.Decide(window.Algorithm, algorithm.State{}, now, window.Limit, 1)
	_, wantGCRA := algorithm.Decide(gcra.Algorithm, algorithm.State{}, now, gcra.Limit, 1)
	ok, out = applyCost([]store.Check{gcra, window}, 1)
	if !ok || out[0] != wantGCRA || out[1] != wantWindow {
		t.Errorf("Apply(gcra, window) = %v, %+v; want true, [%+v %+v]",
			ok, out, wantGCRA, wantWindow)
	}
}

// TestFingerprintVariesWithinShard checks that every fingerprint bit
// varies among the keys of one shard of a store with the most shards. A
// bit that also chose the shard would be the same for all of them, and
// fingerprint collisions within the shard would be twice as likely.
func TestFingerprintVariesWithinShard(t *testing.T) {
	t.Parallel()
	s := newStore(Config{MaxKeys: maxShards * shardKeys * 2}, maxShards, startKeys)
	t.Cleanup(func() { s.Close() })
	if len(s.shards) != maxShards {
		t.Fatalf("shards = %d, want %d", len(s.shards), maxShards)
	}
	// A hash whose top shardBits bits are 0 falls in shard 0.
	r := rand.New(rand.NewPCG(3, 4))
	first := fingerprint(r.Uint64() >> s.shardBits)
	var varying uint64
	for range 2000 {
		varying |= fingerprint(r.Uint64()>>s.shardBits) ^ first
	}
	if varying != fpMask {
		t.Errorf("fingerprint bits that vary within shard 0 = %#x, want %#x", varying, uint64(fpMask))
	}
}
