package policy

import (
	"errors"
	"net/http"

	"github.com/calm-limiter/calm"
)

// Match is the outcome of matching one request. The zero value is a request
// that is not limited.
type Match struct {
	// Limited is false for excluded requests and for requests outside
	// Include.
	Limited bool
	// Endpoint is the endpoint part of the request's keys: a route pattern,
	// the application's pattern, a group's prefix followed by "/*", or
	// CatchAllEndpoint.
	Endpoint string
	// Cost is the configured cost of the request.
	Cost int64
	// CostFunc, when not nil, replaces Cost with a cost computed from the
	// request.
	CostFunc func(*http.Request) (int64, error)

	// sets are the rule sets to charge, each with the endpoint of its keys:
	// the limits of each matching route, each followed by its group budget.
	sets [2 * maxRoutes]matchSet
}

// matchSet is a rule set of a match and the endpoint of its keys.
type matchSet struct {
	limits   *ruleSet
	endpoint string
}

// add appends s with endpoint to m's sets, unless s is nil or the same
// keys are already there.
func (m *Match) add(s *ruleSet, endpoint string) {
	if s == nil {
		return
	}
	for i := range m.sets {
		ms := &m.sets[i]
		if ms.limits == nil {
			*ms = matchSet{limits: s, endpoint: endpoint}
			return
		}
		if ms.limits == s && (s.endpoint != "" || ms.endpoint == endpoint) {
			return
		}
	}
}

// Match returns the limits that apply to r. appPattern is the pattern of
// the application's router that r matches, such as "GET /users/{id}", or ""
// when unknown. It becomes the endpoint of requests that no configured
// route matches, so it must come from the router, never from the raw path.
func (p *Policy) Match(r *http.Request, appPattern string) Match {
	if r.URL == nil {
		m := Match{Limited: true, Endpoint: CatchAllEndpoint, Cost: 1}
		m.add(p.defaults, m.Endpoint)
		return m
	}
	// Exclusion looks at the raw path alone, so that a variant of an
	// excluded path is limited rather than let through.
	if p.exclude.match(r) != "" {
		return Match{}
	}
	v := p.variantsOf(r)
	if p.include != nil && !p.included(r, v) {
		return Match{}
	}

	if routes := p.matchRoutes(r, v); routes[0] != nil {
		return routesMatch(&routes)
	}

	if g := p.groupOf(r, v); g != nil {
		m := Match{Limited: true, Endpoint: appPattern, Cost: g.cost}
		if m.Endpoint == "" {
			m.Endpoint = g.prefix + "/*"
		}
		m.add(g.limits, m.Endpoint)
		m.add(g.budget, m.Endpoint)
		return m
	}

	m := Match{Limited: true, Endpoint: appPattern, Cost: 1}
	if m.Endpoint == "" {
		m.Endpoint = CatchAllEndpoint
	}
	m.add(p.defaults, m.Endpoint)
	return m
}

// routesMatch returns the match of a request that routes match, the first
// of them being the endpoint it is reported under.
//
// NOTE: when several routes match, the request costs the largest of their
// static costs, or what the first cost function returns.
func routesMatch(routes *routeList) Match {
	first := routes[0]
	m := Match{Limited: true, Endpoint: first.pattern, Cost: first.cost, CostFunc: first.costFunc}
	for _, rt := range routes {
		if rt == nil {
			break
		}
		m.add(rt.limits, rt.pattern)
		if rt.group != nil {
			m.add(rt.group.budget, rt.pattern)
		}
		m.Cost = max(m.Cost, rt.cost)
		if m.CostFunc == nil {
			m.CostFunc = rt.costFunc
		}
	}
	return m
}

// group returns the group with the longest prefix that covers the path,
// comparing in lower case when folded is true.
func (p *Policy) group(rawPath string, folded bool) *group {
	if len(p.groups) == 0 {
		return nil
	}
	clean := cleanPath(rawPath)
	for _, g := range p.groups {
		prefix := g.prefix
		if folded {
			prefix = g.foldedPrefix
		}
		if underPrefix(clean, prefix) {
			return g
		}
	}
	return nil
}

// Policy returns the name of the rule set that applies to the endpoint,
// such as "default".
func (m Match) Policy() string {
	first := m.sets[0]
	switch {
	case first.limits == nil:
		return ""
	case first.limits.policy == "":
		return first.endpoint
	}
	return first.limits.policy
}

// AppendChecks appends the checks of the match to dst for the given client
// identity and returns the extended slice. Checks in the user scope carry
// the client; endpoint-wide checks do not.
func (m Match) AppendChecks(dst []calm.Check, client string) []calm.Check {
	for _, ms := range m.sets {
		s := ms.limits
		if s == nil {
			break
		}
		c := calm.Check{
			Scope:     s.scope,
			Policy:    s.policy,
			Endpoint:  s.keyPrefix + ms.endpoint,
			Rules:     s.rules,
			Algorithm: s.algorithm,
			Burst:     s.burst,
			Delay:     s.delay,
			MaxWait:   s.maxWait,
		}
		if s.policy == "" {
			c.Policy = ms.endpoint
		}
		if s.endpoint != "" {
			c.Endpoint = s.endpoint
		}
		if s.scope == calm.ScopeUser {
			c.Client = client
		}
		dst = append(dst, c)
	}
	return dst
}

// declaredKeyPrefix starts the key endpoint of declared routes.
const declaredKeyPrefix = "declared "

// Declared is a Route declared in code next to its handler, such as by a
// per-route wrapper, whose endpoint is known only per request. It is
// immutable and safe for concurrent use.
type Declared struct {
	limits   *ruleSet
	cost     int64
	costFunc func(*http.Request) (int64, error)
}

// Declare compiles r without a pattern: r.Pattern is ignored and r.Limits
// must not be empty. An empty r.Name makes each request's endpoint the
// policy name.
func Declare(r Route) (*Declared, error) {
	b := builder{p: &Policy{}}
	if len(r.Limits) == 0 {
		b.fail("limits", errors.New("no limits: give rules such as 5/minute"))
	}
	if r.Name != "" {
		b.name("name", r.Name, "")
	}
	d := &Declared{cost: b.cost("cost", r.Cost, 1), costFunc: r.CostFunc}
	errsBefore := len(b.errs)
	d.limits = b.withBurst("burst", r.Burst,
		b.ruleSet("limits", r.Limits, "", r.Name, r.Scope, r.Algorithm))
	if d.limits != nil && r.CostFunc == nil && len(b.errs) == errsBefore {
		b.checkCapacity("cost", d.cost, d.limits)
	}
	d.limits = b.withQueue("", r.Delay, r.MaxWait, d.limits)
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	d.limits.keyPrefix = declaredKeyPrefix
	return d, nil
}

// Match returns the match of a request to the declared route at endpoint,
// which must be a route pattern or a fixed name, never a raw path.
func (d *Declared) Match(endpoint string) Match {
	m := Match{
		Limited:  true,
		Endpoint: endpoint,
		Cost:     d.cost,
		CostFunc: d.costFunc,
	}
	m.add(d.limits, endpoint)
	return m
}
