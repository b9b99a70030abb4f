package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
)

// clusterURL returns a URL that seeds the client with every node.
func clusterURL(c *redistest.Cluster) string {
	addrs := c.Addrs()
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

func newClusterStore(t *testing.T, c *redistest.Cluster, cfg Config) *Store {
	t.Helper()
	cfg.URL = clusterURL(c)
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s) = %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	if conn := s.conn.Load(); conn == nil || !conn.cluster {
		t.Fatalf("store on %s did not detect the cluster", cfg.URL)
	}
	return s
}

// layeredChecks returns a user check and a global check in different slots.
func layeredChecks(kind algorithm.Kind, client string, userQuota, globalQuota int64) []store.Check {
	return []store.Check{
		check("test:user:{GET_/x:"+client+"}:60", kind, userQuota, time.Minute),
		check("test:global:{*:*}:60", kind, globalQuota, time.Minute),
	}
}

func TestClusterAcrossSlots(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	clock := newFakeClock()
	s := newClusterStore(t, cl, Config{Now: clock.Now, Timeout: testTimeout})

	checks := layeredChecks(algorithm.FixedWindow, "a", 1, 10)
	if keySlot(checks[0].Key) == keySlot(checks[1].Key) {
		t.Fatal("test keys share a slot; pick other keys")
	}
	if ok, _ := apply(t, s, 1, checks...); !ok {
		t.Fatal("Apply(first) = false, want true")
	}
	ok, d := apply(t, s, 1, checks...)
	if ok || d[0].Allowed || !d[1].Allowed {
		t.Fatalf("Apply(second) = %v, user %v, global %v, want false, false, true", ok, d[0].Allowed, d[1].Allowed)
	}
	// The global slot charged the denied request and must have been refunded.
	_, d = apply(t, s, 0, checks[1])
	if d[0].Remaining != 9 {
		t.Errorf("global Remaining after a request denied in another slot = %d, want 9", d[0].Remaining)
	}

	// A denial in the second slot refunds the first.
	other := layeredChecks(algorithm.FixedWindow, "b", 5, 1)
	other[1].Key = "test:global:{tight}:60"
	apply(t, s, 1, other...)
	if ok, _ := apply(t, s, 1, other...); ok {
		t.Fatal("Apply(global exhausted) = true, want false")
	}
	_, d = apply(t, s, 0, other[0])
	if d[0].Remaining != 4 {
		t.Errorf("user Remaining after a request denied by the global slot = %d, want 4", d[0].Remaining)
	}
}

func TestClusterKeysHaveTTL(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	s := newClusterStore(t, cl, Config{Timeout: testTimeout})
	for i, kind := range allKinds {
		for c := 0; c < 10; c++ {
			checks := layeredChecks(kind, fmt.Sprintf("client%d-%d", i, c), 3, 1000)
			checks[1].Key = fmt.Sprintf("test:global:{%v}:60", kind)
			for r := 0; r < 5; r++ {
				apply(t, s, 1, checks...)
			}
		}
	}
	all, missing := keysWithoutTTL(t, newClient(t, cl.Addrs()...))
	if len(all) < 60 {
		t.Fatalf("found %d keys on the cluster, want at least 60", len(all))
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d keys have no TTL: %s", len(missing), len(all), keyList(missing))
	}
}

func TestClusterScriptFlush(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	clock := newFakeClock()
	s := newClusterStore(t, cl, Config{Now: clock.Now, Timeout: testTimeout})
	checks := layeredChecks(algorithm.TokenBucket, "a", 5, 100)
	apply(t, s, 1, checks...)
	for _, addr := range cl.Addrs() {
		if out, err := redistest.Command(addr, "SCRIPT", "FLUSH"); err != nil {
			t.Fatalf("SCRIPT FLUSH on %s: %v %s", addr, err, out)
		}
	}
	ok, d := apply(t, s, 1, checks...)
	if !ok || d[0].Remaining != 3 {
		t.Errorf("Apply after SCRIPT FLUSH on every node = %v remaining %d, want true remaining 3", ok, d[0].Remaining)
	}
}

// TestClusterNeverOverAdmits sends concurrent requests whose user and
// global checks live on different nodes, all at once (burst) and from a few
// workers in a closed loop (steady), with slots charged in sequence and at
// once. Every limit
// must hold exactly; requests denied while budget remained are the
// over-denial the test reports.
func TestClusterNeverOverAdmits(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	// A frozen clock keeps the buckets from refilling while the test runs.
	clock := newFakeClock()
	for _, parallel := range []bool{false, true} {
		cfg := Config{Timeout: testTimeout, ParallelSlots: parallel, Now: clock.Now}
		stores := []*Store{newClusterStore(t, cl, cfg), newClusterStore(t, cl, cfg)}
		for _, workers := range []int{0, 8} {
			for _, kind := range []algorithm.Kind{algorithm.SlidingWindow, algorithm.FixedWindow,
				algorithm.TokenBucket, algorithm.GCRA} {
				name := fmt.Sprintf("parallel=%v/workers=%d/%v", parallel, workers, kind)
				t.Run(name, func(t *testing.T) {
					prefix := fmt.Sprintf("test:%v:%d:%v", parallel, workers, kind)
					runLayeredLoad(t, stores, kind, prefix, workers)
				})
			}
		}
	}
}

// runLayeredLoad sends 4 clients × 50 requests with a user limit of 30 and
// a global limit of 100. workers = 0 sends every request at once.
func runLayeredLoad(t *testing.T, stores []*Store, kind algorithm.Kind, prefix string, workers int) {
	const (
		clients     = 4
		perClient   = 50
		userQuota   = 30
		globalQuota = 100
	)
	var admitted [clients]atomic.Int64
	requests := make(chan int, clients*perClient)
	for r := 0; r < perClient; r++ {
		for c := 0; c < clients; c++ {
			requests <- c
		}
	}
	close(requests)
	send := func(s *Store, c int) {
		checks := []store.Check{
			check(fmt.Sprintf("%s:user:{client%d}:60", prefix, c), kind, userQuota, time.Minute),
			check(prefix+":global:{*}:60", kind, globalQuota, time.Minute),
		}
		out := make([]algorithm.Decision, 2)
		ok, err := s.Apply(context.Background(), checks, 1, out)
		if err != nil {
			t.Errorf("Apply = %v", err)
		}
		if ok {
			admitted[c].Add(1)
		}
	}
	var wg sync.WaitGroup
	if workers == 0 {
		i := 0
		for c := range requests {
			wg.Add(1)
			go func(s *Store) { defer wg.Done(); send(s, c) }(stores[i%len(stores)])
			i++
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for c := range requests {
				send(s, c)
			}
		}(stores[w%len(stores)])
	}
	wg.Wait()

	var total int64
	var per []string
	for c := range admitted {
		n := admitted[c].Load()
		total += n
		per = append(per, fmt.Sprint(n))
		if n > userQuota {
			t.Errorf("client %d admitted %d, over its limit of %d", c, n, userQuota)
		}
	}
	if total > globalQuota {
		t.Errorf("admitted %d in total, over the global limit of %d", total, globalQuota)
	}
	t.Logf("admitted %d of %d possible (per client %s): over-denial %d",
		total, globalQuota, strings.Join(per, ","), globalQuota-total)
}
