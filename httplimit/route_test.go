package httplimit

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/policy"
)

func TestRouteUsesMuxPattern(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", f.lim.Limit("2/minute", okHandler))
	for _, path := range []string{"/users/1", "/users/2"} {
		if w := do(mux, "GET", path, client1); w.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", path, w.Code)
		}
	}
	w := do(mux, "GET", "/users/3", client1)
	if w.Code != StatusEnhanceYourCalm {
		t.Fatalf("GET /users/3: status %d, want 420", w.Code)
	}
	if got := w.Header().Get("X-RateLimit-Policy"); got != "GET /users/{id}" {
		t.Errorf("X-RateLimit-Policy = %q, want the route pattern", got)
	}
}

func TestRouteOutsideMux(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	a := f.lim.Limit("1/minute", okHandler)
	b := f.lim.Limit("1/minute", okHandler, Name("b"))
	do(a, "GET", "/x", client1)
	if w := do(b, "GET", "/x", client1); w.Code != http.StatusOK {
		t.Errorf("second wrapper: status %d, want 200 because each wrapper has its own endpoint", w.Code)
	}
	if w := do(a, "GET", "/y", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("first wrapper again: status %d, want 420", w.Code)
	}
}

func TestRouteCost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	h := f.lim.Limit("10/minute", okHandler, Cost(5), Endpoint("reports"))
	for i, want := range []string{"5", "0"} {
		w := do(h, "POST", "/reports", client1)
		if w.Code != http.StatusOK || w.Header().Get("RateLimit-Remaining") != want {
			t.Fatalf("request %d: status %d remaining %q, want 200 and %s", i+1, w.Code,
				w.Header().Get("RateLimit-Remaining"), want)
		}
	}
	if w := do(h, "POST", "/reports", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("request 3: status %d, want 420", w.Code)
	}
}

func TestRouteFreeRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	h := f.lim.Limit("1/minute", okHandler, Cost(0))
	for i := range 3 {
		w := do(h, "GET", "/", client1)
		if w.Code != http.StatusOK || w.Header().Get("RateLimit-Remaining") != "1" {
			t.Errorf("free request %d: status %d remaining %q, want 200 and 1", i+1, w.Code,
				w.Header().Get("RateLimit-Remaining"))
		}
	}
}

func TestRouteCostAboveCapacity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	// A static cost above the capacity is a configuration error, so the
	// cost comes from the request.
	h := f.lim.Limit("3/minute", okHandler,
		CostFunc(func(*http.Request) (int64, error) { return 5, nil }))
	w := do(h, "GET", "/", client1)
	if w.Code != StatusEnhanceYourCalm {
		t.Fatalf("status %d, want 420", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "" {
		t.Errorf("Retry-After = %q, want none for a cost that can never pass", got)
	}
	b := decodeBody(t, w)
	if b.LimitInfo.Reason != "cost_exceeds_capacity" || b.LimitInfo.RetryAfter != nil {
		t.Errorf("limit_info = %+v, want reason cost_exceeds_capacity and retry_after null", b.LimitInfo)
	}
	if !strings.Contains(w.Body.String(), `"retry_after":null`) {
		t.Errorf("body %s: want retry_after null", w.Body.String())
	}
	if b.Detail != DetailCostExceedsCapacity {
		t.Errorf("detail = %q, want %q", b.Detail, DetailCostExceedsCapacity)
	}
	if strings.Contains(b.Detail, "Retry-After") {
		t.Errorf("detail = %q, want no mention of Retry-After, which is not sent", b.Detail)
	}
}

func TestRouteCostFunc(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	rows := func(r *http.Request) (int64, error) {
		return strconv.ParseInt(r.URL.Query().Get("rows"), 10, 64)
	}
	h := f.lim.Limit("10/minute", okHandler, CostFunc(rows), Endpoint("export"))
	tests := []struct {
		name, target  string
		status        int
		wantRemaining string
	}{
		{"cost 4", "/export?rows=4", http.StatusOK, "6"},
		{"negative", "/export?rows=-3", http.StatusBadRequest, ""},
		{"unparsable", "/export?rows=lots", http.StatusBadRequest, ""},
		{"nothing charged", "/export?rows=6", http.StatusOK, "0"},
	}
	for _, tt := range tests {
		w := do(h, "GET", tt.target, client1)
		if w.Code != tt.status {
			t.Fatalf("%s: status %d, want %d", tt.name, w.Code, tt.status)
		}
		if got := w.Header().Get("RateLimit-Remaining"); got != tt.wantRemaining {
			t.Errorf("%s: RateLimit-Remaining = %q, want %q", tt.name, got, tt.wantRemaining)
		}
		if tt.status == http.StatusBadRequest && !strings.Contains(w.Body.String(), `"reason":"invalid_cost"`) {
			t.Errorf("%s: body %s, want reason invalid_cost", tt.name, w.Body.String())
		}
	}
	if !strings.Contains(f.log.String(), "invalid cost") {
		t.Errorf("log has no invalid-cost line: %s", f.log.String())
	}
}

func TestNewRouteInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	tests := []struct {
		name   string
		limits string
		opts   []RouteOption
		want   string
	}{
		{"negative cost", "5/minute", []RouteOption{Cost(-1)}, "cost -1"},
		{"bad rule", "5/fortnight", nil, `"5/fortnight"`},
		{"empty", "", nil, "limits"},
		{"bad scope", "5/minute", []RouteOption{Scope("planet")}, `"planet"`},
		{"bad algorithm", "5/minute", []RouteOption{Algorithm("magic")}, `"magic"`},
		{"bad name", "5/minute", []RouteOption{Name("a\nb")}, "name"},
		{"blank endpoint", "5/minute", []RouteOption{Endpoint("  ")}, "blank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := f.lim.NewRoute(tt.limits, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewRoute(%q) error = %v, want it to contain %q", tt.limits, err, tt.want)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Limit with cost -1 did not panic")
		}
	}()
	f.lim.Limit("5/minute", okHandler, Cost(-1))
}

func TestCheckManual(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := f.lim.Check(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !res.Allowed {
			f.lim.Deny(w, res)
			return
		}
		f.lim.WriteHeaders(w, res)
		w.Write([]byte("ok"))
	})
	if w := do(h, "GET", "/jobs", client1); w.Code != http.StatusOK || w.Header().Get("RateLimit-Remaining") != "0" {
		t.Errorf("first: status %d remaining %q, want 200 and 0", w.Code, w.Header().Get("RateLimit-Remaining"))
	}
	w := do(h, "GET", "/jobs", client1)
	if w.Code != StatusEnhanceYourCalm || w.Header().Get("Retry-After") != "60" {
		t.Errorf("second: status %d Retry-After %q, want 420 and 60", w.Code, w.Header().Get("Retry-After"))
	}
	res, err := f.lim.Check(httptest.NewRequest("GET", "/healthz", nil))
	if err != nil || !res.Allowed || res.Quotas != nil {
		t.Errorf("Check(/healthz) = %+v, %v; want allowed without quotas", res, err)
	}
}

func TestRouteCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	rt, err := f.lim.NewRoute("2/minute", Endpoint("jobs"), Scope(calm.ScopeEndpoint))
	if err != nil {
		t.Fatalf("NewRoute: %v", err)
	}
	for i, remote := range []string{client1, "192.0.2.99:1", "192.0.2.100:1"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		res, err := rt.Check(r)
		if err != nil {
			t.Fatalf("Check #%d: %v", i+1, err)
		}
		if want := i < 2; res.Allowed != want {
			t.Errorf("Check #%d from %s: Allowed = %v, want %v (one budget for all clients)", i+1, remote, res.Allowed, want)
		}
		if res.Scope != calm.ScopeEndpoint {
			t.Errorf("Check #%d: Scope = %q, want endpoint", i+1, res.Scope)
		}
	}
	rt2, _ := f.lim.NewRoute("2/minute", CostFunc(func(*http.Request) (int64, error) { return -1, nil }))
	res, err := rt2.Check(httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err, ErrInvalidCost) || res.Allowed || res.Reason != algorithm.ReasonInvalidCost {
		t.Errorf("Check with cost -1 = %+v, %v; want denied with ErrInvalidCost", res, err)
	}
}

func TestGroupBudgetCost(t *testing.T) {
	t.Parallel()
	cost := int64(10)
	f := newFixture(t, Config{Policy: policy.Config{Groups: []policy.Group{{
		Prefix: "/api", Budget: []string{"100/minute"},
		Routes: []policy.Route{{Pattern: "POST /api/reports", Cost: &cost}},
	}}}})
	h := f.lim.Middleware(okHandler)
	for i := range 9 {
		if w := do(h, "POST", "/api/reports", client1); w.Code != http.StatusOK {
			t.Fatalf("report %d: status %d, want 200", i+1, w.Code)
		}
	}
	for i := range 10 {
		if w := do(h, "GET", "/api/test", client1); w.Code != http.StatusOK {
			t.Fatalf("cheap request %d: status %d, want 200 within the shared budget", i+1, w.Code)
		}
	}
	w := do(h, "GET", "/api/test", client1)
	if w.Code != StatusEnhanceYourCalm || w.Header().Get("X-RateLimit-Policy") != "/api-budget" {
		t.Errorf("request after 100 units: status %d policy %q, want 420 from /api-budget",
			w.Code, w.Header().Get("X-RateLimit-Policy"))
	}
	items, err := parseSFList(w.Header().Get("RateLimit-Policy"))
	if err != nil || len(items) != 3 {
		t.Errorf("RateLimit-Policy %q: %d items, err %v; want default-60s, default-3600s and the budget",
			w.Header().Get("RateLimit-Policy"), len(items), err)
	}
}

func TestRouteReplacesPolicyUnderMiddleware(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	f := newFixture(t, Config{Mux: mux, Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	mux.Handle("POST /auth/login", f.lim.Limit("3/minute", okHandler, Name("login")))
	h := f.lim.Middleware(mux)
	for i := range 3 {
		w := do(h, "POST", "/auth/login", client1)
		if w.Code != http.StatusOK || w.Header().Get("RateLimit-Limit") != "3" {
			t.Fatalf("login %d: status %d limit %q, want 200 under the declared 3/minute only",
				i+1, w.Code, w.Header().Get("RateLimit-Limit"))
		}
	}
	if w := do(h, "POST", "/auth/login", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("login 4: status %d, want 420", w.Code)
	}
}

func TestRouteStacksWithoutMuxWithoutSharingKeys(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	f := newFixture(t, Config{Policy: policy.Config{
		Routes: []policy.Route{{Pattern: "POST /auth/login", Limits: []string{"5/minute"}}},
	}})
	mux.Handle("POST /auth/login", f.lim.Limit("3/minute", okHandler))
	h := f.lim.Middleware(mux)
	for i := range 3 {
		if w := do(h, "POST", "/auth/login", client1); w.Code != http.StatusOK {
			t.Fatalf("login %d: status %d, want 200", i+1, w.Code)
		}
	}
	if w := do(h, "POST", "/auth/login", client1); w.Code != StatusEnhanceYourCalm {
		t.Fatalf("login 4: status %d, want 420 from the declared 3/minute", w.Code)
	}
	// The policy's 5/minute counted 4 requests on its own key: one left.
	res, err := f.lim.Check(httptest.NewRequest("POST", "/auth/login", nil))
	if err != nil || !res.Allowed || res.Remaining != 0 {
		t.Errorf("policy check = %+v, %v; want allowed with 0 remaining after 5 requests", res, err)
	}
}
