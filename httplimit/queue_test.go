package httplimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/policy"
)

// queuePolicy limits the path /queue with the leaky queue.
func queuePolicy(limits string) policy.Config {
	return policy.Config{Routes: []policy.Route{
		{Pattern: "/queue", Limits: []string{limits}, Algorithm: "leaky_queue"},
	}}
}

// gate is an After that reports each wait on entered and blocks until the
// test sends on release, so that a test can act while a request is held.
type gate struct {
	entered chan time.Duration
	release chan time.Time
}

func newGate() *gate {
	return &gate{entered: make(chan time.Duration, 8), release: make(chan time.Time)}
}

func (g *gate) After(d time.Duration) <-chan time.Time {
	g.entered <- d
	return g.release
}

// countingHandler responds 200 and counts its calls.
type countingHandler struct{ calls atomic.Int64 }

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	w.Write([]byte("ok"))
}

// doAsync serves one request from client1 in a goroutine; the channel
// receives its recorder once the handler returns.
func doAsync(h http.Handler, ctx context.Context, target string) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	r := httptest.NewRequest("GET", target, nil).WithContext(ctx)
	r.RemoteAddr = client1
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		done <- w
	}()
	return done
}

func TestQueueHoldsAdmittedRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler func(f *fixture) http.Handler
	}{
		{"middleware", func(f *fixture) http.Handler { return f.lim.Middleware(okHandler) }},
		{"route", func(f *fixture) http.Handler {
			return f.lim.Limit("2/second", okHandler, Algorithm("leaky_queue"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			timer := &recordingTimer{}
			f := newFixture(t, Config{Policy: queuePolicy("2/second"), After: timer.After})
			h := tt.handler(f)

			for i, code := range []int{http.StatusOK, http.StatusOK, StatusEnhanceYourCalm} {
				if w := do(h, "GET", "/queue", client1); w.Code != code {
					t.Errorf("request %d: status %d, want %d", i+1, w.Code, code)
				}
			}
			if want := []time.Duration{500 * time.Millisecond}; !slices.Equal(timer.delays, want) {
				t.Errorf("delays = %v, want %v: the second request waits one interval", timer.delays, want)
			}

			f.clock.Advance(time.Second)
			if w := do(h, "GET", "/queue", client1); w.Code != http.StatusOK {
				t.Errorf("request after 1s: status %d, want 200", w.Code)
			}
			if len(timer.delays) != 1 {
				t.Errorf("delays = %v, want no wait once the queue is empty", timer.delays)
			}
		})
	}
}

func TestQueueDeniesBeyondMaxWait(t *testing.T) {
	t.Parallel()
	timer := &recordingTimer{}
	f := newFixture(t, Config{
		Policy:  queuePolicy("5/5s"),
		MaxWait: 1500 * time.Millisecond,
		After:   timer.After,
	})
	h := f.lim.Middleware(okHandler)

	want := []int{http.StatusOK, http.StatusOK, StatusEnhanceYourCalm, StatusEnhanceYourCalm}
	var last *httptest.ResponseRecorder
	for i, code := range want {
		last = do(h, "GET", "/queue", client1)
		if last.Code != code {
			t.Errorf("request %d: status %d, want %d", i+1, last.Code, code)
		}
		f.clock.Advance(20 * time.Millisecond)
	}
	if want := []time.Duration{980 * time.Millisecond}; !slices.Equal(timer.delays, want) {
		t.Errorf("delays = %v, want %v", timer.delays, want)
	}
	b := decodeBody(t, last)
	if b.LimitInfo.Reason != "queue_full" {
		t.Errorf("limit_info.reason = %q, want queue_full", b.LimitInfo.Reason)
	}
	// The next slot is at 2s; a wait of 1.5s fits from 500ms on.
	if got := last.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
}

func TestCheckBoundsQueueWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: queuePolicy("5/5s"), MaxWait: 1500 * time.Millisecond})
	var waits []time.Duration
	for range 3 {
		res, err := f.lim.Check(httptest.NewRequest("GET", "/queue", nil))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if !res.Allowed {
			if res.Reason.String() != "queue_full" {
				t.Errorf("Check reason = %s, want queue_full", res.Reason)
			}
			break
		}
		waits = append(waits, res.Wait)
	}
	if want := []time.Duration{0, time.Second}; !slices.Equal(waits, want) {
		t.Errorf("Check waits = %v, want %v and then queue_full", waits, want)
	}
}

func TestQueueClientGoneKeepsCharge(t *testing.T) {
	t.Parallel()
	g := newGate()
	f := newFixture(t, Config{Policy: queuePolicy("2/second"), After: g.After})
	next := &countingHandler{}
	h := f.lim.Middleware(next)
	do(h, "GET", "/queue", client1)

	ctx, cancel := context.WithCancel(context.Background())
	done := doAsync(h, ctx, "/queue")
	<-g.entered
	if n := f.lim.HeldRequests(); n != 1 {
		t.Errorf("HeldRequests() = %d while one request waits, want 1", n)
	}
	cancel()
	w := <-done
	if w.Body.Len() != 0 || next.calls.Load() != 1 {
		t.Errorf("client that left: body %q, handler calls %d; want no answer and 1 call",
			w.Body.String(), next.calls.Load())
	}
	if n := f.lim.holder.waiting.Load(); n != 0 {
		t.Errorf("waiting slots taken = %d after the client left, want 0", n)
	}
	if n := f.lim.HeldRequests(); n != 0 {
		t.Errorf("held requests = %d after the client left, want 0", n)
	}
	// The slot of the request that left stays charged, so the queue is full.
	if w := do(h, "GET", "/queue", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("request after the client left: status %d, want 420", w.Code)
	}
}

func TestStopWaitingAnswersHeld(t *testing.T) {
	t.Parallel()
	g := newGate()
	f := newFixture(t, Config{Policy: queuePolicy("2/second"), After: g.After})
	next := &countingHandler{}
	h := f.lim.Middleware(next)
	do(h, "GET", "/queue", client1)

	done := doAsync(h, context.Background(), "/queue")
	<-g.entered
	f.lim.StopWaiting()
	f.lim.StopWaiting() // a second call does nothing
	w := <-done
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("held request: status %d, want 503", w.Code)
	}
	for k, want := range map[string]string{"Retry-After": "1", "Connection": "close"} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("held request: %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(w.Body.String(), `"reason":"shutting_down"`) {
		t.Errorf("held request: body %q, want reason shutting_down", w.Body.String())
	}
	if !strings.Contains(f.log.String(), `"msg":"stopped holding requests","component":"httplimit","held":1`) {
		t.Errorf("log has no stop line with one held request: %s", f.log.String())
	}

	// After the stop, a request that needs no wait passes and one that
	// would wait is denied at once, without a charge.
	f.clock.Advance(time.Second)
	codes := []int{do(h, "GET", "/queue", client1).Code, do(h, "GET", "/queue", client1).Code}
	if !slices.Equal(codes, []int{http.StatusOK, StatusEnhanceYourCalm}) {
		t.Errorf("statuses after the stop = %v, want [200 420]", codes)
	}
	f.clock.Advance(500 * time.Millisecond)
	if w := do(h, "GET", "/queue", client1); w.Code != http.StatusOK {
		t.Errorf("request at the next slot after the stop: status %d, want 200", w.Code)
	}
	if n := next.calls.Load(); n != 3 {
		t.Errorf("handler calls = %d, want 3", n)
	}
}

func TestQueueMaxWaiting(t *testing.T) {
	t.Parallel()
	g := newGate()
	f := newFixture(t, Config{Policy: queuePolicy("3/second"), MaxWaiting: 1, After: g.After})
	h := f.lim.Middleware(okHandler)
	do(h, "GET", "/queue", client1)

	done := doAsync(h, context.Background(), "/queue")
	<-g.entered
	w := do(h, "GET", "/queue", client1)
	if w.Code != StatusEnhanceYourCalm {
		t.Errorf("request over MaxWaiting: status %d, want 420", w.Code)
	}
	if b := decodeBody(t, w); b.LimitInfo.Reason != "queue_full" {
		t.Errorf("request over MaxWaiting: reason %q, want queue_full", b.LimitInfo.Reason)
	}
	g.release <- time.Time{}
	if w := <-done; w.Code != http.StatusOK {
		t.Errorf("held request: status %d, want 200", w.Code)
	}
	// The denied request took no slot of the queue: the third slot is
	// free, 667ms ahead.
	go func() { g.release <- time.Time{} }()
	if w := do(h, "GET", "/queue", client1); w.Code != http.StatusOK {
		t.Errorf("request after the held one: status %d, want 200", w.Code)
	}
	if d := <-g.entered; d != 666667*time.Microsecond {
		t.Errorf("wait of the third request = %v, want 666.667ms", d)
	}
}

func TestSlowDownStopWaiting(t *testing.T) {
	t.Parallel()
	g := newGate()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/second"}}})
	h := newSlowDown(t, f, SlowDownConfig{After: g.After})
	do(h, "GET", "/", client1)

	done := doAsync(h, context.Background(), "/")
	<-g.entered
	f.lim.StopWaiting()
	w := <-done
	if w.Code != StatusEnhanceYourCalm || w.Header().Get("Retry-After") != "1" {
		t.Errorf("request waiting for its budget: status %d Retry-After %q, want 420 and 1",
			w.Code, w.Header().Get("Retry-After"))
	}
}

func TestQueueRouteSettings(t *testing.T) {
	t.Parallel()
	timer := &recordingTimer{}
	f := newFixture(t, Config{MaxWait: 1500 * time.Millisecond, After: timer.After})
	h := f.lim.Limit("4/second", okHandler, Algorithm("leaky_queue"), Burst(5), Delay(2),
		MaxWait(3*time.Second))

	// Turns are 250ms apart and the first 2 requests beyond the rate pass
	// at once; the capacity of 5 holds the fifth request for 500ms.
	want := []int{200, 200, 200, 200, 200, StatusEnhanceYourCalm}
	for i, code := range want {
		if w := do(h, "GET", "/", client1); w.Code != code {
			t.Errorf("request %d: status %d, want %d", i+1, w.Code, code)
		}
	}
	wantDelays := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond}
	if !slices.Equal(timer.delays, wantDelays) {
		t.Errorf("delays = %v, want %v", timer.delays, wantDelays)
	}
}

func TestQueueRouteMaxWaitOverridesDefault(t *testing.T) {
	t.Parallel()
	timer := &recordingTimer{}
	f := newFixture(t, Config{
		Policy: policy.Config{Routes: []policy.Route{{Pattern: "/queue", Limits: []string{"5/5s"},
			Algorithm: "leaky_queue", MaxWait: "2500ms"}}},
		MaxWait: 1500 * time.Millisecond,
		After:   timer.After,
	})
	h := f.lim.Middleware(okHandler)
	for i, code := range []int{200, 200, 200, StatusEnhanceYourCalm} {
		if w := do(h, "GET", "/queue", client1); w.Code != code {
			t.Errorf("request %d: status %d, want %d", i+1, w.Code, code)
		}
	}
	if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(timer.delays, want) {
		t.Errorf("delays = %v, want %v: the route's 2.5s bound replaces the default 1.5s",
			timer.delays, want)
	}
}

func TestQueueSettingsCheckedAgainstLimiter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	_, err := f.lim.NewRoute("5/second", Delay(2))
	if err == nil || !strings.Contains(err.Error(), "delay 2 has no effect with algorithm fixed_window") {
		t.Errorf("NewRoute(Delay 2) under fixed_window = %v, want an error about the delay", err)
	}
	_, err = f.lim.NewRoute("5/second", Algorithm("leaky_queue"), MaxWait(2*time.Hour))
	if err == nil || !strings.Contains(err.Error(), "max_wait") {
		t.Errorf("NewRoute(MaxWait 2h) = %v, want an error about max_wait", err)
	}
	_, err = New(Config{Limiter: f.calm, Policy: policy.Config{Routes: []policy.Route{
		{Pattern: "/q", Limits: []string{"5/second"}, MaxWait: "1s"}}}})
	if err == nil || !strings.Contains(err.Error(), "default algorithm fixed_window") {
		t.Errorf("New(route max_wait) under fixed_window = %v, want an error about max_wait", err)
	}
}
