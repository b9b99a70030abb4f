// Package jwtverify verifies JWT bearer tokens against configured keys: an
// HMAC secret, RSA, ECDSA and Ed25519 public keys, and JSON Web Key Sets
// read from a file or a URL.
//
// Signature checks and registered-claim validation come from
// github.com/golang-jwt/jwt/v5, which rejects "alg": "none" and checks
// signatures in constant time. This package adds what a rate limiter needs
// on top: an explicit algorithm allow-list, keys bound to one algorithm
// family (so an HMAC token is never checked against a public key), a bounded
// token size, a required expiry and an injected clock.
package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenLength bounds the size of a token that Verify parses, in bytes.
const MaxTokenLength = 8192

// Errors returned by Verify, wrapped with detail.
var (
	// ErrTokenTooLong is returned for a token longer than MaxTokenLength.
	ErrTokenTooLong = errors.New("jwtverify: token too long")
	// ErrAlgorithmNotAllowed is returned for a token whose alg header is not
	// in the allow-list, including "none".
	ErrAlgorithmNotAllowed = errors.New("jwtverify: algorithm not allowed")
	// ErrNoKey is returned when no configured key fits the token's
	// algorithm and key ID.
	ErrNoKey = errors.New("jwtverify: no key for token")
	// ErrInvalidToken is returned for a token that is malformed, has a bad
	// signature, or fails claim validation (expired, not yet valid, wrong
	// issuer or audience).
	ErrInvalidToken = errors.New("jwtverify: invalid token")
)

// Key is a public key with an optional key ID (the "kid" header).
type Key struct {
	ID string
	// Algorithm restricts the key to one algorithm (the JWK "alg" member);
	// empty means every algorithm of the key's family.
	Algorithm string
	// Public is an *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Public crypto.PublicKey
}

// KeySource supplies keys that may change over time, such as a JWKS.
type KeySource interface {
	// Keys returns the keys with the given ID, or every key when id is "".
	Keys(id string) []Key
}

// Config configures a Verifier. At least one of HMACSecret, PublicKeys and
// KeySource must be set.
type Config struct {
	// Algorithms is the allow-list of "alg" values, such as HS256, RS256,
	// PS256, ES256, ES384, ES512, EdDSA. Nil means the algorithms of the
	// configured keys: HS256/384/512 with an HMAC secret, RS* and PS* with
	// RSA keys, ES256/384/512 by ECDSA curve, EdDSA with Ed25519 keys, and
	// RS256, ES256 and EdDSA for a KeySource. "none" is always rejected.
	Algorithms []string
	// HMACSecret verifies HS256, HS384 and HS512 tokens. It must be at least
	// 32 bytes. It is never used for any other algorithm.
	HMACSecret []byte
	// PublicKeys verify RS*, PS*, ES* and EdDSA tokens.
	PublicKeys []Key
	// KeySource supplies further public keys, looked up by the token's kid.
	KeySource KeySource
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 0.
	Leeway time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// MinHMACSecretLength is the shortest HMAC secret accepted, in bytes: the
// output size of SHA-256, as RFC 7518 section 3.2 requires for HS256.
const MinHMACSecretLength = 32

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	secret  []byte
	keys    []Key
	source  KeySource
	allowed []string
	parser  *jwt.Parser
	hasHMAC bool
}

var knownAlgorithms = []string{
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// New validates cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.HMACSecret) == 0 && len(cfg.PublicKeys) == 0 && cfg.KeySource == nil {
		return nil, errors.New("jwtverify: no key configured: set an HMAC secret, a public key or a JWKS")
	}
	if n := len(cfg.HMACSecret); n > 0 && n < MinHMACSecretLength {
		return nil, fmt.Errorf("jwtverify: HMAC secret is %d bytes, want at least %d", n,
			MinHMACSecretLength)
	}
	for i, k := range cfg.PublicKeys {
		if err := checkPublicKey(k.Public); err != nil {
			return nil, fmt.Errorf("jwtverify: public key %d: %w", i, err)
		}
	}
	allowed := cfg.Algorithms
	if allowed == nil {
		allowed = defaultAlgorithms(cfg)
	}
	for _, alg := range allowed {
		if !slices.Contains(knownAlgorithms, alg) {
			return nil, fmt.Errorf("jwtverify: invalid algorithm %q in allow-list: use one of %s",
				alg, strings.Join(knownAlgorithms, ", "))
		}
	}
	if len(allowed) == 0 {
		return nil, errors.New("jwtverify: empty algorithm allow-list")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{
		secret:  slices.Clone(cfg.HMACSecret),
		keys:    slices.Clone(cfg.PublicKeys),
		source:  cfg.KeySource,
		allowed: slices.Clone(allowed),
		parser:  jwt.NewParser(opts...),
		hasHMAC: len(cfg.HMACSecret) > 0,
	}, nil
}

// Algorithms returns the allow-list in force.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.allowed) }

// Verify checks the signature and the registered claims of token and
// returns its claims. The token must carry an exp claim.
func (v *Verifier) Verify(token string) (map[string]any, error) {
	if len(token) > MaxTokenLength {
		return nil, ErrTokenTooLong
	}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyFor)
	if err != nil {
		if errors.Is(err, ErrAlgorithmNotAllowed) || errors.Is(err, ErrNoKey) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return claims, nil
}

// keyFor checks the alg header against the allow-list and returns the keys
// that may verify t: the HMAC secret for HS*, and public keys of the
// matching family, curve and kid for the others.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	// RFC 7515 section 4.1.11: a recipient must reject a token whose crit
	// header names an extension it does not understand, and calm
	// understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New("crit header names extensions this verifier does not support")
	}
	alg := t.Method.Alg()
	if !slices.Contains(v.allowed, alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithmNotAllowed, alg)
	}
	if strings.HasPrefix(alg, "HS") {
		if !v.hasHMAC {
			return nil, fmt.Errorf("%w: HMAC algorithm %s but no HMAC secret", ErrNoKey, alg)
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	add := func(keys []Key) {
		for _, k := range keys {
			if (kid == "" || k.ID == "" || k.ID == kid) && fits(k, alg) {
				set.Keys = append(set.Keys, k.Public)
			}
		}
	}
	add(v.keys)
	if v.source != nil {
		add(v.source.Keys(kid))
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: algorithm %s, kid %q", ErrNoKey, alg, kid)
	}
	return set, nil
}

// fits reports whether key k may verify a token signed with alg.
func fits(k Key, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return curveAlgorithm(pub.Curve) == alg
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func curveAlgorithm(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// MinRSABits is the smallest RSA modulus accepted, in bits.
const MinRSABits = 2048

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		if curveAlgorithm(k.Curve) == "" {
			return errors.New("ECDSA key on an unsupported curve: use P-256, P-384 or P-521")
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key of %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
	default:
		return fmt.Errorf("unsupported key type %T: use RSA, ECDSA or Ed25519", pub)
	}
	return nil
}

func defaultAlgorithms(cfg Config) []string {
	var algs []string
	add := func(a ...string) {
		for _, x := range a {
			if !slices.Contains(algs, x) {
				algs = append(algs, x)
			}
		}
	}
	if len(cfg.HMACSecret) > 0 {
		add("HS256", "HS384", "HS512")
	}
	for _, k := range cfg.PublicKeys {
		switch pub := k.Public.(type) {
		case *rsa.PublicKey:
			add("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
		case *ecdsa.PublicKey:
			add(curveAlgorithm(pub.Curve))
		case ed25519.PublicKey:
			add("EdDSA")
		}
	}
	if cfg.KeySource != nil {
		add("RS256", "ES256", "EdDSA")
	}
	return algs
}
