package identity_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/identity"
	"github.com/calm-limiter/calm/identity/jwtverify"
	"github.com/calm-limiter/calm/policy"
	"github.com/calm-limiter/calm/store/memory"
)

var (
	middlewareNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	middlewareSecret = []byte("0123456789abcdef0123456789abcdef")
)

// newTieredHandler builds the identity middleware around the httplimit
// middleware around a handler on GET /api/tiered, as the gateway does.
func newTieredHandler(t *testing.T) http.Handler {
	t.Helper()
	clock := func() time.Time { return middlewareNow }
	st := memory.New(memory.Config{Clock: clock})
	t.Cleanup(func() { st.Close() })
	lim, err := calm.New(calm.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	tiers, err := identity.NewTiers(identity.DefaultTierConfig())
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtverify.New(jwtverify.Config{HMACSecret: middlewareSecret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	res, err := identity.New(identity.Config{Verifier: v, Tiers: tiers})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/tiered", func(w http.ResponseWriter, r *http.Request) {})
	hl, err := httplimit.New(httplimit.Config{
		Limiter: lim,
		Policy:  policy.Config{Routes: []policy.Route{{Pattern: "GET /api/tiered"}}},
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

func sendTiered(t *testing.T, h http.Handler, peer, auth string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/tiered", nil)
	r.RemoteAddr = peer
	if auth != "" {
		r.Header.Set("Authorization", "Bearer "+auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func signTier(t *testing.T, key []byte, sub, tier string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "tier": tier, "exp": middlewareNow.Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTieredLimitsThroughMiddleware(t *testing.T) {
	t.Parallel()
	h := newTieredHandler(t)
	attacker := []byte("attacker-secret-attacker-secret!")

	// Forged enterprise tokens, each with a new subject, share the
	// anonymous 5/minute budget of their network.
	for i := range 5 {
		w := sendTiered(t, h, "198.51.100.7:1000", signTier(t, attacker, "sub"+strconv.Itoa(i), "enterprise"))
		if w.Code != http.StatusOK {
			t.Fatalf("forged request %d: status %d, want 200", i, w.Code)
		}
		if got := w.Header().Get("RateLimit-Limit"); got != "5" {
			t.Fatalf("forged request %d: RateLimit-Limit = %q, want 5", i, got)
		}
	}
	w := sendTiered(t, h, "198.51.100.7:1000", signTier(t, attacker, "sub9", "enterprise"))
	if w.Code != httplimit.StatusEnhanceYourCalm {
		t.Errorf("sixth forged request: status %d, want 420", w.Code)
	}

	// A correctly signed token from the same network gets its tier.
	w = sendTiered(t, h, "198.51.100.7:1000", signTier(t, middlewareSecret, "ada", "enterprise"))
	if w.Code != http.StatusOK || w.Header().Get("RateLimit-Limit") != "1000" {
		t.Errorf("signed enterprise: status %d, RateLimit-Limit %q; want 200 and 1000",
			w.Code, w.Header().Get("RateLimit-Limit"))
	}
	if got := w.Header().Get("X-RateLimit-Policy"); got != "tier-enterprise" {
		t.Errorf("signed enterprise: X-RateLimit-Policy = %q, want tier-enterprise", got)
	}
	w = sendTiered(t, h, "203.0.113.1:1000", signTier(t, middlewareSecret, "bob", "paid"))
	if got := w.Header().Get("RateLimit-Limit"); got != "100" {
		t.Errorf("signed paid: RateLimit-Limit = %q, want 100", got)
	}
}
