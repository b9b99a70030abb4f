package identity

import (
	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Bounds of Config.NetworkMultiplier and RATELIMIT_FP_NETWORK_MULTIPLIER.
const (
	DefaultNetworkMultiplier = 4
	MaxNetworkMultiplier     = 1000
)

// PolicyNetwork is the policy name of the per-network checks that
// RewriteChecks adds next to fingerprint-keyed checks.
const PolicyNetwork = "network"

// networkClientPrefix keeps the client key of the per-network check apart
// from Identity.NetworkKey. Checks keyed by NetworkKey on the same
// endpoint, such as the anonymous rules of a tiered route, thus never share
// a bucket with it.
const networkClientPrefix = "network:"

// clientChosen reports whether the fingerprint contains a part that the
// client sets freely, so that one client could change it to get a new
// bucket. The unverified credential counts only when it is read at all.
func (c Components) clientChosen(allowUnverified bool) bool {
	return c.UserAgent || c.AcceptLanguage || c.AcceptEncoding || c.HeadersHash ||
		c.HeaderOrder || c.TLS || (c.Auth && allowUnverified)
}

// appendNetworkChecks appends a per-network check for each per-client
// check keyed by the fingerprint of an anonymous client, and returns the
// extended slice.
//
// Fingerprint parts other than the address are chosen by the client, so
// they may split a network's budget between the users behind it but must
// not multiply it without bound. The added check counts the same rules
// times the network multiplier per client network, on the same endpoint
// under PolicyNetwork. Its BaseRules are the policy's rules, so that the
// endpoint layer of package defense derives from the policy and not from
// the multiplied rules. Verified clients, checks keyed by something other
// than the fingerprint, and clients without a known address get none.
func (res *Resolver) appendNetworkChecks(id *Identity, checks []calm.Check) []calm.Check {
	if !res.fanOutBounded || id.Verified || !id.Network.IsValid() {
		return checks
	}
	client := ""
	for i, n := 0, len(checks); i < n; i++ {
		c := checks[i]
		if c.Scope != calm.ScopeUser || c.Client != id.Key || len(c.Rules) == 0 {
			continue
		}
		if client == "" {
			client = networkClientPrefix + id.NetworkKey
		}
		base := c.BaseRules
		if base == nil {
			base = c.Rules
		}
		// NOTE: an explicit Burst stays one client's for the whole
		// network. Scaling it would also scale the burst of the endpoint
		// layer that package defense derives from the user checks.
		network := calm.Check{
			Scope:     calm.ScopeUser,
			Policy:    PolicyNetwork,
			Endpoint:  c.Endpoint,
			Client:    client,
			Rules:     multiplyRules(c.Rules, res.networkMultiplier),
			BaseRules: base,
			Algorithm: c.Algorithm,
			Burst:     c.Burst,
			MaxWait:   c.MaxWait,
		}
		// The budget counts every client of one address, so it denies when
		// full and never holds a request: users behind one NAT do not queue
		// behind each other.
		network.Delay = network.NoDelay()
		checks = append(checks, network)
	}
	return checks
}

// multiplyRules returns rules with every request count times n. Each count
// is capped so that the rule stays valid for every algorithm. With n = 1
// it returns rules itself, which callers never modify.
func multiplyRules(rules []calm.Rule, n int64) []calm.Rule {
	if n == 1 {
		return rules
	}
	out := make([]calm.Rule, len(rules))
	for i, r := range rules {
		limit := (algorithm.MaxProduct - 1) / max(r.Window.Microseconds(), 1)
		if r.Requests > limit/n {
			r.Requests = limit
		} else {
			r.Requests *= n
		}
		out[i] = r
	}
	return out
}
