package httplimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calm-limiter/calm/policy"
)

// advancingTimer is a SlowDownConfig.After that moves the store's clock
// instead of sleeping, and records every delay.
type advancingTimer struct {
	clock  *testClock
	mu     sync.Mutex
	delays []time.Duration
}

func (a *advancingTimer) After(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	a.delays = append(a.delays, d)
	a.mu.Unlock()
	a.clock.Advance(d)
	ch := make(chan time.Time, 1)
	ch <- a.clock.Now()
	return ch
}

func newSlowDown(t *testing.T, f *fixture, cfg SlowDownConfig) http.Handler {
	t.Helper()
	mw, err := f.lim.SlowDown(cfg)
	if err != nil {
		t.Fatalf("SlowDown: %v", err)
	}
	return mw(okHandler)
}

func TestSlowDownWaitsForBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"2/second"}}})
	timer := &advancingTimer{clock: f.clock}
	h := newSlowDown(t, f, SlowDownConfig{MaxDelay: 2 * time.Second, After: timer.After})

	f.clock.Advance(250 * time.Millisecond)
	for i := range 3 {
		if w := do(h, "GET", "/", client1); w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
		}
	}
	if len(timer.delays) != 1 || timer.delays[0] != 750*time.Millisecond {
		t.Errorf("delays = %v, want one wait of 750ms until the next window", timer.delays)
	}
}

func TestSlowDownDeniesBeyondMaxDelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	timer := &advancingTimer{clock: f.clock}
	h := newSlowDown(t, f, SlowDownConfig{MaxDelay: 5 * time.Second, After: timer.After})
	do(h, "GET", "/", client1)
	w := do(h, "GET", "/", client1)
	if w.Code != StatusEnhanceYourCalm || w.Header().Get("Retry-After") != "60" {
		t.Errorf("status %d Retry-After %q, want 420 and 60", w.Code, w.Header().Get("Retry-After"))
	}
	if len(timer.delays) != 0 {
		t.Errorf("delays = %v, want none when the wait exceeds MaxDelay", timer.delays)
	}
}

func TestSlowDownStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/second"}}})
	waiting := make(chan struct{})
	never := func(time.Duration) <-chan time.Time {
		close(waiting)
		return nil
	}
	mw, err := f.lim.SlowDown(SlowDownConfig{After: never})
	if err != nil {
		t.Fatalf("SlowDown: %v", err)
	}
	called := 0
	h := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called++ }))
	do(h, "GET", "/", client1)

	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	r.RemoteAddr = client1
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(w, r)
		close(done)
	}()
	<-waiting
	cancel()
	<-done
	if called != 1 || w.Body.Len() != 0 {
		t.Errorf("handler calls %d, body %q; want 1 call and no answer to the client that left", called, w.Body.String())
	}
}

func TestSlowDownMaxWaiting(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/second"}}})
	entered := make(chan struct{}, 1)
	release := make(chan time.Time)
	blocking := func(time.Duration) <-chan time.Time {
		entered <- struct{}{}
		return release
	}
	h := newSlowDown(t, f, SlowDownConfig{MaxWaiting: 1, After: blocking})
	do(h, "GET", "/", client1)

	done := make(chan int)
	go func() { done <- do(h, "GET", "/", client1).Code }()
	<-entered
	if w := do(h, "GET", "/", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("second waiter: status %d, want 420 when MaxWaiting is reached", w.Code)
	}
	f.clock.Advance(time.Second)
	release <- time.Time{}
	if code := <-done; code != http.StatusOK {
		t.Errorf("first waiter: status %d, want 200 after its wait", code)
	}
}

func TestSlowDownInvalidConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	if _, err := f.lim.SlowDown(SlowDownConfig{MaxDelay: -time.Second}); err == nil {
		t.Errorf("SlowDown(MaxDelay -1s) = nil error, want one")
	}
	if _, err := f.lim.SlowDown(SlowDownConfig{MaxWaiting: -1}); err == nil {
		t.Errorf("SlowDown(MaxWaiting -1) = nil error, want one")
	}
}

func TestSlowDownHoldsLeakyQueueWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{Routes: []policy.Route{
		{Pattern: "/queue", Limits: []string{"2/second"}, Algorithm: "leaky_queue"},
	}}})
	timer := &advancingTimer{clock: f.clock}
	h := newSlowDown(t, f, SlowDownConfig{MaxDelay: 2 * time.Second, After: timer.After})
	for i := range 3 {
		if w := do(h, "GET", "/queue", client1); w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
		}
	}
	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}
	if !slices.Equal(timer.delays, want) {
		t.Errorf("delays = %v, want %v: the queue spaces requests 500ms apart", timer.delays, want)
	}
}

// recordingTimer is a SlowDownConfig.After that fires at once without
// moving the clock, so that requests sent one after another arrive as if
// the earlier ones were still held. It records every delay.
type recordingTimer struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (a *recordingTimer) After(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	a.delays = append(a.delays, d)
	a.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func TestSlowDownQueueDeniesBeyondMaxDelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{Routes: []policy.Route{
		{Pattern: "/queue", Limits: []string{"5/5s"}, Algorithm: "leaky_queue"},
	}}})
	timer := &recordingTimer{}
	h := newSlowDown(t, f, SlowDownConfig{MaxDelay: 1500 * time.Millisecond, After: timer.After})

	want := []int{http.StatusOK, http.StatusOK, StatusEnhanceYourCalm, StatusEnhanceYourCalm}
	for i, code := range want {
		if w := do(h, "GET", "/queue", client1); w.Code != code {
			t.Errorf("request %d at %v: status %d, want %d", i+1, 20*time.Millisecond*time.Duration(i), w.Code, code)
		}
		f.clock.Advance(20 * time.Millisecond)
	}
	if wantDelays := []time.Duration{980 * time.Millisecond}; !slices.Equal(timer.delays, wantDelays) {
		t.Errorf("delays = %v, want %v: the second request waits for its slot, "+
			"the others would wait longer than MaxDelay", timer.delays, wantDelays)
	}

	// The denied requests were not charged: at 600ms the next slot is at 2s.
	f.clock.Advance(520 * time.Millisecond)
	timer.delays = nil
	if w := do(h, "GET", "/queue", client1); w.Code != http.StatusOK {
		t.Errorf("request at 600ms: status %d, want 200", w.Code)
	}
	if wantDelays := []time.Duration{1400 * time.Millisecond}; !slices.Equal(timer.delays, wantDelays) {
		t.Errorf("delays = %v, want %v: denied requests must not hold slots", timer.delays, wantDelays)
	}
}
