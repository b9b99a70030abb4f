package main

// End-to-end test of the per-network check: one address that sends a new
// User-Agent with every login must not get more than a few clients' budgets,
// nor use up the endpoint-wide layer that every other client shares.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestFingerprintFanOutEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		logins   = 40
		attacker = "198.51.100.7"
		newcomer = "203.0.113.50"
	)
	// POST /auth/login allows 3/minute per client, and 30/minute for the
	// endpoint (the defense layer's default multiplier of 10).
	tests := []struct {
		name         string
		multiplier   string // RATELIMIT_FP_NETWORK_MULTIPLIER; "" keeps the default of 4
		wantAllowed  int
		wantPolicy   string // X-RateLimit-Policy of the last denied flood request
		wantScope    string
		newcomerCode int
	}{
		{name: "default multiplier", wantAllowed: 12, wantPolicy: "network", wantScope: "user",
			newcomerCode: http.StatusOK},
		{name: "multiplier one", multiplier: "1", wantAllowed: 3, wantPolicy: "network",
			wantScope: "user", newcomerCode: http.StatusOK},
		// Turning the check off brings back the lockout it prevents.
		{name: "check off", multiplier: "0", wantAllowed: 30, wantPolicy: "endpoint",
			wantScope: "endpoint", newcomerCode: 420},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Every request reaches calm from 127.0.0.1, a trusted proxy,
			// so calm takes the client address from X-Forwarded-For.
			env := map[string]string{"RATELIMIT_FP_TRUSTED_PROXIES": "127.0.0.1"}
			if tt.multiplier != "" {
				env["RATELIMIT_FP_NETWORK_MULTIPLIER"] = tt.multiplier
			}
			p := startCalm(t, env)

			allowed := 0
			var last *http.Response
			for i := range logins {
				resp, body := do(t, http.MethodPost, p.url+"/auth/login", nil, http.Header{
					"X-Forwarded-For": {attacker},
					"User-Agent":      {fmt.Sprintf("rotating-agent/%d", i)},
				})
				switch resp.StatusCode {
				case http.StatusOK:
					allowed++
				case 420:
					last = resp
				default:
					t.Fatalf("login %d: status %d, want 200 or 420; body %s", i, resp.StatusCode, body)
				}
			}
			if allowed != tt.wantAllowed {
				t.Errorf("allowed %d of %d logins with distinct User-Agents, want %d",
					allowed, logins, tt.wantAllowed)
			}
			if last == nil {
				t.Fatalf("no login of %d was denied", logins)
			}
			if got := last.Header.Get("X-RateLimit-Policy"); got != tt.wantPolicy {
				t.Errorf("denied login: X-RateLimit-Policy = %q, want %q", got, tt.wantPolicy)
			}
			if got := last.Header.Get("X-RateLimit-Scope"); got != tt.wantScope {
				t.Errorf("denied login: X-RateLimit-Scope = %q, want %q", got, tt.wantScope)
			}

			resp, body := do(t, http.MethodPost, p.url+"/auth/login", nil, http.Header{
				"X-Forwarded-For": {newcomer},
				"User-Agent":      {"fresh-client/1.0"},
			})
			if resp.StatusCode != tt.newcomerCode {
				t.Errorf("login from %s after the flood: status %d, want %d; body %s",
					newcomer, resp.StatusCode, tt.newcomerCode, body)
			}

			warned := strings.Contains(p.logs.String(), "RATELIMIT_FP_NETWORK_MULTIPLIER=0")
			if warned != (tt.multiplier == "0") {
				t.Errorf("warning about RATELIMIT_FP_NETWORK_MULTIPLIER=0 logged: %v, want %v",
					warned, tt.multiplier == "0")
			}
		})
	}
}
