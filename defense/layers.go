package defense

import (
	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Policy names of the checks that Checks adds, as reported in headers.
const (
	EndpointPolicy = "endpoint"
	GlobalPolicy   = "global"
)

// Checks appends to dst the request's user checks followed by the endpoint
// and global layers, ready for one calm.Limiter.Allow call, and returns the
// extended slice. The caller's checks and rules are never modified.
//
// Each distinct endpoint among the user-scope checks gets one endpoint
// check: its explicit EndpointRules, or else, for each window, the largest
// per-client rule of that window times EndpointMultiplier. User checks
// without an endpoint add no endpoint check. The global check uses
// GlobalRules. A layer that user already contains (a check of scope
// endpoint for the same endpoint, or any check of scope global) is not
// added again. When v.Reduced is set, every rule shrinks by the reduction
// factor, and never below one request.
func (d *Defense) Checks(dst, user []calm.Check, v Verdict) []calm.Check {
	start := len(dst)
	hasGlobal := false
	for _, c := range user {
		if v.Reduced {
			c.Rules, c.Burst, c.Delay = d.reduceRules(c.Rules), d.reduce(c.Burst), d.reduce(c.Delay)
		}
		hasGlobal = hasGlobal || c.Scope == calm.ScopeGlobal
		dst = append(dst, c)
	}
	for i, c := range user {
		if c.Scope != calm.ScopeUser || c.Endpoint == "" || hasEndpoint(dst[start:], c.Endpoint) {
			continue
		}
		ec, ok := d.endpointCheck(c, user[i:])
		if !ok {
			continue
		}
		if v.Reduced {
			ec.Rules, ec.Burst = d.reduceRules(ec.Rules), d.reduce(ec.Burst)
		}
		// The endpoint layer counts every client of the endpoint, so it
		// denies when full and never holds a request.
		ec.Delay = ec.NoDelay()
		dst = append(dst, ec)
	}
	if !hasGlobal && len(d.global) > 0 {
		rules := d.global
		if v.Reduced {
			rules = d.reduceRules(rules)
		}
		global := calm.Check{Scope: calm.ScopeGlobal, Policy: GlobalPolicy, Rules: rules}
		global.Delay = global.NoDelay()
		dst = append(dst, global)
	}
	return dst
}

func hasEndpoint(checks []calm.Check, endpoint string) bool {
	for _, c := range checks {
		if c.Scope == calm.ScopeEndpoint && c.Endpoint == endpoint {
			return true
		}
	}
	return false
}

// endpointCheck builds the endpoint layer for first.Endpoint from the
// explicit rules, or from the user checks in rest (which starts with first)
// that name the same endpoint: their BaseRules where a tier or identity
// rewrote their rules, so the layer does not depend on who asks.
func (d *Defense) endpointCheck(first calm.Check, rest []calm.Check) (calm.Check, bool) {
	ec := calm.Check{
		Scope:     calm.ScopeEndpoint,
		Policy:    EndpointPolicy,
		Endpoint:  first.Endpoint,
		Algorithm: first.Algorithm,
	}
	if rules, ok := d.cfg.EndpointRules[first.Endpoint]; ok {
		ec.Rules = rules
		return ec, true
	}
	if d.cfg.EndpointMultiplier < 0 {
		return ec, false
	}
	for _, c := range rest {
		if c.Scope != calm.ScopeUser || c.Endpoint != first.Endpoint {
			continue
		}
		rules := c.Rules
		if c.BaseRules != nil {
			rules = c.BaseRules
		}
		for _, r := range rules {
			ec.Rules = widest(ec.Rules, multiply(r, d.cfg.EndpointMultiplier))
		}
		ec.Burst = max(ec.Burst, multiplyCount(c.Burst, d.cfg.EndpointMultiplier, maxBurst(ec.Rules)))
	}
	return ec, len(ec.Rules) > 0
}

// widest adds r to rules, keeping one rule per window: the larger. Two rules
// of one window would share one store key.
func widest(rules []calm.Rule, r calm.Rule) []calm.Rule {
	for i := range rules {
		if rules[i].Window == r.Window {
			rules[i].Requests = max(rules[i].Requests, r.Requests)
			return rules
		}
	}
	return append(rules, r)
}

// multiply returns r with its request count times n, capped so that the
// rule stays valid for every algorithm.
func multiply(r calm.Rule, n int64) calm.Rule {
	r.Requests = multiplyCount(r.Requests, n, maxRequests(r))
	return r
}

func multiplyCount(count, n, limit int64) int64 {
	if count <= 0 {
		return count
	}
	if count > limit/n {
		return limit
	}
	return count * n
}

// maxRequests returns the largest request count that a rule of r's window
// may carry.
func maxRequests(r calm.Rule) int64 {
	return algorithm.MaxProduct / max(r.Window.Microseconds(), 1)
}

// maxBurst returns the largest burst that every rule in rules can carry.
func maxBurst(rules []calm.Rule) int64 {
	limit := int64(algorithm.MaxProduct)
	for _, r := range rules {
		limit = min(limit, maxRequests(r))
	}
	return limit
}

// reduceRules returns a copy of rules with every request count reduced.
func (d *Defense) reduceRules(rules []calm.Rule) []calm.Rule {
	out := make([]calm.Rule, len(rules))
	for i, r := range rules {
		r.Requests = d.reduce(r.Requests)
		out[i] = r
	}
	return out
}

// reduce returns n times the reduction factor, at least 1; zero stays zero.
func (d *Defense) reduce(n int64) int64 {
	if n <= 0 {
		return n
	}
	const million = 1000000
	reduced := n/million*d.factor + n%million*d.factor/million
	return max(reduced, 1)
}
