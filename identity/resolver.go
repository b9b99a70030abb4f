package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/calm-limiter/calm"
	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm/identity/jwtverify"
)

// DevelopmentSecret keys fingerprints and credential hashes when
// Config.Secret is empty. It is public, so production must set its own
// (RATELIMIT_FP_SECRET); CheckProduction enforces that.
var DevelopmentSecret = []byte("calm-development-fingerprint-secret")

// Defaults of Config.
const (
	DefaultTierClaim        = "tier"
	DefaultPermissionsClaim = "permissions"
	DefaultAPIKeyHeader     = "X-API-Key"
)

// Principal is an account that a credential check accepted.
type Principal struct {
	Subject     string
	Tier        string // raw tier name; unknown names fall back to the lowest tier
	Permissions []string
}

// APIKeyLookup finds the account of an API key by the SHA-256 of the key,
// in hexadecimal, so that implementations never hold raw keys.
type APIKeyLookup func(sha256Hex string) (Principal, bool)

// SessionLookup checks a session cookie value and returns its account.
// Implementations must compare secrets in constant time.
type SessionLookup func(ctx context.Context, value string) (Principal, bool)

// Config configures a Resolver. The zero value trusts no proxy, uses
// LevelNormal fingerprints with DevelopmentSecret, verifies no credential
// and treats every client as anonymous.
type Config struct {
	// ClientIP configures the client address behind proxies.
	ClientIP ClientIPConfig
	// Level and Custom choose the fingerprint parts; Custom applies only
	// at LevelCustom. The zero Level is LevelNormal.
	Level  Level
	Custom Components
	// Secret keys the fingerprint and credential hashes. Servers that share
	// a store must share it. Empty means DevelopmentSecret.
	Secret []byte
	// Verifier checks JWT bearer tokens. Nil means tokens are never
	// verified.
	Verifier *jwtverify.Verifier
	// TierClaim and PermissionsClaim name the claims read from verified
	// tokens. Defaults: "tier" and "permissions". The permissions claim is
	// an array of strings or one space-separated string.
	TierClaim        string
	PermissionsClaim string
	// Tiers maps verified tier names to rules. Nil means no tiers.
	Tiers *Tiers
	// NetworkMultiplier bounds the budget that fingerprint parts chosen by
	// the client can earn (RATELIMIT_FP_NETWORK_MULTIPLIER). When the
	// fingerprint has such a part, such as the User-Agent at LevelNormal,
	// RewriteChecks pairs each per-client check of an anonymous client with
	// a check of the same rules times NetworkMultiplier per client network.
	// One address then gets at most that many clients' budgets. Zero means
	// DefaultNetworkMultiplier, 1 gives a network one client's budget, and
	// a negative value turns the paired check off, which lets one client
	// multiply its budget by changing headers. The maximum is
	// MaxNetworkMultiplier.
	NetworkMultiplier int64
	// AnonymousRules, when set, apply to every limited request without a
	// verified identity, counted per client network
	// (RATELIMIT_ANONYMOUS_LIMIT).
	AnonymousRules []calm.Rule
	// AllowUnverified lets an unverified credential (the "sub" of a token
	// decoded without verification, or an unknown API key or session)
	// distinguish anonymous clients through the fingerprint's auth part. It
	// never grants a tier, a permission or the subject key.
	AllowUnverified bool
	// APIKeyHeader and APIKeyQuery name where API keys are read. Default
	// header: X-API-Key; the query parameter is off when empty, because
	// URLs end up in access logs.
	APIKeyHeader string
	APIKeyQuery  string
	// APIKeys verifies API keys. Nil means API keys are never verified.
	APIKeys APIKeyLookup
	// SessionCookie names the session cookie; empty turns sessions off.
	SessionCookie string
	// Sessions verifies session cookies. Nil means sessions are never
	// verified.
	Sessions SessionLookup
	// Logger receives debug lines about rejected credentials, never the
	// credentials themselves. Nil discards them.
	Logger *slog.Logger
}

// Resolver identifies clients. It is safe for concurrent use.
type Resolver struct {
	cfg Config
	ip  *ClientIPResolver
	fp  fingerprinter
	log *slog.Logger
	// fanOutBounded is true when the fingerprint has a part the client
	// chooses and the network multiplier is on.
	fanOutBounded     bool
	networkMultiplier int64
}

// New validates cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	ip, err := NewClientIPResolver(cfg.ClientIP)
	if err != nil {
		return nil, err
	}
	if cfg.Level == "" {
		cfg.Level = LevelNormal
	}
	if _, err := ParseLevel(string(cfg.Level)); err != nil {
		return nil, err
	}
	secret := cfg.Secret
	if len(secret) == 0 {
		secret = DevelopmentSecret
	}
	if cfg.TierClaim == "" {
		cfg.TierClaim = DefaultTierClaim
	}
	if cfg.PermissionsClaim == "" {
		cfg.PermissionsClaim = DefaultPermissionsClaim
	}
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = DefaultAPIKeyHeader
	}

	if cfg.NetworkMultiplier == 0 {
		cfg.NetworkMultiplier = DefaultNetworkMultiplier
	}
	if cfg.NetworkMultiplier > MaxNetworkMultiplier {
		return nil, fmt.Errorf("invalid network multiplier %d: use 1 to %d, or a negative "+
			"value to turn the per-network check off", cfg.NetworkMultiplier, MaxNetworkMultiplier)
	}

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	parts := ComponentsFor(cfg.Level, cfg.Custom)
	return &Resolver{
		cfg:               cfg,
		ip:                ip,
		fp:                fingerprinter{secret: secret, parts: parts},
		log:               log.With("component", "identity"),
		fanOutBounded:     cfg.NetworkMultiplier > 0 && parts.clientChosen(cfg.AllowUnverified),
		networkMultiplier: cfg.NetworkMultiplier,
	}, nil
}

// ClientIP returns the resolver's client address finder.
func (res *Resolver) ClientIP() *ClientIPResolver { return res.ip }

// Tiers returns the configured tiers, or nil.
func (res *Resolver) Tiers() *Tiers { return res.cfg.Tiers }

// Identify returns the identity of the client that sent r. A credential
// that fails verification makes the client anonymous.
func (res *Resolver) Identify(r *http.Request) Identity {
	var id Identity
	id.ClientIP = res.ip.ClientIP(r)
	id.Network = res.ip.Group(id.ClientIP)
	id.NetworkKey = res.networkKey(id.Network)

	unverified := res.verify(r, &id)
	if id.Verified {
		id.Key = res.fp.hash("sub:", "sub", id.Subject)
		return id
	}
	network := ""
	if id.Network.IsValid() {
		network = id.Network.String()
	}
	id.Key = res.fp.fingerprint(r, network, unverified)
	return id
}

// verify checks the credentials of r in order: bearer token, API key,
// session. On success it fills id. Otherwise, only with
// Config.AllowUnverified, it returns a keyed hash of the first unverified
// credential for the fingerprint's auth part.
func (res *Resolver) verify(r *http.Request, id *Identity) (unverified string) {
	if token := BearerToken(r); token != "" {
		if p, ok := res.verifyToken(token); ok {
			res.accept(id, MethodJWT, p)
			return ""
		}
		if res.cfg.AllowUnverified {
			unverified = res.unverifiedTokenKey(token)
		}
	}
	if key := apiKey(r, res.cfg.APIKeyHeader, res.cfg.APIKeyQuery); key != "" {
		if res.cfg.APIKeys != nil {
			sum := sha256.Sum256([]byte(key))
			if p, ok := res.cfg.APIKeys(hex.EncodeToString(sum[:])); ok && p.Subject != "" {
				res.accept(id, MethodAPIKey, p)
				return ""
			}
			res.log.Debug("unknown API key; client is anonymous")
		}
		if unverified == "" && res.cfg.AllowUnverified {
			unverified = res.hash("api_key", key)
		}
	}
	if value := sessionValue(r, res.cfg.SessionCookie); value != "" {
		if res.cfg.Sessions != nil {
			if p, ok := res.cfg.Sessions(r.Context(), value); ok && p.Subject != "" {
				res.accept(id, MethodSession, p)
				return ""
			}
		}
		if unverified == "" && res.cfg.AllowUnverified {
			unverified = res.hash("session", value)
		}
	}
	return unverified
}

func (res *Resolver) accept(id *Identity, m Method, p Principal) {
	id.Verified = true
	id.Method = m
	id.Subject = p.Subject
	id.Permissions = boundPermissions(p.Permissions)
	if res.cfg.Tiers != nil {
		id.Tier, _ = res.cfg.Tiers.Lookup(p.Tier)
	}
}

// verifyToken verifies a JWT and reads its subject, tier and permissions.
func (res *Resolver) verifyToken(token string) (Principal, bool) {
	if res.cfg.Verifier == nil {
		return Principal{}, false
	}
	claims, err := res.cfg.Verifier.Verify(token)
	if err != nil {
		res.log.Debug("rejected bearer token; client is anonymous", "err", errorClass(err))
		return Principal{}, false
	}
	sub, _ := claims["sub"].(string)
	if sub == "" || len(sub) > 256 {
		res.log.Debug("rejected bearer token without a usable sub claim; client is anonymous")
		return Principal{}, false
	}
	tier, _ := claims[res.cfg.TierClaim].(string)
	return Principal{Subject: sub, Tier: tier,
		Permissions: permissionsClaim(claims[res.cfg.PermissionsClaim])}, true
}

// errorClass returns the sentinel of a verification error, so that logs
// never carry token content that the parser may quote.
func errorClass(err error) error {
	for _, e := range []error{jwtverify.ErrTokenTooLong, jwtverify.ErrAlgorithmNotAllowed,
		jwtverify.ErrNoKey, jwtverify.ErrInvalidToken} {
		if errors.Is(err, e) {
			return e
		}
	}
	return jwtverify.ErrInvalidToken
}

// unverifiedTokenKey decodes a token without verifying it and returns a
// keyed hash of its subject (or of the whole token when it has none). It is
// used only when Config.AllowUnverified is set, and only in the
// fingerprint: nothing read here grants a tier or a permission.
func (res *Resolver) unverifiedTokenKey(token string) string {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err == nil {
		if sub, ok := claims["sub"].(string); ok && sub != "" && len(sub) <= 256 {
			return res.hash("unverified_sub", sub)
		}
	}
	return res.hash("token", token)
}

// Bounds on the permissions read from a credential.
const (
	maxPermissions      = 64
	maxPermissionLength = 128
)

// permissionsClaim reads an array of strings or a space-separated string.
func permissionsClaim(v any) []string {
	switch p := v.(type) {
	case string:
		return strings.Fields(p)
	case []any:
		out := make([]string, 0, len(p))
		for _, e := range p {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func boundPermissions(ps []string) []string {
	out := make([]string, 0, min(len(ps), maxPermissions))
	for _, p := range ps {
		if len(out) == maxPermissions {
			break
		}
		if p != "" && len(p) <= maxPermissionLength {
			out = append(out, p)
		}
	}
	return out
}

// hash returns the keyed hash of a value under a domain label, so that
// equal values of different kinds never share a hash.
func (res *Resolver) hash(label, value string) string {
	return res.fp.hash("", label, value)
}

func (res *Resolver) networkKey(p netip.Prefix) string {
	if !p.IsValid() {
		return "ip:unknown"
	}
	return res.fp.hash("ip:", "network", p.String())
}

// KeyFunc returns the client key for the httplimit middleware: Identity.Key
// of the identity in r's context, or of a fresh Identify.
func (res *Resolver) KeyFunc(r *http.Request) (string, error) {
	return res.identity(r).Key, nil
}

// identity returns the identity stored by Middleware, or identifies r.
// Callers must not modify what it returns.
func (res *Resolver) identity(r *http.Request) *Identity {
	if id, ok := r.Context().Value(contextKey{}).(*Identity); ok {
		return id
	}
	id := res.Identify(r)
	return &id
}

// Middleware identifies each request and stores the Identity in its
// context, where FromContext, KeyFunc, RewriteChecks and the circuit
// breaker read it. Put it outside the rate-limit middleware.
func (res *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := res.Identify(r)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// Policy names of the checks that RewriteChecks adds.
const (
	PolicyAnonymous  = "anonymous"
	TierPolicyPrefix = "tier-"
	// anonymousEndpoint is the endpoint of the per-network anonymous
	// budget that spans every endpoint.
	anonymousEndpoint = "anonymous"
)

// RewriteChecks adapts the checks a policy chose for r to the client's
// identity. On a tiered endpoint, the per-client checks take the tier's
// rules for verified clients, or the tier config's anonymous rules keyed by
// client network for anonymous ones. A per-client check that stays keyed
// by an anonymous client's fingerprint gets a per-network companion check
// (see Config.NetworkMultiplier). Anonymous clients also get
// Config.AnonymousRules as one budget per client network across every
// endpoint. Checks of other scopes pass unchanged.
func (res *Resolver) RewriteChecks(r *http.Request, checks []calm.Check) []calm.Check {
	id := res.identity(r)
	t := res.cfg.Tiers
	for i := range checks {
		c := &checks[i]
		if t == nil || c.Scope != calm.ScopeUser || !t.Applies(c.Endpoint) {
			continue
		}
		if c.BaseRules == nil {
			c.BaseRules = t.Widest(c.Rules)
		}
		switch {
		case id.Verified && id.Tier != "":
			c.Rules = t.Rules(id.Tier)
			c.Policy = TierPolicyPrefix + id.Tier
			c.Client = id.Key
		case !id.Verified && t.Anonymous() != nil:
			c.Rules = t.Anonymous()
			c.Policy = PolicyAnonymous
			c.Client = id.NetworkKey
		}
	}
	checks = res.appendNetworkChecks(id, checks)
	if !id.Verified && len(res.cfg.AnonymousRules) > 0 {
		checks = append(checks, calm.Check{
			Scope:    calm.ScopeUser,
			Policy:   PolicyAnonymous,
			Endpoint: anonymousEndpoint,
			Client:   id.NetworkKey,
			Rules:    res.cfg.AnonymousRules,
		})
	}
	return checks
}
