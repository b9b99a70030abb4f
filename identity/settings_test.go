package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/config"
)

func TestSettingsVars(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "defaults"},
		{name: "full", env: map[string]string{
			"RATELIMIT_FP_TRUSTED_PROXIES":    "10.0.0.0/8, 192.0.2.7",
			"RATELIMIT_FP_IPV6_PREFIX_LENGTH": "48",
			"RATELIMIT_FP_LEVEL":              "STRICT",
			"RATELIMIT_AUTH_JWKS_URL":         "https://idp.example/jwks.json",
			"RATELIMIT_ANONYMOUS_LIMIT":       "10/minute",
		}},
		{name: "bad proxy", env: map[string]string{"RATELIMIT_FP_TRUSTED_PROXIES": "proxy.local"},
			wantErr: "RATELIMIT_FP_TRUSTED_PROXIES"},
		{name: "prefix too short", env: map[string]string{"RATELIMIT_FP_IPV6_PREFIX_LENGTH": "16"},
			wantErr: "RATELIMIT_FP_IPV6_PREFIX_LENGTH"},
		{name: "bad level", env: map[string]string{"RATELIMIT_FP_LEVEL": "paranoid"},
			wantErr: "RATELIMIT_FP_LEVEL"},
		{name: "short JWT secret", env: map[string]string{"RATELIMIT_AUTH_JWT_SECRET": "short"},
			wantErr: "RATELIMIT_AUTH_JWT_SECRET"},
		{name: "file JWKS URL", env: map[string]string{"RATELIMIT_AUTH_JWKS_URL": "file:///etc/passwd"},
			wantErr: "RATELIMIT_AUTH_JWKS_URL"},
		{name: "bad anonymous limit", env: map[string]string{"RATELIMIT_ANONYMOUS_LIMIT": "ten"},
			wantErr: "RATELIMIT_ANONYMOUS_LIMIT"},
		{name: "network multiplier off", env: map[string]string{"RATELIMIT_FP_NETWORK_MULTIPLIER": "0"}},
		{name: "negative network multiplier",
			env:     map[string]string{"RATELIMIT_FP_NETWORK_MULTIPLIER": "-1"},
			wantErr: "RATELIMIT_FP_NETWORK_MULTIPLIER"},
		{name: "network multiplier too large",
			env:     map[string]string{"RATELIMIT_FP_NETWORK_MULTIPLIER": "1001"},
			wantErr: "RATELIMIT_FP_NETWORK_MULTIPLIER"},
		{name: "network multiplier not a number",
			env:     map[string]string{"RATELIMIT_FP_NETWORK_MULTIPLIER": "four"},
			wantErr: "from 1 to 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s Settings
			lookup := func(name string) (string, bool) { v, ok := tt.env[name]; return v, ok }
			_, err := config.Load(s.Vars(), config.Sources{Lookup: lookup})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load() error = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load() error = %v, want it to name %s", err, tt.wantErr)
			}
		})
	}
}

func TestSettingsBuild(t *testing.T) {
	t.Parallel()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := edKey.Public().(ed25519.PublicKey)
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed1","x":"` +
		base64.RawURLEncoding.EncodeToString(pub) + `"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, jwks)
	}))
	t.Cleanup(srv.Close)
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		0o600); err != nil {
		t.Fatal(err)
	}

	var s Settings
	env := map[string]string{
		"RATELIMIT_AUTH_JWT_SECRET":          string(testJWTSecret),
		"RATELIMIT_AUTH_JWKS_URL":            srv.URL,
		"RATELIMIT_AUTH_JWT_PUBLIC_KEY_FILE": pemPath,
	}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	if _, err := config.Load(s.Vars(), config.Sources{Lookup: lookup}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	res, closeFn, err := s.Build(t.Context(), mustTiers(t), nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(closeFn)

	claims := jwt.MapClaims{"tier": "paid", "exp": time.Now().Add(time.Hour).Unix()}
	edToken := jwt.NewWithClaims(jwt.SigningMethodEdDSA, withSub(claims))
	edToken.Header["kid"] = "ed1"
	tokens := map[string]func() (string, error){
		"HS256 from the secret": func() (string, error) {
			return jwt.NewWithClaims(jwt.SigningMethodHS256, withSub(claims)).SignedString(testJWTSecret)
		},
		"ES256 from the PEM file": func() (string, error) {
			return jwt.NewWithClaims(jwt.SigningMethodES256, withSub(claims)).SignedString(ecKey)
		},
		"EdDSA from the JWKS": func() (string, error) { return edToken.SignedString(edKey) },
	}
	for name, sign := range tokens {
		tok, err := sign()
		if err != nil {
			t.Fatalf("%s: signing: %v", name, err)
		}
		id := res.Identify(request("198.51.100.7:1", map[string]string{"Authorization": "Bearer " + tok}))
		if !id.Verified || id.Tier != "paid" {
			t.Errorf("%s: Verified %v, Tier %q; want true, paid", name, id.Verified, id.Tier)
		}
	}

	s.JWKSURL = srv.URL + "/missing-host-check"
	srv.Close()
	if _, _, err := s.Build(t.Context(), nil, nil); err == nil ||
		!strings.Contains(err.Error(), "RATELIMIT_AUTH_JWKS_URL") {
		t.Errorf("Build with unreachable JWKS: error = %v, want it to name RATELIMIT_AUTH_JWKS_URL", err)
	}
}

func withSub(c jwt.MapClaims) jwt.MapClaims {
	out := jwt.MapClaims{"sub": "user-1"}
	for k, v := range c {
		out[k] = v
	}
	return out
}

func TestSettingsNetworkMultiplier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value string // "" leaves the default
		want  int    // network checks in the rewritten list
	}{
		{name: "default", want: 1},
		{name: "one", value: "1", want: 1},
		{name: "off", value: "0", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s Settings
			lookup := func(name string) (string, bool) {
				if name == "RATELIMIT_FP_NETWORK_MULTIPLIER" && tt.value != "" {
					return tt.value, true
				}
				return "", false
			}
			if _, err := config.Load(s.Vars(), config.Sources{Lookup: lookup}); err != nil {
				t.Fatalf("Load: %v", err)
			}
			res, closeFn, err := s.Build(t.Context(), nil, nil)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			t.Cleanup(closeFn)
			r := request("198.51.100.7:1", map[string]string{"User-Agent": "agent/1"})
			checks := res.RewriteChecks(r, []calm.Check{{Scope: calm.ScopeUser,
				Endpoint: "POST /auth/login", Client: res.Identify(r).Key,
				Rules: calm.MustParseRules("3/minute")}})
			got := 0
			for _, c := range checks {
				if c.Policy == PolicyNetwork {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("network checks = %d, want %d", got, tt.want)
			}
		})
	}
}
