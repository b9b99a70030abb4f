package httplimit

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/policy"
)

const client1 = "192.0.2.1:1234"

func TestMiddlewareDeniesOverLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"3/minute"}}})
	h := f.lim.Middleware(okHandler)

	for i := range 3 {
		w := do(h, "GET", "/api/test", client1)
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
		}
		if got, want := w.Header().Get("RateLimit-Remaining"), string(rune('2'-i)); got != want {
			t.Errorf("request %d: RateLimit-Remaining = %q, want %q", i+1, got, want)
		}
	}
	w := do(h, "GET", "/api/test", client1)
	if w.Code != StatusEnhanceYourCalm {
		t.Fatalf("request 4: status %d, want 420", w.Code)
	}
	checks := map[string]string{
		"RateLimit-Limit":     "3",
		"RateLimit-Remaining": "0",
		"RateLimit-Reset":     "60",
		"Retry-After":         "60",
		"X-RateLimit-Policy":  "default",
		"X-RateLimit-Scope":   "user",
		"RateLimit-Policy":    `"default";q=3;w=60`,
		"RateLimit":           `"default";r=0;t=60`,
		"Content-Type":        "application/json; charset=utf-8",
	}
	for k, want := range checks {
		if got := w.Header().Get(k); got != want {
			t.Errorf("denied %s = %q, want %q", k, got, want)
		}
	}
	b := decodeBody(t, w)
	if b.Message != DefaultMessage || b.Detail != DefaultDetail {
		t.Errorf("body message, detail = %q, %q; want defaults", b.Message, b.Detail)
	}
	if b.LimitInfo.RetryAfter == nil || *b.LimitInfo.RetryAfter != 60 {
		t.Errorf("limit_info.retry_after = %v, want 60", b.LimitInfo.RetryAfter)
	}
	if b.LimitInfo.Reason != "limited" || b.LimitInfo.Policy != "default" || b.LimitInfo.Scope != "user" {
		t.Errorf("limit_info = %+v, want reason limited, policy default, scope user", b.LimitInfo)
	}
	if !strings.Contains(f.log.String(), `"msg":"rate limit exceeded"`) {
		t.Errorf("log has no violation line: %s", f.log.String())
	}
	if strings.Contains(f.log.String(), "192.0.2.1") {
		t.Errorf("log contains the raw client address: %s", f.log.String())
	}

	other := do(h, "GET", "/api/test", "192.0.2.2:1")
	if other.Code != http.StatusOK {
		t.Errorf("other client: status %d, want 200", other.Code)
	}
}

func TestMiddlewareExcludedPaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	h := f.lim.Middleware(okHandler)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for i := range 3 {
			w := do(h, "GET", path, client1)
			if w.Code != http.StatusOK {
				t.Errorf("GET %s #%d: status %d, want 200", path, i+1, w.Code)
			}
			if got := w.Header().Get("RateLimit-Limit"); got != "" {
				t.Errorf("GET %s: RateLimit-Limit = %q, want none on an excluded path", path, got)
			}
		}
	}
}

func TestMiddlewareIncludePaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}, Include: []string{"/api/"}}})
	h := f.lim.Middleware(okHandler)
	for i := range 3 {
		if w := do(h, "GET", "/home", client1); w.Code != http.StatusOK {
			t.Errorf("GET /home #%d: status %d, want 200 outside include", i+1, w.Code)
		}
	}
	do(h, "GET", "/api/a", client1)
	if w := do(h, "GET", "/api/a", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("GET /api/a #2: status %d, want 420", w.Code)
	}
}

// newAppMux registers the handlers the pattern tests use.
func newAppMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", okHandler)
	mux.Handle("GET /items/{id}", okHandler)
	mux.Handle("/auth/", okHandler)
	mux.Handle("/", okHandler)
	return mux
}

func TestMiddlewarePatternKeys(t *testing.T) {
	t.Parallel()
	mux := newAppMux()
	f := newFixture(t, Config{Mux: mux, Policy: policy.Config{DefaultLimits: []string{"2/minute"}}})
	h := f.lim.Middleware(mux)

	do(h, "GET", "/users/1", client1)
	do(h, "GET", "/users/2", client1)
	w := do(h, "GET", "/users/3", client1)
	if w.Code != StatusEnhanceYourCalm {
		t.Errorf("third GET /users/{id}: status %d, want 420 because /users/1..3 share a key", w.Code)
	}
	if w := do(h, "GET", "/items/1", client1); w.Code != http.StatusOK {
		t.Errorf("GET /items/1: status %d, want 200 on its own endpoint", w.Code)
	}
}

func TestMiddlewareUnknownPathsShareCatchAll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"2/minute"}}})
	h := f.lim.Middleware(okHandler)
	for i := range 2 {
		do(h, "GET", "/random/"+strconv.Itoa(i), client1)
	}
	if w := do(h, "GET", "/random/other", client1); w.Code != StatusEnhanceYourCalm {
		t.Errorf("third unknown path: status %d, want 420 from the shared catch-all", w.Code)
	}
}

func appPattern(l *Limiter, r *http.Request) string {
	_, pattern := l.resolve(r)
	return pattern
}

func TestMiddlewareMaxEndpoints(t *testing.T) {
	t.Parallel()
	mux := newAppMux()
	f := newFixture(t, Config{Mux: mux, MaxEndpoints: 1})
	r := httptest.NewRequest("GET", "/users/1", nil)
	if got := appPattern(f.lim, r); got != "GET /users/{id}" {
		t.Fatalf("appPattern(/users/1) = %q, want the pattern", got)
	}
	if got := appPattern(f.lim, httptest.NewRequest("GET", "/items/1", nil)); got != "" {
		t.Errorf("appPattern(/items/1) = %q beyond MaxEndpoints, want \"\"", got)
	}
	if got := appPattern(f.lim, r); got != "GET /users/{id}" {
		t.Errorf("appPattern(/users/1) again = %q, want the known pattern", got)
	}
	connect := httptest.NewRequest("CONNECT", "/users/1", nil)
	if got := appPattern(f.lim, connect); got != "" {
		t.Errorf("appPattern(CONNECT) = %q, want \"\"", got)
	}
}

func TestMiddlewareGroup(t *testing.T) {
	t.Parallel()
	mux := newAppMux()
	f := newFixture(t, Config{Mux: mux, Policy: policy.Config{
		DefaultLimits: []string{"100/minute"},
		Groups: []policy.Group{{
			Prefix: "/auth", Name: "auth", Limits: []string{"5/minute"},
			Routes: []policy.Route{{Pattern: "POST /auth/login", Name: "login", Limits: []string{"3/minute"}}},
		}},
	}})
	h := f.lim.Middleware(mux)
	for i := range 3 {
		if w := do(h, "POST", "/auth/login", client1); w.Code != http.StatusOK {
			t.Fatalf("login #%d: status %d, want 200", i+1, w.Code)
		}
	}
	w := do(h, "POST", "/auth/login", client1)
	if w.Code != StatusEnhanceYourCalm || w.Header().Get("X-RateLimit-Policy") != "login" {
		t.Errorf("login #4: status %d policy %q, want 420 from login", w.Code, w.Header().Get("X-RateLimit-Policy"))
	}
	w = do(h, "POST", "/auth/register", client1)
	if w.Code != http.StatusOK || w.Header().Get("RateLimit-Limit") != "5" || w.Header().Get("X-RateLimit-Policy") != "auth" {
		t.Errorf("register: status %d limit %q policy %q, want 200 under the group's 5/minute",
			w.Code, w.Header().Get("RateLimit-Limit"), w.Header().Get("X-RateLimit-Policy"))
	}
}

func TestMiddlewareConcurrentExact(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"10/minute"}}})
	srv := httptest.NewServer(f.lim.Middleware(okHandler))
	defer srv.Close()

	const n = 200
	var wg sync.WaitGroup
	var allowed, denied, other atomic.Int64
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = n
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(srv.URL + "/api/test")
			if err != nil {
				other.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				allowed.Add(1)
			case StatusEnhanceYourCalm:
				denied.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if allowed.Load() != 10 || denied.Load() != n-10 || other.Load() != 0 {
		t.Errorf("200 concurrent requests: %d allowed, %d denied, %d other; want 10, 190, 0",
			allowed.Load(), denied.Load(), other.Load())
	}
}

func TestMiddleware429AndMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{
		StatusCode: http.StatusTooManyRequests, Message: "Slow down", Detail: "Come back later.",
		Policy: policy.Config{DefaultLimits: []string{"1/minute"}},
	})
	h := f.lim.Middleware(okHandler)
	do(h, "GET", "/", client1)
	w := do(h, "GET", "/", client1)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", w.Code)
	}
	if b := decodeBody(t, w); b.Message != "Slow down" || b.Detail != "Come back later." {
		t.Errorf("body = %+v, want the configured message and detail", b)
	}
}

func TestMiddlewareDefaultMessageFollowsStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		message string
		want    string
	}{
		{"420 default", 0, "", DefaultMessage},
		{"429 default", http.StatusTooManyRequests, "", "Too Many Requests"},
		{"429 configured", http.StatusTooManyRequests, "Enhance Your Calm", "Enhance Your Calm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{
				StatusCode: tt.status, Message: tt.message,
				Policy: policy.Config{DefaultLimits: []string{"1/minute"}},
			})
			h := f.lim.Middleware(okHandler)
			do(h, "GET", "/", client1)
			w := do(h, "GET", "/", client1)
			if b := decodeBody(t, w); b.Message != tt.want {
				t.Errorf("status %d: body message = %q, want %q", w.Code, b.Message, tt.want)
			}
		})
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no limiter", Config{}, "Config.Limiter"},
		{"status", Config{Limiter: f.calm, StatusCode: 500}, "StatusCode 500"},
		{"headers", Config{Limiter: f.calm, Headers: 9}, "Headers 9"},
		{"max endpoints", Config{Limiter: f.calm, MaxEndpoints: -1}, "MaxEndpoints -1"},
		{"max wait", Config{Limiter: f.calm, MaxWait: -time.Second}, "MaxWait -1s"},
		{"max waiting", Config{Limiter: f.calm, MaxWaiting: -1}, "MaxWaiting -1"},
		{"policy", Config{Limiter: f.calm, Policy: policy.Config{DefaultLimits: []string{"1/eon"}}}, `"1/eon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzAppPattern(f *testing.F) {
	f.Add("GET", "/users/1")
	f.Add("CONNECT", "/auth")
	f.Add("GET", "/auth")
	f.Add("GET", "/users/1/../../auth/x")
	mux := newAppMux()
	registered := map[string]bool{"GET /users/{id}": true, "GET /items/{id}": true, "/auth/": true, "/": true}
	fx := newFixture(f, Config{Mux: mux})
	f.Fuzz(func(t *testing.T, method, target string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: h\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		if got := fx.lim.match(r).Endpoint; got != "*" && got != "" && !registered[got] {
			t.Fatalf("match(%s %q).Endpoint = %q, not a registered pattern", method, target, got)
		}
	})
}
