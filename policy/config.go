// Package policy decides which rate limits apply to an HTTP request.
//
// A Config is the plain data model of a policy file: default limits,
// excluded and included paths, per-route limits and route groups. New
// validates a Config and compiles it into a Policy, which matches requests
// to rule sets and builds the calm.Check values a calm.Limiter applies.
//
// Routes and paths are written as Go 1.22 net/http.ServeMux patterns, such
// as "POST /auth/login", "GET /users/{id}" or "/static/". A Policy matches
// them with a ServeMux of its own, so precedence, wildcards, method
// matching (GET also matches HEAD) and path cleaning work exactly as in the
// application's router.
//
// How the limits of a request are chosen:
//
//   - A request that matches an Exclude pattern, or no Include pattern when
//     Include is set, is not limited.
//   - A request that matches a route gets the route's limits; a route
//     without limits gets its group's limits, or the default limits.
//   - Any other request inside a group's prefix gets the group's limits (or
//     the default limits when the group sets none).
//   - Any other request gets the default limits.
//   - A group's Budget is charged in addition by every request inside the
//     group, as one budget per client shared by all of the group's
//     endpoints.
//
// Limits count per client and per endpoint. The endpoint is the matching
// route's pattern, else the application's route pattern (when the caller
// knows it), else the group's prefix, else a catch-all. It never comes from
// the raw request path, so the number of keys per client stays bounded.
//
// Routes, groups and Include also match variants of the path that an
// application behind a proxy may serve as the same resource. The variants
// read "%2F", "%5C" and backslashes as slashes and "%2E" as a dot, drop ";"
// parameters and a trailing slash, and with Config.FoldCase are in lower
// case. A request is limited by every route that its path or one of these forms
// matches, except that a route written for the trailing-slash form, such as
// "GET /a/" next to "GET /a", alone limits that form. Exclude matches the
// path as it is, so a variant of an excluded path is limited.
package policy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// DefaultLimits are the limits used when Config.DefaultLimits is empty.
const DefaultLimits = "100/minute,1000/hour"

// DefaultExclude lists the paths that are never limited when
// Config.Exclude is nil: health checks and metrics scrapes.
var DefaultExclude = []string{"/healthz", "/readyz", "/metrics"}

// Config is the policy model that a configuration file decodes into. The
// zero value limits every request except DefaultExclude with
// DefaultLimits.
type Config struct {
	// DefaultLimits are the rules for requests that no route or group
	// covers, reported as policy "default". Each entry is a rule such as
	// "100/minute" or a comma-separated list of rules. Empty means
	// DefaultLimits.
	DefaultLimits []string `yaml:"default_limits" json:"default_limits"`

	// Exclude lists ServeMux patterns that are never limited. Nil means
	// DefaultExclude; an empty, non-nil list excludes nothing.
	Exclude []string `yaml:"exclude" json:"exclude"`

	// Include, when not empty, limits only requests that match one of its
	// ServeMux patterns. Exclude takes precedence over Include.
	Include []string `yaml:"include" json:"include"`

	// Routes sets limits for single endpoints outside any group.
	Routes []Route `yaml:"routes" json:"routes"`

	// Groups sets limits for path prefixes such as "/auth".
	Groups []Group `yaml:"groups" json:"groups"`

	// FoldCase also limits a request by the routes, include patterns and
	// groups that its path matches when ASCII letter case is ignored, for
	// applications that ignore case, so "/API/test" counts against
	// "GET /api/test" too. Default false: matching is case-sensitive, as
	// in ServeMux. The gateway sets it from RATELIMIT_PROXY_FOLD_CASE.
	FoldCase bool `yaml:"-" json:"-"`

	// DefaultAlgorithm is the algorithm of the rules that name none: the
	// Limiter's calm.Config.Algorithm. New uses it to check each cost and
	// burst against the capacity that algorithm really has, and rejects a
	// burst under a window algorithm, which ignores it. Nil means unknown:
	// New then accepts a burst without an algorithm and counts the larger
	// of burst and request count as the capacity. The gateway sets it from
	// RATELIMIT_ALGORITHM.
	DefaultAlgorithm *algorithm.Kind `yaml:"-" json:"-"`
}

// Route sets the limits and cost of the requests that match one ServeMux
// pattern.
type Route struct {
	// Pattern is a ServeMux pattern such as "POST /auth/login" or
	// "GET /users/{id}". Required. It is also the endpoint part of the
	// route's keys.
	Pattern string `yaml:"pattern" json:"pattern"`

	// Name is the policy name reported in X-RateLimit-Policy and in the
	// RateLimit-Policy field. Default: the pattern when the route has its
	// own Limits, else the name of the limits it inherits.
	Name string `yaml:"name" json:"name"`

	// Limits are the route's rules, such as ["3/minute", "10/hour"]. Empty
	// means the group's limits, or the default limits outside a group.
	Limits []string `yaml:"limits" json:"limits"`

	// Cost is how many units one request consumes. Nil means the group's
	// cost, or 1. Zero makes requests free: they are reported but charge
	// nothing.
	Cost *int64 `yaml:"cost" json:"cost"`

	// CostFunc, when set, computes the cost from the request and overrides
	// Cost. It cannot come from a file. A negative cost or an error rejects
	// the request without charging anything.
	CostFunc func(*http.Request) (int64, error) `yaml:"-" json:"-"`

	// Scope is "user" (the default: each client has its own budget) or
	// "endpoint" (one budget shared by every client).
	Scope string `yaml:"scope" json:"scope"`

	// Algorithm overrides the limiter's algorithm for this route, such as
	// "token_bucket". Empty means the group's algorithm or the limiter's.
	Algorithm string `yaml:"algorithm" json:"algorithm"`

	// Burst overrides the capacity of the token_bucket, leaky_bucket,
	// leaky_queue and gcra algorithms: the largest cost that may pass at
	// once. Zero means the rule's request count. The window algorithms
	// ignore a burst, so New rejects one on a route that they decide.
	Burst int64 `yaml:"burst" json:"burst"`

	// Delay applies to the leaky_queue algorithm only: how many requests
	// beyond the rate pass without waiting for their turn, as nginx
	// limit_req's delay=. Zero holds every request beyond the rate until
	// its turn. A delay equal to the capacity (Burst, else the rule's
	// request count) holds none, as nginx's nodelay. New rejects a delay
	// that is negative, above the capacity or on another algorithm.
	Delay int64 `yaml:"delay" json:"delay"`

	// MaxWait applies to the leaky_queue algorithm only: the longest a
	// request waits for its turn, written as a Go duration such as "2s" or
	// "500ms", or a whole number of seconds, from 1ms to MaxWaitLimit. A
	// request that would wait longer is denied at once and charged
	// nothing. Empty means the limiter's default: httplimit.Config.MaxWait,
	// RATELIMIT_MAX_WAIT in the gateway.
	MaxWait string `yaml:"max_wait" json:"max_wait"`
}

// Group sets limits for every request under a path prefix, with optional
// per-route overrides.
type Group struct {
	// Prefix is a path such as "/auth". It covers the path itself and
	// every path below it. Required.
	Prefix string `yaml:"prefix" json:"prefix"`

	// Name is the policy name of the group's limits. Default: the prefix.
	Name string `yaml:"name" json:"name"`

	// Limits are the default rules for each endpoint of the group. Empty
	// means the default limits.
	Limits []string `yaml:"limits" json:"limits"`

	// Budget, when set, holds rules for one budget per client shared by
	// every endpoint of the group. It is charged in addition to each
	// endpoint's own limits, so "100/minute" buys 100 requests of cost 1
	// or 10 of cost 10 across the group. Its policy name is Name followed
	// by "-budget".
	Budget []string `yaml:"budget" json:"budget"`

	// Cost is the default cost of the group's requests. Nil means 1.
	Cost *int64 `yaml:"cost" json:"cost"`

	// Scope is "user" (default) or "endpoint", as in Route.
	Scope string `yaml:"scope" json:"scope"`

	// Algorithm overrides the limiter's algorithm for the group.
	Algorithm string `yaml:"algorithm" json:"algorithm"`

	// Routes overrides the limits of single endpoints inside the group.
	// Each pattern's path must lie under Prefix.
	Routes []Route `yaml:"routes" json:"routes"`
}

// Validate reports every invalid setting of c, one per line. Each error
// names the setting, the bad value and what to write instead. It checks
// patterns against each other too, which is what New needs to succeed.
func (c Config) Validate() error {
	_, err := New(c)
	return err
}

// maxPolicyName bounds policy names, which travel in every response.
const maxPolicyName = 64

// ParseLimits parses a list of rule entries, each a rule or a
// comma-separated list of rules, into one list of rules.
func ParseLimits(entries []string) ([]calm.Rule, error) {
	var rules []calm.Rule
	for _, e := range entries {
		rs, err := calm.ParseRules(e)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rs...)
	}
	return rules, nil
}

// ParseScope parses a configured scope: "" and "user" mean calm.ScopeUser,
// "endpoint" means calm.ScopeEndpoint.
func ParseScope(s string) (calm.Scope, error) {
	switch s {
	case "", string(calm.ScopeUser):
		return calm.ScopeUser, nil
	case string(calm.ScopeEndpoint):
		return calm.ScopeEndpoint, nil
	}
	return "", fmt.Errorf("unknown scope %q: use user or endpoint", s)
}

// ValidateName reports whether name can be sent as a policy name: printable
// ASCII without quotes or backslashes, at most 64 characters.
func ValidateName(name string) error {
	if len(name) > maxPolicyName {
		return fmt.Errorf("name %.64q... is longer than %d characters", name, maxPolicyName)
	}
	for i := 0; i < len(name); i++ {
		if ch := name[i]; ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' {
			return fmt.Errorf("name %q contains %q: use printable ASCII without quotes or backslashes", name, ch)
		}
	}
	return nil
}

// ValidateCost reports whether a configured cost is usable.
func ValidateCost(cost int64) error {
	if cost < 0 {
		return fmt.Errorf("cost %d is negative: use 0 for free requests or a positive number", cost)
	}
	return nil
}

// parseAlgorithm parses an optional algorithm name.
func parseAlgorithm(s string) (*algorithm.Kind, error) {
	if s == "" {
		return nil, nil
	}
	k, err := algorithm.ParseKind(s)
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// normalizePrefix checks a group prefix and drops a trailing slash.
func normalizePrefix(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("prefix is missing: set a path such as /auth")
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("prefix %q must start with /", p)
	case strings.ContainsAny(p, "{} \t\r\n?#"):
		return "", fmt.Errorf("prefix %q must be a plain path without wildcards, spaces or a query", p)
	}
	if cleaned := cleanPath(p); cleaned != p && cleaned != p+"/" && cleaned+"/" != p {
		return "", fmt.Errorf("prefix %q is not a clean path: use %q", p, cleaned)
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "", errors.New(`prefix "/" covers every path: use default_limits instead`)
	}
	return p, nil
}
