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

	sets [2]*ruleSet // the endpoint's limits, then the group budget
}

// Match returns the limits that apply to r. appPattern is the pattern of
// the application's router that r matches, such as "GET /users/{id}", or ""
// when unknown. It becomes the endpoint of requests that no configured
// route matches, so it must come from the router, never from the raw path.
func (p *Policy) Match(r *http.Request, appPattern string) Match {
	if r.URL == nil {
		return Match{Limited: true, Endpoint: CatchAllEndpoint, Cost: 1, sets: [2]*ruleSet{p.defaults}}
	}
	if p.exclude.match(r) != "" {
		return Match{}
	}
	if p.include != nil && p.include.match(r) == "" {
		return Match{}
	}

	if pattern := p.routes.match(r); pattern != "" {
		rt := p.byRoute[pattern]
		m := Match{Limited: true, Endpoint: rt.pattern, Cost: rt.cost, CostFunc: rt.costFunc}
		m.sets[0] = rt.limits
		if rt.group != nil {
			m.sets[1] = rt.group.budget
		}
		return m
	}

	if g := p.group(r.URL.Path); g != nil {
		m := Match{Limited: true, Endpoint: appPattern, Cost: g.cost, sets: [2]*ruleSet{g.limits, g.budget}}
		if m.Endpoint == "" {
			m.Endpoint = g.prefix + "/*"
		}
		return m
	}

	m := Match{Limited: true, Endpoint: appPattern, Cost: 1, sets: [2]*ruleSet{p.defaults}}
	if m.Endpoint == "" {
		m.Endpoint = CatchAllEndpoint
	}
	return m
}

// group returns the group with the longest prefix that covers the path.
func (p *Policy) group(rawPath string) *group {
	if len(p.groups) == 0 {
		return nil
	}
	clean := cleanPath(rawPath)
	for _, g := range p.groups {
		if underPrefix(clean, g.prefix) {
			return g
		}
	}
	return nil
}

// Policy returns the name of the rule set that applies to the endpoint,
// such as "default".
func (m Match) Policy() string {
	switch {
	case m.sets[0] == nil:
		return ""
	case m.sets[0].policy == "":
		return m.Endpoint
	}
	return m.sets[0].policy
}

// AppendChecks appends the checks of the match to dst for the given client
// identity and returns the extended slice. Checks in the user scope carry
// the client; endpoint-wide checks do not.
func (m Match) AppendChecks(dst []calm.Check, client string) []calm.Check {
	for _, s := range m.sets {
		if s == nil {
			continue
		}
		c := calm.Check{
			Scope:     s.scope,
			Policy:    s.policy,
			Endpoint:  s.keyPrefix + m.Endpoint,
			Rules:     s.rules,
			Algorithm: s.algorithm,
			Burst:     s.burst,
		}
		if s.policy == "" {
			c.Policy = m.Endpoint
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
	d := &Declared{
		limits:   b.ruleSet("limits", r.Limits, "", r.Name, r.Scope, r.Algorithm, r.Burst),
		cost:     b.cost("cost", r.Cost, 1),
		costFunc: r.CostFunc,
	}
	if d.limits != nil && r.CostFunc == nil {
		b.checkCapacity("cost", d.cost, d.limits)
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	d.limits.keyPrefix = declaredKeyPrefix
	return d, nil
}

// Match returns the match of a request to the declared route at endpoint,
// which must be a route pattern or a fixed name, never a raw path.
func (d *Declared) Match(endpoint string) Match {
	return Match{
		Limited:  true,
		Endpoint: endpoint,
		Cost:     d.cost,
		CostFunc: d.costFunc,
		sets:     [2]*ruleSet{d.limits},
	}
}
