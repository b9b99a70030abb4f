package httplimit

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

var (
	perMinute = calm.Rule{Requests: 100, Window: time.Minute}
	perHour   = calm.Rule{Requests: 1000, Window: time.Hour}
)

func allowedResult() calm.Result {
	return calm.Result{
		Allowed: true, Limit: 100, Remaining: 99, ResetAfter: 42 * time.Second,
		Policy: "default", Scope: calm.ScopeUser, Rule: perMinute,
		Quotas: []calm.Quota{
			{Policy: "default", Scope: calm.ScopeUser, Rule: perMinute, Remaining: 99, ResetAfter: 42 * time.Second},
			{Policy: "default", Scope: calm.ScopeUser, Rule: perHour, Remaining: 999, ResetAfter: 3000 * time.Second},
		},
	}
}

func TestHeaderModes(t *testing.T) {
	t.Parallel()
	legacy := []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
	draft := []string{"RateLimit-Policy", "RateLimit"}
	own := []string{"X-RateLimit-Policy", "X-RateLimit-Scope"}
	tests := []struct {
		name                  string
		mode                  HeaderMode
		wantLegacy, wantDraft bool
		wantOwn               bool
	}{
		{"both", HeadersBoth, true, true, true},
		{"legacy", HeadersLegacy, true, false, true},
		{"draft", HeadersDraft, false, true, true},
		{"none", HeadersNone, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			setHeaders(h, tt.mode, allowedResult())
			check := func(names []string, want bool) {
				for _, n := range names {
					if got := h.Get(n) != ""; got != want {
						t.Errorf("mode %s: %s present = %v, want %v", tt.mode, n, got, want)
					}
				}
			}
			check(legacy, tt.wantLegacy)
			check(draft, tt.wantDraft)
			check(own, tt.wantOwn)
			if h.Get("Retry-After") != "" {
				t.Errorf("mode %s: allowed answer has Retry-After %q", tt.mode, h.Get("Retry-After"))
			}
		})
	}
}

func TestHeaderValues(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	setHeaders(h, HeadersBoth, allowedResult())
	want := map[string]string{
		"RateLimit-Limit":     "100",
		"RateLimit-Remaining": "99",
		"RateLimit-Reset":     "42",
		"X-RateLimit-Policy":  "default",
		"X-RateLimit-Scope":   "user",
		"RateLimit-Policy":    `"default-60s";q=100;w=60, "default-3600s";q=1000;w=3600`,
		"RateLimit":           `"default-60s";r=99;t=42, "default-3600s";r=999;t=3000`,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retry     time.Duration
		reset     time.Duration
		reason    algorithm.Reason
		wantRetry string // "" means absent
		wantReset string
	}{
		{"whole seconds", 60 * time.Second, 60 * time.Second, algorithm.ReasonLimited, "60", "60"},
		{"rounds up", 1500 * time.Millisecond, 1500 * time.Millisecond, algorithm.ReasonLimited, "2", "2"},
		{"one microsecond", time.Microsecond, time.Microsecond, algorithm.ReasonLimited, "1", "1"},
		{"zero is one", 0, 0, algorithm.ReasonLimited, "1", "0"},
		{"negative is one", -5 * time.Second, -time.Second, algorithm.ReasonLimited, "1", "0"},
		{"reset capped at retry", 10 * time.Second, 90 * time.Second, algorithm.ReasonLimited, "10", "10"},
		{"queue full", 3 * time.Second, 3 * time.Second, algorithm.ReasonQueueFull, "3", "3"},
		{"cost too large", 0, 30 * time.Second, algorithm.ReasonCostTooLarge, "", "30"},
		{"invalid cost", 0, 0, algorithm.ReasonInvalidCost, "", "0"},
		{"invalid limit", 0, 0, algorithm.ReasonInvalidLimit, "", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := calm.Result{
				Reason: tt.reason, Limit: 10, RetryAfter: tt.retry, ResetAfter: tt.reset,
				Policy: "default", Scope: calm.ScopeUser, Rule: perMinute,
				Quotas: []calm.Quota{{Policy: "default", Scope: calm.ScopeUser, Rule: perMinute, ResetAfter: tt.reset}},
			}
			h := http.Header{}
			setHeaders(h, HeadersBoth, res)
			if got := h.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if got := h.Get("RateLimit-Reset"); got != tt.wantReset {
				t.Errorf("RateLimit-Reset = %q, want %q", got, tt.wantReset)
			}
			if tt.wantRetry == "" {
				return
			}
			retry, _ := strconv.Atoi(tt.wantRetry)
			items, err := parseSFList(h.Get("RateLimit"))
			if err != nil {
				t.Fatalf("parsing RateLimit %q: %v", h.Get("RateLimit"), err)
			}
			if tv := items[0].params["t"].(int64); tv > int64(retry) {
				t.Errorf("RateLimit t=%d is later than Retry-After %d", tv, retry)
			}
		})
	}
}

func TestDraftNames(t *testing.T) {
	t.Parallel()
	q := func(policy string, scope calm.Scope, r calm.Rule) calm.Quota {
		return calm.Quota{Policy: policy, Scope: scope, Rule: r}
	}
	tests := []struct {
		name   string
		quotas []calm.Quota
		want   []string
	}{
		{"one rule", []calm.Quota{q("default", calm.ScopeUser, perMinute)}, []string{"default"}},
		{"two rules", []calm.Quota{q("default", calm.ScopeUser, perMinute), q("default", calm.ScopeUser, perHour)},
			[]string{"default-60s", "default-3600s"}},
		{"two policies", []calm.Quota{q("login", calm.ScopeUser, perMinute), q("auth-budget", calm.ScopeUser, perMinute)},
			[]string{"login", "auth-budget"}},
		{"two scopes", []calm.Quota{q("search", calm.ScopeUser, perMinute), q("search", calm.ScopeEndpoint, perMinute)},
			[]string{"search", "search-endpoint"}},
		{"same window twice", []calm.Quota{q("x", calm.ScopeUser, perMinute), q("x", calm.ScopeUser, perMinute)},
			[]string{"x-60s", "x-60s-2"}},
		{"collision with a real name", []calm.Quota{q("a-60s", calm.ScopeUser, perMinute),
			q("a", calm.ScopeUser, perMinute), q("a", calm.ScopeUser, perHour)},
			[]string{"a-60s", "a-60s-2", "a-3600s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := draftNames(tt.quotas)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Errorf("draftNames()[%d] = %q, want %q (all: %q)", i, got[i], tt.want[i], got)
				}
			}
		})
	}
}

// checkDraft parses both draft fields as RFC 9651 lists and checks that
// their items match res.Quotas one to one with distinct names.
func checkDraft(t testing.TB, h http.Header, res calm.Result) {
	t.Helper()
	policies, err := parseSFList(h.Get("RateLimit-Policy"))
	if err != nil {
		t.Fatalf("RateLimit-Policy %q is not an RFC 9651 list: %v", h.Get("RateLimit-Policy"), err)
	}
	states, err := parseSFList(h.Get("RateLimit"))
	if err != nil {
		t.Fatalf("RateLimit %q is not an RFC 9651 list: %v", h.Get("RateLimit"), err)
	}
	if len(policies) != len(res.Quotas) || len(states) != len(res.Quotas) {
		t.Fatalf("fields have %d and %d items, want %d", len(policies), len(states), len(res.Quotas))
	}
	seen := map[string]bool{}
	for i, q := range res.Quotas {
		p, s := policies[i], states[i]
		if p.value != s.value {
			t.Errorf("item %d: names %q and %q differ", i, p.value, s.value)
		}
		if seen[p.value] {
			t.Errorf("item %d: name %q repeats", i, p.value)
		}
		seen[p.value] = true
		if got, ok := p.params["q"].(int64); !ok || got != min(max(q.Rule.Requests, 0), maxSFInteger) {
			t.Errorf("item %d: q = %v, want %d", i, p.params["q"], q.Rule.Requests)
		}
		if got, ok := p.params["w"].(int64); !ok || got < 1 {
			t.Errorf("item %d: w = %v, want a positive integer", i, p.params["w"])
		}
		if got, ok := s.params["r"].(int64); !ok || got != min(max(q.Remaining, 0), maxSFInteger) {
			t.Errorf("item %d: r = %v, want %d", i, s.params["r"], q.Remaining)
		}
		if got, ok := s.params["t"].(int64); !ok || got < 0 {
			t.Errorf("item %d: t = %v, want a non-negative integer", i, s.params["t"])
		}
	}
}

func TestDraftSyntax(t *testing.T) {
	t.Parallel()
	res := allowedResult()
	res.Quotas = append(res.Quotas,
		calm.Quota{Policy: `odd "name" \ here`, Scope: calm.ScopeEndpoint, Rule: calm.Rule{Requests: 5, Window: 1500 * time.Millisecond}},
		calm.Quota{Policy: "ünïcode\r\n", Scope: calm.ScopeGlobal, Rule: perHour, Remaining: -3, ResetAfter: -time.Second},
	)
	h := http.Header{}
	setHeaders(h, HeadersDraft, res)
	checkDraft(t, h, res)
}

func FuzzHeaders(f *testing.F) {
	f.Add("default", int64(100), int64(60_000_000), int64(99), int64(42_000_000), int64(0), false, uint8(1))
	f.Add(`a"b\c`, int64(1), int64(1), int64(-1), int64(-5), int64(-7), true, uint8(2))
	f.Add("\x00\xff", int64(1<<53), int64(1<<40), int64(1<<60), int64(1<<62), int64(1<<62), false, uint8(3))
	f.Fuzz(func(t *testing.T, name string, q, window, remaining, reset, retry int64, allowed bool, reason uint8) {
		rule := calm.Rule{Requests: q, Window: time.Duration(window)}
		res := calm.Result{
			Allowed: allowed, Reason: algorithm.Reason(reason % 7), Limit: q, Remaining: remaining,
			ResetAfter: time.Duration(reset), RetryAfter: time.Duration(retry),
			Policy: name, Scope: calm.ScopeUser, Rule: rule,
			Quotas: []calm.Quota{
				{Policy: name, Scope: calm.ScopeUser, Rule: rule, Remaining: remaining, ResetAfter: time.Duration(reset)},
				{Policy: name, Scope: calm.ScopeEndpoint, Rule: perHour, Remaining: 3, ResetAfter: time.Duration(reset)},
			},
		}
		if allowed {
			res.Reason = algorithm.ReasonAllowed
		}
		h := http.Header{}
		setHeaders(h, HeadersBoth, res)
		checkDraft(t, h, res)
		for k, vs := range h {
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						t.Fatalf("%s = %q holds byte %#x", k, v, v[i])
					}
				}
			}
		}
		ra := h.Get("Retry-After")
		switch {
		case allowed, res.Reason == algorithm.ReasonCostTooLarge, res.Reason == algorithm.ReasonInvalidCost,
			res.Reason == algorithm.ReasonInvalidLimit:
			if ra != "" {
				t.Fatalf("Retry-After = %q, want none", ra)
			}
			return
		}
		n, err := strconv.ParseInt(ra, 10, 64)
		if err != nil || n < 1 {
			t.Fatalf("Retry-After = %q, want an integer of at least 1", ra)
		}
		resetHdr, _ := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64)
		if resetHdr > n {
			t.Fatalf("Retry-After %d is earlier than RateLimit-Reset %d", n, resetHdr)
		}
	})
}

func TestHeaderNamesAreCanonical(t *testing.T) {
	t.Parallel()
	for _, name := range []string{headerLimit, headerRemaining, headerReset, headerPolicyName, headerScope,
		headerDraftPolicy, headerDraftState, headerRetryAfter, HeaderEnforced} {
		if got := http.CanonicalHeaderKey(name); got != name {
			t.Errorf("CanonicalHeaderKey(%q) = %q, want the name unchanged", name, got)
		}
	}
}
