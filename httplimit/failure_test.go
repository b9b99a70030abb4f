package httplimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/policy"
)

// newBrokenFixture returns a fixture whose memory store is closed, so that
// every check fails with store.ErrClosed.
func newBrokenFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := newFixture(t, cfg)
	f.store.Close()
	return f
}

func TestFailOpen(t *testing.T) {
	t.Parallel()
	f := newBrokenFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	h := f.lim.Middleware(okHandler)
	for i := range 3 {
		w := do(h, "GET", "/", client1)
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200 when failing open", i+1, w.Code)
		}
		if got := w.Header().Get("X-RateLimit-Enforced"); got != "false" {
			t.Errorf("request %d: X-RateLimit-Enforced = %q, want false", i+1, got)
		}
		if got := w.Header().Get("RateLimit-Limit"); got != "" {
			t.Errorf("request %d: RateLimit-Limit = %q, want none without a decision", i+1, got)
		}
	}
	if n := strings.Count(f.log.String(), "rate-limit store failed"); n != 1 {
		t.Errorf("log has %d store-failure lines, want 1: %s", n, f.log.String())
	}
	res, err := f.lim.Check(httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err, ErrStore) || !res.Allowed {
		t.Errorf("Check = %+v, %v; want allowed with ErrStore", res, err)
	}
}

func TestFailClosed(t *testing.T) {
	t.Parallel()
	f := newBrokenFixture(t, Config{FailClosed: true})
	w := do(f.lim.Middleware(okHandler), "GET", "/", client1)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 when failing closed", w.Code)
	}
	if !strings.Contains(w.Body.String(), `"reason":"store_unavailable"`) {
		t.Errorf("body %s, want reason store_unavailable", w.Body.String())
	}
	res, err := f.lim.Check(httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err, ErrStore) || res.Allowed {
		t.Errorf("Check = %+v, %v; want denied with ErrStore", res, err)
	}
}

func TestStoreRecoveryIsLogged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.lim.noteStoreFailure(t.Context(), errors.New("connection refused"))
	f.lim.noteStoreFailure(t.Context(), errors.New("connection refused"))
	do(f.lim.Middleware(okHandler), "GET", "/", client1)
	log := f.log.String()
	if strings.Count(log, "rate-limit store failed") != 1 || !strings.Contains(log, `"failed_requests":2`) {
		t.Errorf("log = %s, want one failure line and a recovery line with 2 failed requests", log)
	}
}

func TestClientGoneWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	called := false
	h := f.lim.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	r := httptest.NewRequest("GET", "/", nil)
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r.WithContext(ctx))
	if called || w.Body.Len() != 0 {
		t.Errorf("cancelled request: handler called %v, body %q; want neither", called, w.Body.String())
	}
	if strings.Contains(f.log.String(), "store failed") {
		t.Errorf("a cancelled request was logged as a store failure: %s", f.log.String())
	}
}

func TestViolationLogIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	f.lim.logGate = newLogGate(2, f.clock.Now)
	h := f.lim.Middleware(okHandler)
	for range 6 {
		do(h, "GET", "/", client1)
	}
	if n := strings.Count(f.log.String(), `"msg":"rate limit exceeded"`); n != 2 {
		t.Errorf("violation lines in one second = %d, want 2", n)
	}
	f.clock.Advance(time.Second)
	do(h, "GET", "/", client1)
	log := f.log.String()
	if !strings.Contains(log, `"suppressed":3`) {
		t.Errorf("log = %s, want a line reporting 3 suppressed lines", log)
	}
	if n := strings.Count(log, `"msg":"rate limit exceeded"`); n != 3 {
		t.Errorf("violation lines after a second = %d, want 3", n)
	}
}

func TestLogGateUnbounded(t *testing.T) {
	t.Parallel()
	g := newLogGate(-1, newTestClock().Now)
	for i := range 1000 {
		if ok, _ := g.allow(); !ok {
			t.Fatalf("allow() #%d = false with no bound, want true", i+1)
		}
	}
}
