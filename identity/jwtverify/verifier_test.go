package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testSecret = []byte("0123456789abcdef0123456789abcdef")

	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	ec384Key *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ec384Key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":  "user-1",
		"tier": "paid",
		"iat":  testNow.Add(-time.Minute).Unix(),
		"exp":  testNow.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s token: %v", method.Alg(), err)
	}
	return s
}

// unsignedToken builds header.payload.signature by hand, for tokens that
// no library would sign.
func unsignedToken(t testing.TB, header map[string]any, c jwt.MapClaims, sig string) string {
	t.Helper()
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + sig
}

func publicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func fixedNow() time.Time { return testNow }

func TestVerify(t *testing.T) {
	t.Parallel()
	testKeys(t)
	rsaPEM := publicPEM(t, &rsaKey.PublicKey)
	rsaOnly := Config{PublicKeys: []Key{{Public: &rsaKey.PublicKey}}, Now: fixedNow}
	hmacOnly := Config{HMACSecret: testSecret, Now: fixedNow}
	both := Config{HMACSecret: testSecret, PublicKeys: []Key{{Public: &rsaKey.PublicKey}},
		Now: fixedNow}
	all := Config{HMACSecret: testSecret, Now: fixedNow, PublicKeys: []Key{
		{ID: "rsa", Public: &rsaKey.PublicKey}, {Public: &ecKey.PublicKey},
		{Public: edKey.Public()},
	}}

	tests := []struct {
		name    string
		cfg     Config
		token   func(t *testing.T) string
		wantErr error
	}{
		{name: "HS256 valid", cfg: hmacOnly, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), "")
		}},
		{name: "HS512 valid", cfg: hmacOnly, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS512, testSecret, claims(nil), "")
		}},
		{name: "unknown crit extension", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
				tok.Header["crit"] = []string{"exp2"}
				tok.Header["exp2"] = 1
				s, err := tok.SignedString(testSecret)
				if err != nil {
					t.Fatalf("signing: %v", err)
				}
				return s
			}},
		{name: "forged signature", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, []byte("attacker-secret-attacker-secret!"),
					claims(func(c jwt.MapClaims) { c["tier"] = "enterprise" }), "")
			}},
		{name: "payload swapped after signing", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				good := strings.Split(sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), ""), ".")
				evil := strings.Split(unsignedToken(t, map[string]any{"alg": "HS256"},
					claims(func(c jwt.MapClaims) { c["tier"] = "enterprise" }), ""), ".")
				return good[0] + "." + evil[1] + "." + good[2]
			}},
		{name: "alg none", cfg: both, wantErr: ErrAlgorithmNotAllowed,
			token: func(t *testing.T) string {
				return unsignedToken(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(nil), "")
			}},
		{name: "alg None mixed case", cfg: both, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return unsignedToken(t, map[string]any{"alg": "None"}, claims(nil), "")
			}},
		{name: "HS256 signed with RSA public key", cfg: rsaOnly, wantErr: ErrAlgorithmNotAllowed,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil), "")
			}},
		{name: "HS256 signed with RSA public key and HS256 allowed", wantErr: ErrNoKey,
			cfg: Config{Algorithms: []string{"HS256", "RS256"},
				PublicKeys: []Key{{Public: &rsaKey.PublicKey}}, Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil), "")
			}},
		{name: "HS256 signed with RSA public key beside a secret", cfg: both,
			wantErr: ErrInvalidToken, token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil), "")
			}},
		{name: "expired", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["exp"] = testNow.Add(-time.Second).Unix()
				}), "")
			}},
		{name: "not yet valid", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["nbf"] = testNow.Add(time.Minute).Unix()
				}), "")
			}},
		{name: "issued in the future", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["iat"] = testNow.Add(time.Minute).Unix()
				}), "")
			}},
		{name: "no expiry", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					delete(c, "exp")
				}), "")
			}},
		{name: "expired within leeway", wantErr: nil,
			cfg: Config{HMACSecret: testSecret, Leeway: time.Minute, Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["exp"] = testNow.Add(-30 * time.Second).Unix()
				}), "")
			}},
		{name: "RS256 valid", cfg: all, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "rsa")
		}},
		{name: "PS256 valid", cfg: all, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodPS256, rsaKey, claims(nil), "")
		}},
		{name: "ES256 valid", cfg: all, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ecKey, claims(nil), "")
		}},
		{name: "EdDSA valid", cfg: all, token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodEdDSA, edKey, claims(nil), "")
		}},
		{name: "ES384 without P-384 key", cfg: all, wantErr: ErrAlgorithmNotAllowed,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodES384, ec384Key, claims(nil), "")
			}},
		{name: "RS256 with unknown kid", cfg: all, wantErr: ErrNoKey,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "other")
			}},
		{name: "algorithm outside allow-list", wantErr: ErrAlgorithmNotAllowed,
			cfg: Config{Algorithms: []string{"RS256"}, PublicKeys: []Key{{Public: &rsaKey.PublicKey}},
				Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodPS256, rsaKey, claims(nil), "")
			}},
		{name: "key bound to other algorithm", wantErr: ErrNoKey,
			cfg: Config{PublicKeys: []Key{{Algorithm: "RS256", Public: &rsaKey.PublicKey}},
				Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodRS384, rsaKey, claims(nil), "")
			}},
		{name: "wrong issuer", wantErr: ErrInvalidToken,
			cfg: Config{HMACSecret: testSecret, Issuer: "https://idp.test", Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["iss"] = "https://evil.test"
				}), "")
			}},
		{name: "wrong audience", wantErr: ErrInvalidToken,
			cfg: Config{HMACSecret: testSecret, Audience: "calm", Now: fixedNow},
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["aud"] = "other"
				}), "")
			}},
		{name: "too long", cfg: hmacOnly, wantErr: ErrTokenTooLong,
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, testSecret, claims(func(c jwt.MapClaims) {
					c["pad"] = strings.Repeat("x", MaxTokenLength)
				}), "")
			}},
		{name: "garbage", cfg: hmacOnly, wantErr: ErrInvalidToken,
			token: func(t *testing.T) string { return "a.b.c" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := New(tt.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got, err := v.Verify(tt.token(t))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify() error = %v, want nil", err)
				}
				if got["tier"] != "paid" {
					t.Errorf("Verify() tier = %v, want paid", got["tier"])
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Verify() claims = %v, want nil on error", got)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	testKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no key", cfg: Config{}},
		{name: "short secret", cfg: Config{HMACSecret: []byte("short")}},
		{name: "small RSA key", cfg: Config{PublicKeys: []Key{{Public: &small.PublicKey}}}},
		{name: "private key", cfg: Config{PublicKeys: []Key{{Public: rsaKey}}}},
		{name: "unknown algorithm", cfg: Config{HMACSecret: testSecret, Algorithms: []string{"none"}}},
		{name: "empty allow-list", cfg: Config{HMACSecret: testSecret, Algorithms: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.cfg); err == nil {
				t.Errorf("New(%s) error = nil, want error", tt.name)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	t.Parallel()
	testKeys(t)
	if _, err := ParsePublicKeyPEM(publicPEM(t, &rsaKey.PublicKey)); err != nil {
		t.Errorf("ParsePublicKeyPEM(RSA) error = %v", err)
	}
	if _, err := ParsePublicKeyPEM(publicPEM(t, edKey.Public())); err != nil {
		t.Errorf("ParsePublicKeyPEM(Ed25519) error = %v", err)
	}
	der := x509.MarshalPKCS1PrivateKey(rsaKey)
	private := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
	if _, err := ParsePublicKeyPEM(private); err == nil {
		t.Error("ParsePublicKeyPEM(private key) error = nil, want error")
	}
	if _, err := ParsePublicKeyPEM([]byte("not pem")); err == nil {
		t.Error("ParsePublicKeyPEM(garbage) error = nil, want error")
	}
}
