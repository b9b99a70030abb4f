package defense

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/identity"
	"github.com/calm-limiter/calm/policy"
	"github.com/calm-limiter/calm/store/memory"
)

// newHandler returns the demo handler behind httplimit with d's layers, on
// a memory store, with 3/minute per client.
func newHandler(t *testing.T, d *Defense, logs *syncBuffer) http.Handler {
	t.Helper()
	lim, err := calm.New(calm.Config{Store: memory.New(memory.Config{})})
	if err != nil {
		t.Fatalf("calm.New: %v", err)
	}
	cfg := httplimit.Config{
		Limiter: lim,
		Policy:  policy.Config{DefaultLimits: []string{"3/minute"}},
		Defense: HTTP{Defense: d},
	}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	hl, err := httplimit.New(cfg)
	if err != nil {
		t.Fatalf("httplimit.New: %v", err)
	}
	return hl.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
}

// send makes one request from client and returns the recorded answer.
func send(h http.Handler, client string, id *identity.Identity) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/api/items", nil)
	r.RemoteAddr = client + ":1234"
	if id != nil {
		r = r.WithContext(identity.NewContext(r.Context(), *id))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestHTTPLayersNameTheirScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		clients []string // one request each; the last one is checked
		scope   string
	}{
		{name: "user", clients: []string{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1"}, scope: "user"},
		{name: "endpoint", cfg: Config{EndpointMultiplier: 1},
			clients: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, scope: "endpoint"},
		{name: "global", cfg: Config{GlobalRules: rules("2/minute")},
			clients: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, scope: "global"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			h := newHandler(t, newTestDefense(t, tt.cfg), &logs)
			var rec *httptest.ResponseRecorder
			for _, c := range tt.clients {
				rec = send(h, c, nil)
			}
			if rec.Code != httplimit.StatusEnhanceYourCalm {
				t.Fatalf("last status = %d, want 420", rec.Code)
			}
			if got := rec.Header().Get("X-RateLimit-Scope"); got != tt.scope {
				t.Errorf("X-RateLimit-Scope = %q, want %q", got, tt.scope)
			}
			if !strings.Contains(logs.String(), "scope="+tt.scope) {
				t.Errorf("violation log lacks scope=%s; log:\n%s", tt.scope, logs.String())
			}
		})
	}
}

func TestHTTPDeniedLayerChargesNothing(t *testing.T) {
	t.Parallel()
	// The endpoint allows 4 per minute across clients, a client 3. Client
	// 10.0.0.1 spends 3, is denied by its own layer twice, and those
	// denials must not spend the endpoint's last unit.
	h := newHandler(t, newTestDefense(t, Config{EndpointRules: map[string][]calm.Rule{
		"*": rules("4/minute"),
	}}), nil)
	for i, want := range []int{200, 200, 200, 420, 420} {
		if rec := send(h, "10.0.0.1", nil); rec.Code != want {
			t.Fatalf("request %d of 10.0.0.1: status %d, want %d", i, rec.Code, want)
		}
	}
	if rec := send(h, "10.0.0.2", nil); rec.Code != 200 {
		t.Errorf("10.0.0.2: status %d (scope %s), want 200: a denied request consumed endpoint quota",
			rec.Code, rec.Header().Get("X-RateLimit-Scope"))
	}
	if rec := send(h, "10.0.0.3", nil); rec.Code != 420 || rec.Header().Get("X-RateLimit-Scope") != "endpoint" {
		t.Errorf("10.0.0.3: status %d scope %q, want 420 from the endpoint layer",
			rec.Code, rec.Header().Get("X-RateLimit-Scope"))
	}
}

func TestHTTPOpenCircuit(t *testing.T) {
	t.Parallel()
	admin := &identity.Identity{Verified: true, Key: "admin", Permissions: []string{BypassPermission}}
	user := &identity.Identity{Verified: true, Key: "user", Permissions: []string{"read"}}
	claimed := &identity.Identity{Verified: false, Key: "forged", Permissions: []string{BypassPermission}}
	tests := []struct {
		name      string
		mode      Mode
		id        *identity.Identity
		status    int
		challenge string
	}{
		{name: "lockdown anonymous", mode: Lockdown, status: 420},
		{name: "lockdown user", mode: Lockdown, id: user, status: 420},
		{name: "lockdown unverified bypass claim", mode: Lockdown, id: claimed, status: 420},
		{name: "lockdown bypass", mode: Lockdown, id: admin, status: 200},
		{name: "challenge anonymous", mode: Challenge, status: 420, challenge: "required"},
		{name: "adaptive anonymous", mode: Adaptive, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			cfg := testConfig(clock)
			cfg.Mode = tt.mode
			d := newTestDefense(t, cfg)
			d.Force(context.Background(), true)
			h := newHandler(t, d, nil)
			rec := send(h, "10.0.0.1", tt.id)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get(HeaderChallenge); got != tt.challenge {
				t.Errorf("%s = %q, want %q", HeaderChallenge, got, tt.challenge)
			}
			if tt.status != 420 {
				return
			}
			if got := rec.Header().Get("X-RateLimit-Scope"); got != "global" {
				t.Errorf("X-RateLimit-Scope = %q, want global", got)
			}
			if got := rec.Header().Get("Retry-After"); got == "" || got == "0" {
				t.Errorf("Retry-After = %q, want a positive number of seconds", got)
			}
			if !strings.Contains(rec.Body.String(), `"policy":"circuit"`) {
				t.Errorf("body = %s, want policy circuit", rec.Body.String())
			}
		})
	}
}

func TestHTTPAdaptiveHalvesLimits(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := newTestDefense(t, testConfig(clock))
	d.Force(context.Background(), true)
	h := newHandler(t, d, nil)
	codes := []int{}
	for range 3 {
		codes = append(codes, send(h, "10.0.0.1", nil).Code)
	}
	// 3/minute halves to 1/minute while open.
	if codes[0] != 200 || codes[1] != 420 || codes[2] != 420 {
		t.Errorf("statuses while open = %v, want [200 420 420]", codes)
	}
}
