package identity

import (
	"context"
	"net/netip"
	"slices"
)

// Method names the credential that identified a client.
type Method string

// Credential methods. The zero value means no credential was accepted.
const (
	MethodNone    Method = ""
	MethodJWT     Method = "jwt"
	MethodAPIKey  Method = "api_key"
	MethodSession Method = "session"
)

// PermissionCircuitBypass lets a client pass an open circuit breaker. Only
// a verified identity can hold it.
const PermissionCircuitBypass = "circuit.bypass"

// Identity is who sent a request, as far as the server could verify.
// Values are immutable once built; FromContext returns a copy.
type Identity struct {
	// Verified is true when a credential was checked: a JWT with a valid
	// signature and claims, a known API key, or a session accepted by the
	// session check. Tier and Permissions are empty unless Verified.
	Verified bool
	// Method is the credential that verified the client, or MethodNone.
	Method Method
	// Subject is the verified account, such as the JWT "sub" claim. Empty
	// for anonymous clients. It may be logged only through a hash.
	Subject string
	// Tier is the verified tier name after fallback: a configured tier, the
	// lowest tier for an unknown or missing claim, or "" without tiers or
	// without verification.
	Tier string
	// Permissions are the verified permissions, such as "circuit.bypass".
	Permissions []string
	// ClientIP is the client address behind trusted proxies; the zero Addr
	// when unknown.
	ClientIP netip.Addr
	// Network is ClientIP grouped for rate limiting (IPv6 by prefix).
	Network netip.Prefix
	// Key identifies the client for rate limiting: a keyed hash of the
	// subject for verified clients, a keyed fingerprint otherwise. It never
	// contains a raw address, header or credential.
	Key string
	// NetworkKey is a keyed hash of Network, for per-IP rules that must not
	// depend on headers the client chooses.
	NetworkKey string
}

// HasPermission reports whether the identity is verified and holds the
// permission p. Unverified identities hold no permissions, whatever their
// credential claims.
func (id Identity) HasPermission(p string) bool {
	return id.Verified && slices.Contains(id.Permissions, p)
}

// Anonymous reports whether no credential was verified.
func (id Identity) Anonymous() bool { return !id.Verified }

type contextKey struct{}

// NewContext returns a copy of ctx that carries id.
func NewContext(ctx context.Context, id Identity) context.Context {
	id.Permissions = slices.Clone(id.Permissions)
	return context.WithValue(ctx, contextKey{}, &id)
}

// FromContext returns the identity stored in ctx by NewContext or
// Resolver.Middleware, and false when there is none.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	if !ok {
		return Identity{}, false
	}
	out := *id
	out.Permissions = slices.Clone(id.Permissions)
	return out, true
}

// CanBypassCircuit reports whether the request context carries a verified
// identity with PermissionCircuitBypass. The circuit breaker calls it to
// decide who passes while it is open.
func CanBypassCircuit(ctx context.Context) bool {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	return ok && id.HasPermission(PermissionCircuitBypass)
}
