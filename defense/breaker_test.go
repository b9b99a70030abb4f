package defense

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
)

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// perms grants a fixed set of permissions.
type perms []string

func (p perms) HasPermission(perm string) bool {
	for _, q := range p {
		if q == perm {
			return true
		}
	}
	return false
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is a small local breaker: 100 arrivals per 10s open it for 5s,
// without jitter.
func testConfig(clock *fakeClock) Config {
	return Config{
		Threshold:      100,
		Window:         10 * time.Second,
		RecoveryTime:   5 * time.Second,
		MaxJitter:      -1,
		HalfOpenProbes: 3,
		ProbeWindow:    time.Second,
		Now:            clock.Now,
		Rand:           rand.New(rand.NewPCG(1, 2)),
	}
}

func newTestDefense(t *testing.T, cfg Config) *Defense {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// admitN admits n anonymous requests.
func admitN(d *Defense, n int) {
	for range n {
		d.Admit(Request{})
	}
}

// trip drives d from closed to open with threshold arrivals.
func trip(t *testing.T, d *Defense) {
	t.Helper()
	admitN(d, int(d.cfg.Threshold))
	d.Sync(context.Background())
	if got := d.State(); got != Open {
		t.Fatalf("State() after %d arrivals = %v, want open", d.cfg.Threshold, got)
	}
}

func TestBreakerOpensAtThreshold(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	ctx := context.Background()

	admitN(d, 99)
	d.Sync(ctx)
	if got := d.State(); got != Closed {
		t.Fatalf("State() after 99 arrivals = %v, want closed", got)
	}
	clock.Advance(time.Second)
	admitN(d, 1)
	d.Sync(ctx)
	if got := d.State(); got != Open {
		t.Fatalf("State() after 100 arrivals = %v, want open", got)
	}
}

func TestBreakerWindowForgetsOldArrivals(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	ctx := context.Background()

	admitN(d, 90)
	d.Sync(ctx)
	clock.Advance(20 * time.Second) // two windows later: nothing of the 90 remains
	admitN(d, 90)
	d.Sync(ctx)
	if got := d.State(); got != Closed {
		t.Fatalf("State() = %v, want closed: arrivals two windows apart must not add up", got)
	}
	clock.Advance(10 * time.Second) // one window later: the previous bucket still weighs fully
	admitN(d, 10)
	d.Sync(ctx)
	if got := d.State(); got != Open {
		t.Fatalf("State() = %v, want open: 90 in the previous window plus 10 reach 100", got)
	}
}

func TestBreakerHalfOpenAfterRecovery(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	trip(t, d)

	clock.Advance(5*time.Second - time.Millisecond)
	d.Sync(context.Background())
	if got := d.State(); got != Open {
		t.Fatalf("State() 1ms before the recovery time = %v, want open", got)
	}
	clock.Advance(time.Millisecond)
	for i := range 3 {
		v := d.Admit(Request{})
		if !v.Allowed || !v.Probe || v.State != HalfOpen {
			t.Fatalf("Admit(probe %d) = %+v, want an allowed half-open probe", i, v)
		}
	}
	if v := d.Admit(Request{}); v.Probe {
		t.Fatalf("Admit(fourth request) = %+v, want no probe: only 3 are allowed", v)
	}
}

func TestBreakerHalfOpenCloses(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	ctx := context.Background()
	trip(t, d)

	clock.Advance(5 * time.Second)
	admitN(d, 3) // the probes: 3 arrivals in 5s is 6 per window, under 100
	d.Sync(ctx)
	if got := d.State(); got != Closed {
		t.Fatalf("State() after quiet probes = %v, want closed", got)
	}
	admitN(d, 80)
	d.Sync(ctx)
	if got := d.State(); got != Closed {
		t.Fatalf("State() after 80 more arrivals = %v, want closed: the window restarts on close", got)
	}
}

func TestBreakerHalfOpenReopens(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	ctx := context.Background()
	trip(t, d)
	firstTrip := d.view.Load().snap.TripTime

	clock.Advance(2 * time.Second)
	admitN(d, 60) // 60 arrivals in the 5s since the trip: 120 per window
	d.Sync(ctx)
	clock.Advance(3 * time.Second)
	d.Sync(ctx) // half-open
	if got := d.State(); got != HalfOpen {
		t.Fatalf("State() after the recovery time = %v, want half_open", got)
	}
	clock.Advance(time.Second) // the probe window ends without probes
	d.Sync(ctx)
	v := d.view.Load()
	if v.state != Open {
		t.Fatalf("State() after a busy half-open = %v, want open", v.state)
	}
	if v.snap.TripTime <= firstTrip {
		t.Errorf("trip time after reopening = %d, want later than %d", v.snap.TripTime, firstTrip)
	}
	if v.snap.Cause != CauseReopened {
		t.Errorf("cause = %q, want %q", v.snap.Cause, CauseReopened)
	}
}

func TestBreakerJitterDelaysHalfOpen(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		clock := newClock()
		cfg := testConfig(clock)
		cfg.MaxJitter = 5 * time.Second
		cfg.Rand = rand.New(rand.NewPCG(seed, seed))
		d := newTestDefense(t, cfg)
		trip(t, d)
		v := d.view.Load()
		delay := v.reopenAt.Sub(v.toLocal(v.snap.TripTime))
		if delay < 5*time.Second || delay > 10*time.Second {
			t.Errorf("seed %d: half-open %v after the trip, want 5s to 10s", seed, delay)
		}
	}
}

func TestBreakerJitterSeeded(t *testing.T) {
	t.Parallel()
	delay := func(seed uint64) time.Duration {
		clock := newClock()
		cfg := testConfig(clock)
		cfg.MaxJitter = 5 * time.Second
		cfg.Rand = rand.New(rand.NewPCG(seed, 0))
		d := newTestDefense(t, cfg)
		trip(t, d)
		v := d.view.Load()
		return v.reopenAt.Sub(v.toLocal(v.snap.TripTime))
	}
	if a, b := delay(7), delay(7); a != b {
		t.Errorf("same seed: delays %v and %v, want equal", a, b)
	}
	if a, b := delay(7), delay(8); a == b {
		t.Errorf("seeds 7 and 8: both delays %v, want different", a)
	}
}

func TestBreakerForce(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	ctx := context.Background()

	admitN(d, 90)
	d.Sync(ctx)
	d.Force(ctx, true)
	if got := d.State(); got != Open {
		t.Fatalf("State() after Force(open) = %v, want open", got)
	}
	clock.Advance(time.Hour)
	d.Sync(ctx)
	if got := d.State(); got != Open {
		t.Fatalf("State() an hour after Force(open) = %v, want open: a forced open never probes", got)
	}
	d.Force(ctx, false)
	if got := d.State(); got != Closed {
		t.Fatalf("State() after Force(close) = %v, want closed", got)
	}
	admitN(d, 99)
	d.Sync(ctx)
	if got := d.State(); got != Closed {
		t.Fatalf("State() after 99 arrivals = %v, want closed: a forced close clears the count", got)
	}
}

func TestBreakerDisabledNeverOpens(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := testConfig(clock)
	cfg.Mode = Disabled
	d := newTestDefense(t, cfg)
	admitN(d, 1000)
	d.Sync(context.Background())
	if got := d.State(); got != Closed {
		t.Fatalf("State() = %v, want closed", got)
	}
	if v := d.Admit(Request{}); !v.Allowed {
		t.Fatalf("Admit() = %+v, want allowed", v)
	}
}

func TestBreakerModes(t *testing.T) {
	t.Parallel()
	bypass := perms{BypassPermission}
	tests := []struct {
		name    string
		mode    Mode
		req     Request
		allowed bool
		reduced bool
		check   func(Verdict) bool
	}{
		{name: "adaptive anonymous", mode: Adaptive, req: Request{}, allowed: true, reduced: true},
		{name: "adaptive bypass", mode: Adaptive, req: Request{Permissions: bypass}, allowed: true,
			check: func(v Verdict) bool { return v.Bypass }},
		{name: "adaptive other permission", mode: Adaptive,
			req: Request{Identity: "u1", Permissions: perms{"admin"}}, allowed: true, reduced: true},
		{name: "lockdown anonymous", mode: Lockdown, req: Request{}, allowed: false,
			check: func(v Verdict) bool { return v.RetryAfter > 0 && v.Reason() == "circuit_open" }},
		{name: "lockdown verified without bypass", mode: Lockdown,
			req: Request{Identity: "u1", Permissions: perms{"admin"}}, allowed: false},
		{name: "lockdown bypass", mode: Lockdown, req: Request{Permissions: bypass}, allowed: true,
			check: func(v Verdict) bool { return v.Bypass }},
		{name: "challenge anonymous", mode: Challenge, req: Request{}, allowed: false,
			check: func(v Verdict) bool { return v.ChallengeRequired && v.Reason() == "challenge_required" }},
		{name: "challenge solved", mode: Challenge, req: Request{ChallengeSolved: true}, allowed: true},
		{name: "challenge bypass", mode: Challenge, req: Request{Permissions: bypass}, allowed: true,
			check: func(v Verdict) bool { return v.Bypass && !v.ChallengeRequired }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			cfg := testConfig(clock)
			cfg.Mode = tt.mode
			d := newTestDefense(t, cfg)
			if v := d.Admit(tt.req); !v.Allowed || v.Reduced {
				t.Fatalf("Admit(closed) = %+v, want allowed at full limits", v)
			}
			trip(t, d)
			v := d.Admit(tt.req)
			if v.Allowed != tt.allowed {
				t.Errorf("Admit(open).Allowed = %v, want %v", v.Allowed, tt.allowed)
			}
			if v.Reduced != tt.reduced {
				t.Errorf("Admit(open).Reduced = %v, want %v", v.Reduced, tt.reduced)
			}
			if tt.check != nil && !tt.check(v) {
				t.Errorf("Admit(open) = %+v, fails the case's check", v)
			}
		})
	}
}

func TestLockdownKnownGood(t *testing.T) {
	t.Parallel()
	allowed := calm.Result{Allowed: true, Scope: calm.ScopeUser}
	violation := calm.Result{Allowed: false, Scope: calm.ScopeUser}
	globalDenial := calm.Result{Allowed: false, Scope: calm.ScopeGlobal}
	tests := []struct {
		name     string
		enabled  bool
		history  []calm.Result // observed an hour before the trip, then 30 minutes before
		after    bool          // first allowed after the trip
		identity string
		want     bool
	}{
		{name: "clean history", enabled: true, history: []calm.Result{allowed, allowed},
			identity: "alice", want: true},
		{name: "switch off", enabled: false, history: []calm.Result{allowed}, identity: "alice"},
		{name: "anonymous", enabled: true, history: []calm.Result{allowed}, identity: ""},
		{name: "recent violation", enabled: true, history: []calm.Result{allowed, violation},
			identity: "alice"},
		{name: "old violation", enabled: true, history: []calm.Result{violation, allowed},
			identity: "alice", want: true},
		{name: "global denial is not a violation", enabled: true,
			history: []calm.Result{allowed, globalDenial}, identity: "alice", want: true},
		{name: "never seen", enabled: true, identity: "mallory"},
		{name: "first seen after the trip", enabled: true, after: true, identity: "mallory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			cfg := testConfig(clock)
			cfg.Mode = Lockdown
			cfg.AllowKnownGood = tt.enabled
			cfg.KnownGoodWindow = 45 * time.Minute
			d := newTestDefense(t, cfg)
			req := Request{Identity: tt.identity}
			for _, res := range tt.history {
				d.Observe(req, res)
				clock.Advance(30 * time.Minute)
			}
			trip(t, d)
			if tt.after {
				d.Observe(req, allowed)
			}
			clock.Advance(time.Second)
			v := d.Admit(req)
			if v.Allowed != tt.want || v.KnownGood != tt.want {
				t.Errorf("Admit(%q) = %+v, want Allowed and KnownGood %v", tt.identity, v, tt.want)
			}
		})
	}
}

func TestEventsAndLogs(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := testConfig(clock)
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d := newTestDefense(t, cfg)
	events, cancel := d.Subscribe(10)
	defer cancel()
	ctx := context.Background()

	trip(t, d)
	d.Sync(ctx) // no change: no event
	clock.Advance(5 * time.Second)
	d.Sync(ctx)
	clock.Advance(time.Second)
	d.Sync(ctx)

	want := []struct {
		from, to State
		cause    string
	}{
		{Closed, Open, CauseThreshold},
		{Open, HalfOpen, CauseProbing},
		{HalfOpen, Closed, CauseRecovered},
	}
	for i, w := range want {
		select {
		case ev := <-events:
			if ev.From != w.from || ev.To != w.to || ev.Cause != w.cause {
				t.Errorf("event %d = %v to %v (%s), want %v to %v (%s)",
					i, ev.From, ev.To, ev.Cause, w.from, w.to, w.cause)
			}
			if i == 0 && (ev.Count != 100 || ev.Threshold != 100) {
				t.Errorf("event 0 counts = %d of %d, want 100 of 100", ev.Count, ev.Threshold)
			}
		default:
			t.Fatalf("event %d missing", i)
		}
	}
	select {
	case ev := <-events:
		t.Errorf("extra event %+v", ev)
	default:
	}
	out := logs.String()
	for _, line := range []string{"circuit open", "circuit half_open", "circuit closed"} {
		if n := strings.Count(out, `msg="`+line+`"`); n != 1 {
			t.Errorf("log has %d lines %q, want 1; log:\n%s", n, line, out)
		}
	}
	if !strings.Contains(out, "count=100") {
		t.Errorf("log lacks the count; log:\n%s", out)
	}
}

func TestSubscribeSlowSubscriberDropsEvents(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	_, cancel := d.Subscribe(1)
	defer cancel()
	ctx := context.Background()
	trip(t, d)
	d.Force(ctx, false)
	if got := d.DroppedEvents(); got != 1 {
		t.Errorf("DroppedEvents() = %d, want 1", got)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "short window", cfg: Config{Window: time.Millisecond}, want: "Window"},
		{name: "factor above one", cfg: Config{ReductionFactor: 1.5}, want: "ReductionFactor"},
		{name: "negative factor", cfg: Config{ReductionFactor: -0.5}, want: "ReductionFactor"},
		{name: "bad mode", cfg: Config{Mode: Mode(9)}, want: "Mode"},
		{name: "key start with brace", cfg: Config{KeyStart: "a{b}:"}, want: "KeyStart"},
		{name: "empty endpoint rules", cfg: Config{EndpointRules: map[string][]calm.Rule{"/x": {}}},
			want: "EndpointRules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}
