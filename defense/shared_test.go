package defense

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/internal/redistest"
)

// newClient returns a rueidis client for addr that the test closes.
func newClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// sharedConfig is a shared breaker on addr with a 200-arrival threshold per
// 10s and real clocks, as servers run it.
func sharedConfig(t testing.TB, addr string, seed uint64) Config {
	return Config{
		Threshold:    200,
		Window:       10 * time.Second,
		RecoveryTime: 5 * time.Second,
		SyncInterval: 20 * time.Millisecond,
		KeyStart:     "test:ratelimit:v1:",
		Redis:        newClient(t, addr),
		Rand:         rand.New(rand.NewPCG(seed, seed)),
	}
}

// startDefense returns a started Defense for cfg that the test closes.
func startDefense(t testing.TB, cfg Config) *Defense {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// waitFor polls cond until it holds or limit passes, and returns how long it
// took. It waits for real propagation between processes, never for time to
// pass in the breaker.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func hget(t testing.TB, c rueidis.Client, key, field string) string {
	t.Helper()
	v, err := c.Do(context.Background(), c.B().Hget().Key(key).Field(field).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("HGET %s %s: %v", key, field, err)
	}
	return v
}

func hset(t testing.TB, c rueidis.Client, key, field, value string) {
	t.Helper()
	if err := c.Do(context.Background(), c.B().Hset().Key(key).FieldValue().FieldValue(field, value).Build()).Error(); err != nil {
		t.Fatalf("HSET %s %s %s: %v", key, field, value, err)
	}
}

// TestSharedMatchesLocal replays random operations through the Lua scripts
// and the Go twin with the same clock and requires identical snapshots.
func TestSharedMatchesLocal(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr)
	rng := rand.New(rand.NewPCG(3, 4))
	for trace := range 20 {
		p := circuitParams{
			threshold:  int64(1 + rng.IntN(50)),
			windowMs:   int64(100 + rng.IntN(2000)),
			recoveryMs: int64(rng.IntN(1000)),
		}
		now := int64(1_700_000_000_000 + rng.IntN(1000))
		b := newSharedBackend(fmt.Sprintf("diff:%d:circuit:state", trace), "diff:events", p, Config{
			Window: time.Duration(p.windowMs) * time.Millisecond, RecoveryTime: time.Second,
			ProbeWindow: time.Second, Redis: client,
		})
		b.nowArg = func() string { return strconv.FormatInt(now, 10) }
		var local record
		for step := range 200 {
			now += int64(rng.IntN(int(p.windowMs) / 2))
			kind, arg := randomCall(rng, local.epoch)
			var want snapshot
			switch kind {
			case callSync:
				want = local.sync(now, arg, p)
			case callSettle:
				want = local.settle(now, arg, p)
			case callForce:
				want = local.force(now, arg == 1, p)
			}
			got, err := b.run(context.Background(), kind, arg, -1)
			if err != nil {
				t.Fatalf("trace %d step %d: run(%d, %d) error = %v", trace, step, kind, arg, err)
			}
			if got != want {
				t.Fatalf("trace %d step %d: call %d(%d) at %d:\nlua %+v\ngo  %+v", trace, step, kind, arg, now, got, want)
			}
		}
	}
}

func randomCall(rng *rand.Rand, epoch int64) (callKind, int64) {
	switch n := rng.IntN(20); {
	case n < 14:
		return callSync, int64(rng.IntN(20))
	case n < 18:
		return callSettle, epoch - int64(rng.IntN(2))
	default:
		return callForce, int64(rng.IntN(2))
	}
}

func TestSharedTripsExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const servers = 8
	defenses := make([]*Defense, servers)
	for i := range defenses {
		cfg := sharedConfig(t, srv.Addr, uint64(i))
		d, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { _ = d.Close() })
		defenses[i] = d
	}
	// Every server crosses the threshold in the same instant: 8 × 30 = 240.
	var wg sync.WaitGroup
	snaps := make([]snapshot, servers)
	for i, d := range defenses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snap, err := d.remote.run(context.Background(), callSync, 30, -1)
			if err != nil {
				t.Errorf("run: %v", err)
			}
			snaps[i] = snap
		}()
	}
	wg.Wait()
	trips := 0
	for _, s := range snaps {
		if s.Changed {
			trips++
		}
		if !s.Open && s.Count >= 200 {
			t.Errorf("snapshot %+v: closed with %d arrivals", s, s.Count)
		}
	}
	if trips != 1 {
		t.Errorf("trips recorded = %d, want exactly 1", trips)
	}
	c := newClient(t, srv.Addr)
	if got := hget(t, c, "test:ratelimit:v1:circuit:state", "epoch"); got != "1" {
		t.Errorf("epoch = %q, want 1", got)
	}
}

func TestSharedTripReachesEveryServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	defenses := make([]*Defense, 5)
	for i := range defenses {
		defenses[i] = startDefense(t, sharedConfig(t, srv.Addr, uint64(i)))
	}
	for _, d := range defenses {
		admitN(d, 40) // 5 × 40 = 200 arrivals
	}
	var delays []time.Duration
	for i, d := range defenses {
		delays = append(delays, waitFor(t, 500*time.Millisecond, fmt.Sprintf("server %d opens", i),
			func() bool { return d.State() == Open }))
	}
	for i, d := range defenses {
		if v := d.Admit(Request{}); !v.Reduced {
			t.Errorf("server %d: Admit() = %+v, want reduced limits", i, v)
		}
	}
	t.Logf("trip reached the last server after %v", slices.Max(delays))
}

func TestSharedOperatorHSET(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	defenses := make([]*Defense, 3)
	for i := range defenses {
		defenses[i] = startDefense(t, sharedConfig(t, srv.Addr, uint64(i)))
	}
	key := defenses[0].StateKey()
	admitN(defenses[0], 150)

	hset(t, c, key, "is_open", "1")
	for i, d := range defenses {
		waitFor(t, 500*time.Millisecond, fmt.Sprintf("server %d obeys HSET is_open 1", i),
			func() bool { return d.State() == Open })
	}
	if got := hget(t, c, key, "forced"); got != "1" {
		t.Errorf("forced after HSET is_open 1 = %q, want 1", got)
	}

	hset(t, c, key, "is_open", "0")
	for i, d := range defenses {
		waitFor(t, 500*time.Millisecond, fmt.Sprintf("server %d obeys HSET is_open 0", i),
			func() bool { return d.State() == Closed })
	}
	if got := hget(t, c, key, "win_cur"); got != "0" {
		t.Errorf("win_cur after a manual close = %q, want 0", got)
	}
	admitN(defenses[1], 150)
	defenses[1].Sync(context.Background())
	if got := defenses[1].State(); got != Closed {
		t.Errorf("State() after 150 arrivals = %v, want closed: the close cleared the count", got)
	}
}

func TestSharedSyncDropsStaleEpoch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	d, err := New(sharedConfig(t, srv.Addr, 1))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()

	first, err := d.remote.run(ctx, callSync, 10, -1)
	if err != nil {
		t.Fatalf("run(sync 10): %v", err)
	}
	if first.Count != 10 {
		t.Fatalf("count after sync 10 = %d, want 10", first.Count)
	}
	if _, err := d.remote.run(ctx, callForce, 1, -1); err != nil {
		t.Fatalf("run(force open): %v", err)
	}
	if _, err := d.remote.run(ctx, callForce, 0, -1); err != nil {
		t.Fatalf("run(force close): %v", err)
	}

	// Arrivals counted while this server still saw the first epoch end with
	// that epoch: the close cleared the window, so they must not count.
	stale, err := d.remote.run(ctx, callSync, 50, first.Epoch)
	if err != nil {
		t.Fatalf("run(sync 50 at stale epoch): %v", err)
	}
	if stale.Count != 0 {
		t.Errorf("count after a sync at a stale epoch = %d, want 0", stale.Count)
	}
	current, err := d.remote.run(ctx, callSync, 5, stale.Epoch)
	if err != nil {
		t.Fatalf("run(sync 5 at current epoch): %v", err)
	}
	if current.Count != 5 {
		t.Errorf("count after a sync at the current epoch = %d, want 5", current.Count)
	}
}

func TestSharedForceAndRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startDefense(t, sharedConfig(t, srv.Addr, 1))
	a.Force(context.Background(), true)
	if got := a.State(); got != Open {
		t.Fatalf("State() after Force(open) = %v, want open", got)
	}
	// A server that starts while the circuit is open is open before it
	// serves its first request.
	b, err := New(sharedConfig(t, srv.Addr, 2))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := b.State(); got != Open {
		t.Errorf("State() right after Start = %v, want open", got)
	}
	c := newClient(t, srv.Addr)
	ttl, err := c.Do(context.Background(), c.B().Pttl().Key(a.StateKey()).Build()).AsInt64()
	if err != nil || ttl < int64(23*time.Hour/time.Millisecond) {
		t.Errorf("PTTL of a forced open = %d (%v), want about 24h", ttl, err)
	}
	b.Force(context.Background(), false)
	waitFor(t, 500*time.Millisecond, "server a sees the forced close", func() bool { return a.State() == Closed })
	ttl, err = c.Do(context.Background(), c.B().Pttl().Key(a.StateKey()).Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > int64(time.Minute/time.Millisecond) {
		t.Errorf("PTTL while closed = %d (%v), want a positive TTL under a minute", ttl, err)
	}
}

func TestSharedSurvivesScriptFlush(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	d := startDefense(t, sharedConfig(t, srv.Addr, 1))
	if err := c.Do(context.Background(), c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if _, err := d.remote.run(context.Background(), callSync, 1, -1); err != nil {
		t.Errorf("run after SCRIPT FLUSH: %v", err)
	}
}

func TestSharedRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var logs syncBuffer
	cfg := sharedConfig(t, srv.Addr, 1)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.RedisTimeout = 100 * time.Millisecond
	d := startDefense(t, cfg)
	ctx := context.Background()
	d.Force(ctx, true)

	srv.Stop()
	for range 5 {
		d.Sync(ctx)
	}
	out := logs.String()
	if n := strings.Count(out, "redis unreachable"); n != 1 {
		t.Errorf("log has %d lines about redis being unreachable, want 1; log:\n%s", n, out)
	}
	v := d.view.Load()
	if v.shared || v.state != Open || v.snap.Forced {
		t.Errorf("view during the outage = %+v, want the local breaker open without force", v)
	}
	if v.reopenAt.IsZero() || v.reopenAt.After(time.Now().Add(cfg.RecoveryTime+DefaultMaxJitter)) {
		t.Errorf("half-open at %v, want within the recovery time and jitter", v.reopenAt)
	}

	srv.Restart(t)
	waitFor(t, 5*time.Second, "the shared state is adopted", func() bool {
		v := d.view.Load()
		return v.shared && v.state == Closed
	})
	if n := strings.Count(logs.String(), "redis reachable again"); n != 1 {
		t.Errorf("log has %d lines about redis returning, want 1; log:\n%s", n, logs.String())
	}
	// The subscription comes back too: a change made elsewhere arrives.
	other := startDefense(t, sharedConfig(t, srv.Addr, 2))
	other.Force(ctx, true)
	waitFor(t, 500*time.Millisecond, "open after redis returned", func() bool { return d.State() == Open })
}

func TestSharedStartWithoutRedis(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var logs syncBuffer
	cfg := Config{
		Threshold: 100, Window: 10 * time.Second, SyncInterval: 20 * time.Millisecond,
		RedisTimeout: 100 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		Dial: func() (rueidis.Client, error) {
			return rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
		},
	}
	d := startDefense(t, cfg)
	if v := d.Admit(Request{}); !v.Allowed {
		t.Errorf("Admit() without redis = %+v, want allowed", v)
	}
	if !strings.Contains(logs.String(), "redis unreachable") {
		t.Errorf("log lacks the warning; log:\n%s", logs.String())
	}
	// The breaker works locally meanwhile.
	admitN(d, 100)
	d.Sync(context.Background())
	if got := d.State(); got != Open {
		t.Errorf("State() of the local breaker after 100 arrivals = %v, want open", got)
	}
	srv, err := redistest.StartOnPort(redistest.Binary(t), t.TempDir(), port)
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	waitFor(t, 5*time.Second, "the shared state is adopted", func() bool {
		v := d.view.Load()
		return v.shared && v.state == Closed
	})
}
