package jwtverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	enc := base64.RawURLEncoding
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig",
		"n": enc.EncodeToString(pub.N.Bytes()),
		"e": enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	enc := base64.RawURLEncoding
	raw, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	size := (len(raw) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": enc.EncodeToString(raw[1 : 1+size]), "y": enc.EncodeToString(raw[1+size:])}
}

func edJWK(kid string, pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519",
		"x": base64.RawURLEncoding.EncodeToString(pub)}
}

func jwksDoc(keys ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// jwksServer serves the document in doc and counts requests.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	doc  []byte
	hits atomic.Int64
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte) {
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestJWKSVerifiesEveryKeyType(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(
		rsaJWK("r1", &rsaKey.PublicKey), ecJWK("e1", &ecKey.PublicKey),
		edJWK("o1", edKey.Public().(ed25519.PublicKey)),
		map[string]any{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
		map[string]any{"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"},
	))
	jwks, err := NewJWKS(t.Context(), JWKSConfig{URL: srv.URL, Now: fixedNow})
	if err != nil {
		t.Fatalf("NewJWKS: %v", err)
	}
	t.Cleanup(func() { jwks.Close() })
	if n := len(jwks.Keys("")); n != 3 {
		t.Errorf("len(Keys(\"\")) = %d, want 3 (oct and invalid keys skipped)", n)
	}
	v, err := New(Config{KeySource: jwks, Now: fixedNow})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "RS256", token: sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "r1")},
		{name: "ES256", token: sign(t, jwt.SigningMethodES256, ecKey, claims(nil), "e1")},
		{name: "EdDSA", token: sign(t, jwt.SigningMethodEdDSA, edKey, claims(nil), "o1")},
		{name: "RS256 under EC kid", wantErr: ErrNoKey,
			token: sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "e1")},
		{name: "HS256 with oct kid", wantErr: ErrAlgorithmNotAllowed,
			token: sign(t, jwt.SigningMethodHS256, []byte("secret"), claims(nil), "sym")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestJWKSRefresh(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(rsaJWK("old", &rsaKey.PublicKey)))
	clk := &clock{now: testNow}
	jwks, err := NewJWKS(t.Context(), JWKSConfig{URL: srv.URL, Now: clk.Now,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Minute})
	if err != nil {
		t.Fatalf("NewJWKS: %v", err)
	}
	t.Cleanup(func() { jwks.Close() })

	// A lookup of an unknown kid right after a fetch must not fetch again.
	jwks.Keys("new")
	jwks.wg.Wait()
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches after unknown kid within MinRefreshInterval = %d, want 1", got)
	}

	// The identity provider rotates its key; an unknown kid past the
	// minimum interval starts one background refresh.
	srv.set(jwksDoc(rsaJWK("new", &rsaKey.PublicKey)))
	clk.Advance(time.Minute)
	if keys := jwks.Keys("new"); len(keys) != 0 {
		t.Errorf("Keys(new) before refresh = %d keys, want 0", len(keys))
	}
	jwks.wg.Wait()
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches after rotation = %d, want 2", got)
	}
	if keys := jwks.Keys("new"); len(keys) != 1 {
		t.Errorf("Keys(new) after refresh = %d keys, want 1", len(keys))
	}

	// A failed refresh keeps the last good keys.
	srv.set([]byte("{not json"))
	clk.Advance(time.Hour)
	jwks.Keys("new")
	jwks.wg.Wait()
	if jwks.Err() == nil {
		t.Error("Err() after bad document = nil, want error")
	}
	if keys := jwks.Keys("new"); len(keys) != 1 {
		t.Errorf("Keys(new) after failed refresh = %d keys, want 1", len(keys))
	}
}

func TestJWKSBounds(t *testing.T) {
	t.Parallel()
	testKeys(t)
	big := jwksDoc(rsaJWK("r1", &rsaKey.PublicKey), map[string]any{
		"kty": "RSA", "pad": strings.Repeat("x", 4096)})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(jwksDoc(rsaJWK("r1", &rsaKey.PublicKey)))
	}))
	t.Cleanup(other.Close)
	missing := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(missing.Close)
	redirect := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	many := make([]map[string]any, 10)
	for i := range many {
		many[i] = rsaJWK("k", &rsaKey.PublicKey)
	}

	tests := []struct {
		name     string
		cfg      JWKSConfig
		doc      []byte
		wantKeys int
	}{
		{name: "oversized document", doc: big, cfg: JWKSConfig{MaxBytes: 1024}},
		{name: "timeout", cfg: JWKSConfig{URL: slow.URL, Timeout: 50 * time.Millisecond}},
		{name: "redirect to other host", cfg: JWKSConfig{URL: redirect.URL}},
		{name: "not found", cfg: JWKSConfig{URL: missing.URL}},
		{name: "no usable key", doc: jwksDoc(map[string]any{"kty": "oct", "k": "c2VjcmV0"})},
		{name: "key count capped", doc: jwksDoc(many...), cfg: JWKSConfig{MaxKeys: 4}, wantKeys: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if tt.doc != nil && cfg.URL == "" {
				cfg.URL = newJWKSServer(t, tt.doc).URL
			}
			jwks, err := NewJWKS(t.Context(), cfg)
			if tt.wantKeys == 0 {
				if err == nil {
					jwks.Close()
					t.Fatal("NewJWKS error = nil, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewJWKS: %v", err)
			}
			defer jwks.Close()
			if n := len(jwks.Keys("")); n != tt.wantKeys {
				t.Errorf("len(Keys) = %d, want %d", n, tt.wantKeys)
			}
		})
	}
}

func TestJWKSFile(t *testing.T) {
	t.Parallel()
	testKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksDoc(edJWK("o1", edKey.Public().(ed25519.PublicKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, err := NewJWKS(context.Background(), JWKSConfig{File: path})
	if err != nil {
		t.Fatalf("NewJWKS(file): %v", err)
	}
	defer jwks.Close()
	if n := len(jwks.Keys("o1")); n != 1 {
		t.Errorf("len(Keys(o1)) = %d, want 1", n)
	}
	if _, err := NewJWKS(context.Background(), JWKSConfig{File: path + ".missing"}); err == nil {
		t.Error("NewJWKS(missing file) error = nil, want error")
	}
	if _, err := NewJWKS(context.Background(), JWKSConfig{File: path, URL: "http://127.0.0.1/"}); err == nil {
		t.Error("NewJWKS(file and URL) error = nil, want error")
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _ := ParseJWKS(data, 8)
		if len(keys) > 8 {
			t.Fatalf("ParseJWKS returned %d keys, want at most 8", len(keys))
		}
		for _, k := range keys {
			if err := checkPublicKey(k.Public); err != nil {
				t.Fatalf("ParseJWKS returned an unusable key: %v", err)
			}
		}
	})
}
