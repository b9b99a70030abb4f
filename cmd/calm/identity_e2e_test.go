package main

// End-to-end tests of client identity: tiers from verified tokens, forged
// tokens, TLS fingerprints and the production check, against the real
// binary that TestMain builds.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/internal/redistest"
)

const e2eJWTSecret = "e2e-secret-0123456789abcdef-0123456789"

// mintToken runs `calm token` and returns the token it printed.
func mintToken(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runCalm(t, nil, append([]string{"token"}, args...)...)
	if code != 0 {
		t.Fatalf("calm token %v: exit status %d, stderr: %s", args, code, stderr)
	}
	return strings.TrimSpace(stdout)
}

// noneToken is an unsigned token with "alg": "none" that claims the
// enterprise tier and the circuit bypass.
func noneToken() string {
	enc := base64.RawURLEncoding
	claims := `{"sub":"mallory","tier":"enterprise","permissions":["circuit.bypass"],` +
		`"exp":4102444800}`
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(claims)) + "."
}

func TestTieredLimitsEndToEnd(t *testing.T) {
	t.Parallel()
	p := startCalm(t, map[string]string{"RATELIMIT_AUTH_JWT_SECRET": e2eJWTSecret})

	// Three forged tier=enterprise tokens: signed with another secret,
	// unsigned, and a signed token with a swapped payload. Each must get
	// the anonymous 5/minute.
	forged := []struct {
		name  string
		token string
	}{
		{"other secret", mintToken(t, "--tier", "enterprise", "--sub", "mallory",
			"--secret", "attacker-secret-0123456789abcdef-0123")},
		{"alg none", noneToken()},
		{"tampered payload", tamper(t, mintToken(t, "--tier", "free", "--secret", e2eJWTSecret))},
	}
	for _, f := range forged {
		resp, body := do(t, http.MethodGet, p.url+"/api/tiered", nil,
			http.Header{"Authorization": {"Bearer " + f.token}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, want 200; body %s", f.name, resp.StatusCode, body)
		}
		if got := resp.Header.Get("RateLimit-Limit"); got != "5" {
			t.Errorf("%s: RateLimit-Limit = %q, want 5 (anonymous)", f.name, got)
		}
		if got := resp.Header.Get("X-RateLimit-Policy"); got != "anonymous" {
			t.Errorf("%s: X-RateLimit-Policy = %q, want anonymous", f.name, got)
		}
		var answer struct {
			Verified bool   `json:"verified"`
			Tier     string `json:"tier"`
		}
		if err := json.Unmarshal(body, &answer); err != nil || answer.Verified ||
			answer.Tier != "anonymous" {
			t.Errorf("%s: body %s, want an unverified anonymous client", f.name, body)
		}
	}

	// The anonymous budget is per client network: a spoofed
	// X-Forwarded-For from this untrusted peer does not escape it.
	for i := len(forged); i < 5; i++ {
		do(t, http.MethodGet, p.url+"/api/tiered", nil, http.Header{
			"X-Forwarded-For": {"203.0.113." + string(rune('1'+i))}})
	}
	resp, body := do(t, http.MethodGet, p.url+"/api/tiered", nil,
		http.Header{"Authorization": {"Bearer " + forged[0].token},
			"X-Forwarded-For": {"198.51.100.200"}})
	if resp.StatusCode != 420 {
		t.Errorf("sixth anonymous request: status %d, want 420; body %s", resp.StatusCode, body)
	}

	// A correctly signed token gets its tier, from the same address.
	enterprise := mintToken(t, "--tier", "enterprise", "--sub", "ada", "--secret", e2eJWTSecret)
	resp, body = do(t, http.MethodGet, p.url+"/api/tiered", nil,
		http.Header{"Authorization": {"Bearer " + enterprise}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed enterprise: status %d, want 200; body %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("RateLimit-Limit"); got != "1000" {
		t.Errorf("signed enterprise: RateLimit-Limit = %q, want 1000", got)
	}
	// The endpoint-wide layer (10 × the default 100/minute) may be the
	// tightest quota and name itself in X-RateLimit-Policy, so look for
	// the tier among all policies in force.
	if got := resp.Header.Get("RateLimit-Policy"); !strings.Contains(got,
		`"tier-enterprise";q=1000;w=60`) {
		t.Errorf("signed enterprise: RateLimit-Policy = %q, want tier-enterprise 1000/60s in it", got)
	}
	paid := mintToken(t, "--tier", "paid", "--sub", "bob", "--secret", e2eJWTSecret)
	resp, _ = do(t, http.MethodGet, p.url+"/api/tiered", nil,
		http.Header{"Authorization": {"Bearer " + paid}})
	if got := resp.Header.Get("RateLimit-Limit"); got != "100" {
		t.Errorf("signed paid: RateLimit-Limit = %q, want 100", got)
	}
	if strings.Contains(p.logs.String(), enterprise) || strings.Contains(p.logs.String(), "mallory") {
		t.Errorf("logs contain a raw token or subject:\n%s", p.logs)
	}
}

// tamper replaces the payload of a signed token with one that claims the
// enterprise tier, keeping the original signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts, want 3", token, len(parts))
	}
	claims := `{"sub":"mallory","tier":"enterprise","exp":4102444800}`
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "." + parts[2]
}

// writeTestCert writes a self-signed ECDSA certificate for 127.0.0.1 and
// returns the certificate and key paths and a pool that trusts it.
func writeTestCert(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "calm test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certPath, keyPath, pool
}

func TestTLSFingerprintEndToEnd(t *testing.T) {
	t.Parallel()
	certPath, keyPath, pool := writeTestCert(t)
	p := startCalm(t, map[string]string{
		"RATELIMIT_FP_LEVEL":          "custom",
		"RATELIMIT_FP_USE_IP":         "true",
		"RATELIMIT_FP_USE_USER_AGENT": "false",
		"RATELIMIT_FP_USE_TLS":        "true",
	}, "--tls-cert", certPath, "--tls-key", keyPath)

	remaining := func(cfg *tls.Config) string {
		t.Helper()
		cfg.RootCAs = pool
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: nil},
			Timeout: 20 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + p.addr + "/public/search")
		if err != nil {
			t.Fatalf("GET over TLS: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET over TLS: status %d, want 200", resp.StatusCode)
		}
		return resp.Header.Get("RateLimit-Remaining")
	}
	tls13 := func() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS13} }
	tls12 := &tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}

	if got := remaining(tls13()); got != "49" {
		t.Errorf("first TLS 1.3 request: RateLimit-Remaining = %s, want 49", got)
	}
	if got := remaining(tls13()); got != "48" {
		t.Errorf("second TLS 1.3 request, new connection: RateLimit-Remaining = %s, want 48", got)
	}
	if got := remaining(tls12); got != "49" {
		t.Errorf("TLS 1.2 client with other ciphers: RateLimit-Remaining = %s, want 49 "+
			"(its own fingerprint)", got)
	}
}

func TestProductionCheckEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "memory store", env: map[string]string{"RATELIMIT_ENVIRONMENT": "production"},
			want: "production requires a Redis store"},
		{name: "short JWT secret", env: map[string]string{"RATELIMIT_AUTH_JWT_SECRET": "short"},
			want: "RATELIMIT_AUTH_JWT_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCalm(t, tt.env, "serve", "--addr", "127.0.0.1:0")
			if code != 1 {
				t.Errorf("exit status = %d, want 1", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
}

func TestAPIKeyTierEndToEnd(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("reports-key-1"))
	path := filepath.Join(t.TempDir(), "keys.yaml")
	file := "- sha256: " + hex.EncodeToString(sum[:]) + "\n  subject: reports\n  tier: paid\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCalm(t, map[string]string{"RATELIMIT_AUTH_API_KEYS_FILE": path})

	tests := []struct {
		name  string
		key   string
		limit string
	}{
		{name: "known key", key: "reports-key-1", limit: "100"},
		{name: "unknown key", key: "guessed-key", limit: "5"},
	}
	for _, tt := range tests {
		resp, body := do(t, http.MethodGet, p.url+"/api/tiered", nil,
			http.Header{"X-Api-Key": {tt.key}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, want 200; body %s", tt.name, resp.StatusCode, body)
		}
		if got := resp.Header.Get("RateLimit-Limit"); got != tt.limit {
			t.Errorf("%s: RateLimit-Limit = %q, want %s", tt.name, got, tt.limit)
		}
	}
	if strings.Contains(p.logs.String(), "reports-key-1") {
		t.Errorf("logs contain the raw API key:\n%s", p.logs)
	}
}

func TestProductionCheckWithRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	base := map[string]string{
		"RATELIMIT_ENVIRONMENT": "production",
		"RATELIMIT_REDIS_URL":   "redis://" + srv.Addr + "/0",
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "tiers without JWT key", env: map[string]string{
			"RATELIMIT_FP_SECRET": e2eJWTSecret},
			want: "RATELIMIT_AUTH_JWT_SECRET"},
		{name: "unverified tokens", env: map[string]string{
			"RATELIMIT_FP_SECRET":                    e2eJWTSecret,
			"RATELIMIT_AUTH_JWT_SECRET":              e2eJWTSecret,
			"RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS": "true"},
			want: "RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS=false"},
		{name: "no fingerprint secret", env: map[string]string{
			"RATELIMIT_AUTH_JWT_SECRET": e2eJWTSecret},
			want: "RATELIMIT_FP_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			code, _, stderr := runCalm(t, env, "serve", "--addr", "127.0.0.1:0")
			if code != 1 {
				t.Errorf("exit status = %d, want 1", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to name %s", stderr, tt.want)
			}
		})
	}

	t.Run("complete settings start", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{
			"RATELIMIT_FP_SECRET":       e2eJWTSecret,
			"RATELIMIT_AUTH_JWT_SECRET": e2eJWTSecret,
		}
		for k, v := range base {
			env[k] = v
		}
		p := startCalm(t, env)
		resp, body := do(t, http.MethodGet, p.url+"/api/tiered", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/tiered: status %d, want 200; body %s", resp.StatusCode, body)
		}
	})
}
