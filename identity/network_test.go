package identity_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/identity"
	"github.com/calm-limiter/calm/identity/jwtverify"
	"github.com/calm-limiter/calm/policy"
	"github.com/calm-limiter/calm/store/memory"
)

// newLoginHandler builds the identity and httplimit middleware around
// POST /auth/login, limited to 3/minute per client, with a memory store
// on a fixed clock.
func newLoginHandler(t *testing.T, cfg identity.Config) http.Handler {
	t.Helper()
	clock := func() time.Time { return middlewareNow }
	st := memory.New(memory.Config{Clock: clock})
	t.Cleanup(func() { st.Close() })
	lim, err := calm.New(calm.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}

	v, err := jwtverify.New(jwtverify.Config{HMACSecret: middlewareSecret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Verifier = v
	res, err := identity.New(cfg)
	if err != nil {
		t.Fatalf("identity.New: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/login", func(w http.ResponseWriter, r *http.Request) {})
	hl, err := httplimit.New(httplimit.Config{
		Limiter: lim,
		Policy: policy.Config{Routes: []policy.Route{
			{Pattern: "POST /auth/login", Name: "login", Limits: []string{"3/minute"}},
		}},
		Mux:     mux,
		KeyFunc: res.KeyFunc,
		Checks:  res.RewriteChecks,
		Headers: httplimit.HeadersLegacy,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Middleware(hl.Middleware(mux))
}

// login returns a login request from peer with the given headers.
func login(peer string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/auth/login", nil)
	r.RemoteAddr = peer
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func userAgent(i int) map[string]string {
	return map[string]string{"User-Agent": fmt.Sprintf("agent/%d", i)}
}

func TestNetworkBoundsFingerprintFanOut(t *testing.T) {
	t.Parallel()
	const requests = 40
	tests := []struct {
		name    string
		cfg     identity.Config
		request func(t *testing.T, i int) *http.Request
		want    int
	}{
		{name: "user agents from one address",
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(i))
			},
			want: 12},
		{name: "one user agent",
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(0))
			},
			want: 3},
		{name: "multiplier one", cfg: identity.Config{NetworkMultiplier: 1},
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(i))
			},
			want: 3},
		{name: "multiplier off", cfg: identity.Config{NetworkMultiplier: -1},
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(i))
			},
			want: requests},
		{name: "relaxed level", cfg: identity.Config{Level: identity.LevelRelaxed},
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(i))
			},
			want: 3},
		{name: "strict Accept-Language", cfg: identity.Config{Level: identity.LevelStrict},
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000",
					map[string]string{"Accept-Language": fmt.Sprintf("x-%d", i)})
			},
			want: 12},
		{name: "custom without client parts",
			cfg: identity.Config{Level: identity.LevelCustom,
				Custom: identity.Components{IP: true, Auth: true}},
			request: func(_ *testing.T, i int) *http.Request {
				return login("198.51.100.7:1000", userAgent(i))
			},
			want: 3},
		{name: "unverified token subjects",
			cfg: identity.Config{Level: identity.LevelRelaxed, AllowUnverified: true},
			request: func(t *testing.T, i int) *http.Request {
				token := signTier(t, []byte("attacker-secret-attacker-secret!"),
					fmt.Sprintf("sub%d", i), "")
				return login("198.51.100.7:1000", map[string]string{"Authorization": "Bearer " + token})
			},
			want: 12},
		{name: "verified subjects",
			request: func(t *testing.T, i int) *http.Request {
				headers := userAgent(i)
				headers["Authorization"] = "Bearer " +
					signTier(t, middlewareSecret, fmt.Sprintf("user%d", i%10), "")
				return login("198.51.100.7:1000", headers)
			},
			want: 30},
		{name: "two addresses",
			request: func(_ *testing.T, i int) *http.Request {
				peer := "198.51.100.7:1000"
				if i%2 == 1 {
					peer = "203.0.113.9:1000"
				}
				return login(peer, userAgent(i))
			},
			want: 24},
		{name: "IPv6 rotation in a /64",
			request: func(_ *testing.T, i int) *http.Request {
				return login(fmt.Sprintf("[2001:db8:1:2::%x]:1000", i+1), userAgent(i))
			},
			want: 12},
		{name: "IPv6 in separate /64s",
			request: func(_ *testing.T, i int) *http.Request {
				return login(fmt.Sprintf("[2001:db8:1:%x::1]:1000", i+1), userAgent(i))
			},
			want: requests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newLoginHandler(t, tt.cfg)
			allowed := 0
			for i := range requests {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, tt.request(t, i))
				switch w.Code {
				case http.StatusOK:
					allowed++
				case httplimit.StatusEnhanceYourCalm:
				default:
					t.Fatalf("request %d: status %d, want 200 or 420", i, w.Code)
				}
			}
			if allowed != tt.want {
				t.Errorf("allowed %d of %d logins, want %d", allowed, requests, tt.want)
			}
		})
	}
}

func TestNetworkCheckDenialNamesPolicy(t *testing.T) {
	t.Parallel()
	h := newLoginHandler(t, identity.Config{})
	var w *httptest.ResponseRecorder
	for i := range 13 {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, login("198.51.100.7:1000", userAgent(i)))
	}
	if w.Code != httplimit.StatusEnhanceYourCalm {
		t.Fatalf("13th login: status %d, want 420", w.Code)
	}
	if got := w.Header().Get("X-RateLimit-Policy"); got != identity.PolicyNetwork {
		t.Errorf("13th login: X-RateLimit-Policy = %q, want %q", got, identity.PolicyNetwork)
	}
	if got := w.Header().Get("RateLimit-Limit"); got != "12" {
		t.Errorf("13th login: RateLimit-Limit = %q, want 12", got)
	}
}

func TestRewriteChecksNetworkCheck(t *testing.T) {
	t.Parallel()
	tiers, err := identity.NewTiers(identity.DefaultTierConfig())
	if err != nil {
		t.Fatal(err)
	}
	res, err := identity.New(identity.Config{Tiers: tiers, AllowUnverified: true})
	if err != nil {
		t.Fatal(err)
	}
	r := login("198.51.100.7:1000", userAgent(1))
	id := res.Identify(r)
	rules := calm.MustParseRules("3/minute,10/hour")
	checks := []calm.Check{
		{Scope: calm.ScopeUser, Policy: "login", Endpoint: "POST /auth/login", Client: id.Key,
			Rules: rules, Burst: 2, Delay: 1, MaxWait: time.Second},
		{Scope: calm.ScopeEndpoint, Policy: "wide", Endpoint: "POST /auth/login",
			Rules: calm.MustParseRules("100/minute")},
	}
	got := res.RewriteChecks(r, checks)
	if len(got) != 3 {
		t.Fatalf("len(checks) = %d, want 3", len(got))
	}
	n := got[2]
	if n.Policy != identity.PolicyNetwork || n.Scope != calm.ScopeUser ||
		n.Endpoint != "POST /auth/login" {
		t.Errorf("network check = %s %s %s, want network user POST /auth/login",
			n.Policy, n.Scope, n.Endpoint)
	}
	if n.Client == id.Key || n.Client == id.NetworkKey || n.Client == "" {
		t.Errorf("network check client = %q, want a key apart from %q and %q",
			n.Client, id.Key, id.NetworkKey)
	}
	if len(n.Rules) != 2 || n.Rules[0].Requests != 12 || n.Rules[1].Requests != 40 {
		t.Errorf("network check rules = %v, want 12/minute and 40/hour", n.Rules)
	}
	if len(n.BaseRules) != 2 || n.BaseRules[0] != rules[0] || n.BaseRules[1] != rules[1] {
		t.Errorf("network check BaseRules = %v, want the policy's %v", n.BaseRules, rules)
	}
	// The delay is the largest rule's capacity, so the network budget
	// never holds a request: only the client's own check queues.
	if n.Burst != 2 || n.Delay != 40 || n.MaxWait != time.Second {
		t.Errorf("network check Burst, Delay, MaxWait = %d, %d, %v; want 2, 40, 1s",
			n.Burst, n.Delay, n.MaxWait)
	}
	if rules[0].Requests != 3 {
		t.Errorf("policy rules modified: %v", rules)
	}

	// A tiered route keys anonymous clients by network already.
	tiered := []calm.Check{{Scope: calm.ScopeUser, Policy: "default",
		Endpoint: "GET /api/tiered", Client: id.Key, Rules: rules}}
	if got := res.RewriteChecks(r, tiered); len(got) != 1 || got[0].Client != id.NetworkKey {
		t.Errorf("tiered route checks = %+v, want one check keyed by network", got)
	}
}

func TestNetworkMultiplierBounds(t *testing.T) {
	t.Parallel()
	if _, err := identity.New(identity.Config{
		NetworkMultiplier: identity.MaxNetworkMultiplier + 1}); err == nil {
		t.Errorf("New(NetworkMultiplier %d) error = nil, want error", identity.MaxNetworkMultiplier+1)
	}
	res, err := identity.New(identity.Config{NetworkMultiplier: identity.MaxNetworkMultiplier})
	if err != nil {
		t.Fatalf("New(NetworkMultiplier %d): %v", identity.MaxNetworkMultiplier, err)
	}
	r := login("198.51.100.7:1000", userAgent(1))
	huge, err := calm.ParseRule("100000/day")
	if err != nil {
		t.Fatal(err)
	}
	got := res.RewriteChecks(r, []calm.Check{{Scope: calm.ScopeUser, Endpoint: "POST /auth/login",
		Client: res.Identify(r).Key, Rules: []calm.Rule{huge}}})
	if len(got) != 2 {
		t.Fatalf("len(checks) = %d, want 2", len(got))
	}
	if _, err := calm.ParseRule(got[1].Rules[0].String()); err != nil {
		t.Errorf("multiplied rule %v is invalid: %v", got[1].Rules[0], err)
	}
	if got[1].Rules[0].Requests <= huge.Requests {
		t.Errorf("multiplied rule = %v, want more than %v", got[1].Rules[0], huge)
	}
}
