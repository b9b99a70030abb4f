package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/identity/jwtverify"
)

var (
	testNow       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testJWTSecret = []byte("0123456789abcdef0123456789abcdef")
)

func mustTiers(t testing.TB) *Tiers {
	t.Helper()
	tiers, err := NewTiers(DefaultTierConfig())
	if err != nil {
		t.Fatalf("NewTiers: %v", err)
	}
	return tiers
}

func newTestResolver(t testing.TB, mod func(*Config)) *Resolver {
	t.Helper()
	v, err := jwtverify.New(jwtverify.Config{HMACSecret: testJWTSecret,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("jwtverify.New: %v", err)
	}
	cfg := Config{Verifier: v, Tiers: mustTiers(t), Secret: []byte("test-secret")}
	if mod != nil {
		mod(&cfg)
	}
	res, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return res
}

func token(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	base := jwt.MapClaims{"sub": "user-1", "exp": testNow.Add(time.Hour).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	s, err := jwt.NewWithClaims(method, base).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func noneToken() string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body := `{"sub":"user-1","tier":"enterprise","permissions":["circuit.bypass"],"exp":9999999999}`
	return h + "." + enc.EncodeToString([]byte(body)) + "."
}

func request(peer string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/tiered", nil)
	r.RemoteAddr = peer
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func TestIdentifyTokens(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	enterprise := jwt.MapClaims{"tier": "enterprise", "permissions": []string{"circuit.bypass"}}

	tests := []struct {
		name       string
		auth       string
		wantTier   string
		verified   bool
		wantBypass bool
	}{
		{name: "signed enterprise", verified: true, wantTier: "enterprise", wantBypass: true,
			auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret, enterprise)},
		{name: "lowercase scheme", verified: true, wantTier: "enterprise", wantBypass: true,
			auth: "bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret, enterprise)},
		{name: "signed unknown tier falls to lowest", verified: true, wantTier: "free",
			auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
				jwt.MapClaims{"tier": "platinum"})},
		{name: "signed without tier falls to lowest", verified: true, wantTier: "free",
			auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret, nil)},
		{name: "signed scope string permissions", verified: true, wantTier: "free", wantBypass: true,
			auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
				jwt.MapClaims{"permissions": "read circuit.bypass"})},
		{name: "forged signature",
			auth: "Bearer " + token(t, jwt.SigningMethodHS256,
				[]byte("attacker-secret-attacker-secret!"), enterprise)},
		{name: "alg none", auth: "Bearer " + noneToken()},
		{name: "HS256 signed with RSA public key",
			auth: "Bearer " + token(t, jwt.SigningMethodHS256, rsaPEM, enterprise)},
		{name: "expired", auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
			jwt.MapClaims{"tier": "enterprise", "exp": testNow.Add(-time.Minute).Unix()})},
		{name: "not yet valid", auth: "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
			jwt.MapClaims{"tier": "enterprise", "nbf": testNow.Add(time.Minute).Unix()})},
		{name: "signed without subject", auth: "Bearer " + token(t, jwt.SigningMethodHS256,
			testJWTSecret, jwt.MapClaims{"sub": "", "tier": "enterprise"})},
		{name: "basic scheme", auth: "Basic dXNlcjpwYXNz"},
		{name: "garbage", auth: "Bearer \x00\x01"},
	}
	for _, unverified := range []bool{false, true} {
		res := newTestResolver(t, func(c *Config) { c.AllowUnverified = unverified })
		for _, tt := range tests {
			name := tt.name
			if unverified {
				name += " with unverified switch"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				id := res.Identify(request("198.51.100.7:1000", map[string]string{
					"Authorization": tt.auth}))
				if id.Verified != tt.verified {
					t.Errorf("Verified = %v, want %v", id.Verified, tt.verified)
				}
				if id.Tier != tt.wantTier {
					t.Errorf("Tier = %q, want %q", id.Tier, tt.wantTier)
				}
				if got := id.HasPermission(PermissionCircuitBypass); got != tt.wantBypass {
					t.Errorf("HasPermission(circuit.bypass) = %v, want %v", got, tt.wantBypass)
				}
				if !tt.verified && (id.Subject != "" || len(id.Permissions) != 0) {
					t.Errorf("anonymous identity has Subject %q, Permissions %v, want none",
						id.Subject, id.Permissions)
				}
				if strings.Contains(id.Key, "user-1") || strings.Contains(id.Key, "198.51") {
					t.Errorf("Key %q reveals raw parts", id.Key)
				}
			})
		}
	}
}

func TestIdentifyKeys(t *testing.T) {
	t.Parallel()
	res := newTestResolver(t, nil)
	signed := "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret, nil)
	forged := func(tier string) string {
		return "Bearer " + token(t, jwt.SigningMethodHS256, []byte("attacker-secret-attacker-secret!"),
			jwt.MapClaims{"tier": tier, "sub": tier})
	}
	tests := []struct {
		name  string
		a, b  *http.Request
		equal bool
	}{
		{name: "same subject from two networks",
			a:     request("198.51.100.7:1", map[string]string{"Authorization": signed}),
			b:     request("203.0.113.9:2", map[string]string{"Authorization": signed}),
			equal: true},
		{name: "forged tokens share the anonymous bucket",
			a:     request("198.51.100.7:1", map[string]string{"Authorization": forged("enterprise")}),
			b:     request("198.51.100.7:1", map[string]string{"Authorization": forged("paid")}),
			equal: true},
		{name: "forged token equals no token",
			a:     request("198.51.100.7:1", map[string]string{"Authorization": forged("enterprise")}),
			b:     request("198.51.100.7:1", nil),
			equal: true},
		{name: "IPv6 rotation in a /64",
			a:     request("[2001:db8:1:2::1]:1", nil),
			b:     request("[2001:db8:1:2:dead:beef:0:1]:1", nil),
			equal: true},
		{name: "different /64",
			a: request("[2001:db8:1:2::1]:1", nil),
			b: request("[2001:db8:1:3::1]:1", nil)},
		{name: "User-Agent splits clients at normal level",
			a: request("198.51.100.7:1", map[string]string{"User-Agent": "a"}),
			b: request("198.51.100.7:1", map[string]string{"User-Agent": "b"})},
		{name: "spoofed XFF from untrusted peer",
			a:     request("198.51.100.7:1", map[string]string{"X-Forwarded-For": "1.1.1.1"}),
			b:     request("198.51.100.7:1", map[string]string{"X-Forwarded-For": "2.2.2.2"}),
			equal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ka, kb := res.Identify(tt.a).Key, res.Identify(tt.b).Key
			if (ka == kb) != tt.equal {
				t.Errorf("keys %s and %s: equal = %v, want %v", ka, kb, ka == kb, tt.equal)
			}
		})
	}
}

func TestFingerprintSeparatorInjection(t *testing.T) {
	t.Parallel()
	res := newTestResolver(t, func(c *Config) { c.Level = LevelStrict })
	// Each pair moves text from one header into another across a byte that
	// a naive "a|b|c" join would use.
	tests := []struct {
		name string
		a, b map[string]string
	}{
		{name: "pipe", a: map[string]string{"User-Agent": "curl|en", "Accept-Language": ""},
			b: map[string]string{"User-Agent": "curl", "Accept-Language": "en"}},
		{name: "colon", a: map[string]string{"User-Agent": "x:gzip"},
			b: map[string]string{"User-Agent": "x", "Accept-Encoding": "gzip"}},
		{name: "newline and NUL", a: map[string]string{"User-Agent": "x\x00\x01en"},
			b: map[string]string{"User-Agent": "x", "Accept-Language": "en"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ka := res.Identify(request("198.51.100.7:1", tt.a)).Key
			kb := res.Identify(request("198.51.100.7:1", tt.b)).Key
			if ka == kb {
				t.Errorf("fingerprints of %q and %q are equal (%s), want different", tt.a, tt.b, ka)
			}
		})
	}
}

func TestFingerprintMultiLineHeader(t *testing.T) {
	t.Parallel()
	res := newTestResolver(t, nil)
	twoLines := request("198.51.100.7:1", nil)
	twoLines.Header.Add("User-Agent", "abc")
	twoLines.Header.Add("User-Agent", "de")
	// One line that spells a length-prefixed encoding of the two lines.
	for _, ua := range []string{"3:abc2:de", "2#3:abc2:de", "abcde", "abc, de"} {
		oneLine := request("198.51.100.7:1", map[string]string{"User-Agent": ua})
		if res.Identify(oneLine).Key == res.Identify(twoLines).Key {
			t.Errorf("User-Agent %q has the fingerprint of the two lines \"abc\", \"de\"", ua)
		}
	}
}

func TestFingerprintLevels(t *testing.T) {
	t.Parallel()
	base := map[string]string{"User-Agent": "ua", "Accept-Language": "en"}
	other := map[string]string{"User-Agent": "ua", "Accept-Language": "de"}
	tests := []struct {
		name   string
		level  Level
		custom Components
		differ bool
	}{
		{name: "relaxed ignores headers", level: LevelRelaxed},
		{name: "normal ignores Accept-Language", level: LevelNormal},
		{name: "strict uses Accept-Language", level: LevelStrict, differ: true},
		{name: "custom with Accept-Language", level: LevelCustom,
			custom: Components{IP: true, AcceptLanguage: true}, differ: true},
		{name: "custom without Accept-Language", level: LevelCustom,
			custom: Components{IP: true, UserAgent: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := newTestResolver(t, func(c *Config) { c.Level, c.Custom = tt.level, tt.custom })
			ka := res.Identify(request("198.51.100.7:1", base)).Key
			kb := res.Identify(request("198.51.100.7:1", other)).Key
			if (ka != kb) != tt.differ {
				t.Errorf("keys differ = %v, want %v", ka != kb, tt.differ)
			}
		})
	}
}

func TestUnverifiedSwitchOnlySplitsFingerprint(t *testing.T) {
	t.Parallel()
	forged := func(sub string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + token(t, jwt.SigningMethodHS256,
			[]byte("attacker-secret-attacker-secret!"), jwt.MapClaims{"sub": sub, "tier": "enterprise"})}
	}
	off := newTestResolver(t, nil)
	on := newTestResolver(t, func(c *Config) { c.AllowUnverified = true })
	a, b := request("198.51.100.7:1", forged("alice")), request("198.51.100.7:1", forged("bob"))

	if off.Identify(a).Key != off.Identify(b).Key {
		t.Error("switch off: unverified subjects split the fingerprint, want one bucket")
	}
	ida, idb := on.Identify(a), on.Identify(b)
	if ida.Key == idb.Key {
		t.Error("switch on: unverified subjects share a fingerprint, want different keys")
	}
	if ida.Verified || ida.Tier != "" || ida.HasPermission(PermissionCircuitBypass) {
		t.Errorf("switch on: unverified token gave Verified %v, Tier %q; want anonymous",
			ida.Verified, ida.Tier)
	}
	if ida.NetworkKey != idb.NetworkKey {
		t.Error("switch on: network keys differ, want one per-network bucket")
	}
}

func TestAPIKeysAndSessions(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("good-key"))
	keys := map[string]Principal{hex.EncodeToString(sum[:]): {Subject: "svc", Tier: "paid"}}
	res := newTestResolver(t, func(c *Config) {
		c.APIKeys = func(h string) (Principal, bool) { p, ok := keys[h]; return p, ok }
		c.APIKeyQuery = "api_key"
		c.SessionCookie = "sid"
		c.Sessions = nil
	})
	tests := []struct {
		name     string
		req      *http.Request
		verified bool
		tier     string
	}{
		{name: "known header key", verified: true, tier: "paid",
			req: request("198.51.100.7:1", map[string]string{"X-API-Key": "good-key"})},
		{name: "unknown header key",
			req: request("198.51.100.7:1", map[string]string{"X-API-Key": "bad-key"})},
		{name: "known query key", verified: true, tier: "paid",
			req: httptest.NewRequest(http.MethodGet, "/?api_key=good-key", nil)},
		{name: "key with space",
			req: request("198.51.100.7:1", map[string]string{"X-API-Key": "good key"})},
		{name: "unverifiable session",
			req: request("198.51.100.7:1", map[string]string{"Cookie": "sid=abc"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := res.Identify(tt.req)
			if id.Verified != tt.verified || id.Tier != tt.tier {
				t.Errorf("Identify() = Verified %v Tier %q, want %v %q",
					id.Verified, id.Tier, tt.verified, tt.tier)
			}
			if tt.verified && id.Method != MethodAPIKey {
				t.Errorf("Method = %q, want %q", id.Method, MethodAPIKey)
			}
		})
	}
}

func TestRewriteChecks(t *testing.T) {
	t.Parallel()
	res := newTestResolver(t, func(c *Config) {
		c.AnonymousRules = calm.MustParseRules("20/minute")
	})
	policyChecks := func() []calm.Check {
		return []calm.Check{
			{Scope: calm.ScopeUser, Policy: "default", Endpoint: "GET /api/tiered",
				Rules: calm.MustParseRules("100/minute"), Client: "k"},
			{Scope: calm.ScopeEndpoint, Policy: "wide", Endpoint: "GET /api/tiered",
				Rules: calm.MustParseRules("5000/minute")},
		}
	}
	signed := "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
		jwt.MapClaims{"tier": "enterprise"})

	t.Run("verified enterprise", func(t *testing.T) {
		t.Parallel()
		r := request("198.51.100.7:1", map[string]string{"Authorization": signed})
		got := res.RewriteChecks(r, policyChecks())
		if len(got) != 2 {
			t.Fatalf("len(checks) = %d, want 2", len(got))
		}
		if got[0].Policy != "tier-enterprise" || got[0].Rules[0].Requests != 1000 {
			t.Errorf("user check = %s %v, want tier-enterprise 1000/minute", got[0].Policy, got[0].Rules)
		}
		if got[1].Policy != "wide" {
			t.Errorf("endpoint check policy = %s, want wide (unchanged)", got[1].Policy)
		}
		if len(got[0].BaseRules) != 1 || got[0].BaseRules[0].Requests != 1000 {
			t.Errorf("user check BaseRules = %v, want 1000/minute, the widest tier", got[0].BaseRules)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		t.Parallel()
		r := request("198.51.100.7:1", nil)
		id := res.Identify(r)
		got := res.RewriteChecks(r, policyChecks())
		if len(got) != 3 {
			t.Fatalf("len(checks) = %d, want 3", len(got))
		}
		if got[0].Policy != PolicyAnonymous || got[0].Rules[0].Requests != 5 ||
			got[0].Client != id.NetworkKey {
			t.Errorf("user check = %s %v %s, want anonymous 5/minute per network",
				got[0].Policy, got[0].Rules, got[0].Client)
		}
		if got[2].Endpoint != anonymousEndpoint || got[2].Rules[0].Requests != 20 {
			t.Errorf("extra check = %s %v, want the anonymous budget 20/minute",
				got[2].Endpoint, got[2].Rules)
		}
	})
	t.Run("untiered endpoint", func(t *testing.T) {
		t.Parallel()
		r := request("198.51.100.7:1", map[string]string{"Authorization": signed})
		checks := policyChecks()
		checks[0].Endpoint = "GET /api/test"
		got := res.RewriteChecks(r, checks)
		if got[0].Policy != "default" || len(got) != 2 {
			t.Errorf("checks = %+v, want unchanged", got)
		}
	})
}

func TestMiddlewareStoresIdentity(t *testing.T) {
	t.Parallel()
	res := newTestResolver(t, nil)
	signed := "Bearer " + token(t, jwt.SigningMethodHS256, testJWTSecret,
		jwt.MapClaims{"permissions": []string{PermissionCircuitBypass}})
	var got Identity
	var bypass bool
	h := res.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = FromContext(r.Context())
		bypass = CanBypassCircuit(r.Context())
	}))
	h.ServeHTTP(httptest.NewRecorder(), request("198.51.100.7:1",
		map[string]string{"Authorization": signed}))
	if !got.Verified || got.Subject != "user-1" || !bypass {
		t.Errorf("identity in context = %+v, bypass %v; want verified user-1 with bypass", got, bypass)
	}
	if CanBypassCircuit(t.Context()) {
		t.Error("CanBypassCircuit(empty context) = true, want false")
	}
	forged := Identity{Verified: false, Permissions: []string{PermissionCircuitBypass}}
	if forged.HasPermission(PermissionCircuitBypass) {
		t.Error("unverified HasPermission(circuit.bypass) = true, want false")
	}
}

func TestTiers(t *testing.T) {
	t.Parallel()
	tiers, err := NewTiers(TierConfig{Levels: []TierLevel{
		{Name: "Gold", Limits: []string{"1000/minute"}},
		{Name: "bronze", Limits: []string{"600/hour"}}, // 10/minute: the lowest
		{Name: "silver", Limits: []string{"100/minute", "20/second"}},
	}})
	if err != nil {
		t.Fatalf("NewTiers: %v", err)
	}
	tests := []struct {
		claim any
		want  string
	}{
		{"gold", "gold"}, {"GOLD", "gold"}, {"silver", "silver"}, {"platinum", "bronze"},
		{"", "bronze"}, {42, "bronze"}, {nil, "bronze"},
	}
	for _, tt := range tests {
		if got, _ := tiers.Lookup(tt.claim); got != tt.want {
			t.Errorf("Lookup(%v) = %s, want %s", tt.claim, got, tt.want)
		}
	}
	bad := []TierConfig{
		{},
		{Levels: []TierLevel{{Name: "free"}}},
		{Levels: []TierLevel{{Name: "free", Limits: []string{"0/minute"}}}},
		{Levels: []TierLevel{{Name: "a b", Limits: []string{"1/minute"}}}},
		{Levels: []TierLevel{{Name: "a", Limits: []string{"1/minute"}}, {Name: "A", Limits: []string{"2/minute"}}}},
		{Levels: []TierLevel{{Name: "a", Limits: []string{"1/minute"}}}, Anonymous: []string{"x"}},
	}
	for i, cfg := range bad {
		if _, err := NewTiers(cfg); err == nil {
			t.Errorf("NewTiers(bad[%d]) error = nil, want error", i)
		}
	}
}

func TestCheckProduction(t *testing.T) {
	t.Parallel()
	good := Deployment{Environment: "production", Store: "redis", TiersConfigured: true,
		Identity: Settings{JWTSecret: string(testJWTSecret), Secret: "s"}}
	tests := []struct {
		name    string
		mod     func(*Deployment)
		wantErr error
		setting string
	}{
		{name: "good", mod: func(*Deployment) {}},
		{name: "development memory", mod: func(d *Deployment) {
			d.Environment, d.Store = "development", "memory"
		}},
		{name: "memory store", mod: func(d *Deployment) { d.Store = "memory" },
			wantErr: ErrProductionNeedsRedis, setting: "RATELIMIT_REDIS_URL"},
		{name: "tiers without key", mod: func(d *Deployment) { d.Identity.JWTSecret = "" },
			wantErr: ErrProductionNeedsJWTKey, setting: "RATELIMIT_AUTH_JWT_SECRET"},
		{name: "no tiers no key", mod: func(d *Deployment) {
			d.Identity.JWTSecret, d.TiersConfigured = "", false
		}},
		{name: "unverified tokens", mod: func(d *Deployment) { d.Identity.AllowUnverified = true },
			wantErr: ErrProductionUnverifiedTokens, setting: "RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS"},
		{name: "no fingerprint secret", mod: func(d *Deployment) { d.Identity.Secret = "" },
			wantErr: ErrProductionNeedsSecret, setting: "RATELIMIT_FP_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := good
			tt.mod(&d)
			err := CheckProduction(d)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckProduction() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.setting) {
				t.Errorf("CheckProduction() = %q, want it to name %s", err, tt.setting)
			}
		})
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer  x", "Basic abc", "Bearer ",
		"Bearer a=b", "Bearer abc==", "Bearer \x00", strings.Repeat("B", 100)} {
		f.Add(s)
	}
	res := newTestResolver(f, func(c *Config) { c.AllowUnverified = true })
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{header}
		tok := BearerToken(r)
		if len(tok) > jwtverify.MaxTokenLength || strings.ContainsAny(tok, " \t\r\n,;\"") {
			t.Fatalf("BearerToken(%q) = %q, want a bounded token68", header, tok)
		}
		id := res.Identify(r)
		if id.Verified || id.Tier != "" {
			t.Fatalf("Identify(%q) = verified %v tier %q, want anonymous", header, id.Verified, id.Tier)
		}
	})
}
