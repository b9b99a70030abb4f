package httplimit

import (
	"net/http"
	"strings"
	"testing"

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
