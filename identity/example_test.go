package identity_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/identity"
	"github.com/calm-limiter/calm/identity/jwtverify"
	"github.com/calm-limiter/calm/store/memory"
)

// A service behind a load balancer at 10.0.0.0/8 keys verified clients
// by subject and gives them their tier's limits on GET /api/tiered.
func ExampleResolver() {
	proxies, _ := identity.ParseTrustedProxies("10.0.0.0/8")
	verifier, _ := jwtverify.New(jwtverify.Config{
		HMACSecret: []byte("replace-with-32-or-more-random-bytes"),
	})
	tiers, _ := identity.NewTiers(identity.DefaultTierConfig())
	ids, _ := identity.New(identity.Config{
		ClientIP: identity.ClientIPConfig{TrustedProxies: proxies},
		Secret:   []byte("replace-with-the-fingerprint-secret"),
		Verifier: verifier,
		Tiers:    tiers,
	})

	store := memory.New(memory.Config{})
	defer store.Close()
	lim, _ := calm.New(calm.Config{Store: store})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/tiered", func(w http.ResponseWriter, r *http.Request) {
		id, _ := identity.FromContext(r.Context())
		fmt.Fprintf(w, "verified=%v", id.Verified)
	})
	hl, _ := httplimit.New(httplimit.Config{
		Limiter: lim,
		Mux:     mux,
		KeyFunc: ids.KeyFunc,
		Checks:  ids.RewriteChecks,
	})
	handler := ids.Middleware(hl.Middleware(mux))

	req := httptest.NewRequest(http.MethodGet, "/api/tiered", nil)
	req.RemoteAddr = "10.1.2.3:5000"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String(), rec.Header().Get("RateLimit-Limit"))
	// Output: verified=false 5
}
