package defense

import (
	"net/http"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/identity"
)

// CircuitPolicy is the policy name of a denial by the circuit breaker, as
// reported in headers and the violation log.
const CircuitPolicy = "circuit"

// HeaderChallenge is set to "required" on answers that deny a request
// until the client solves a challenge (Challenge mode).
const HeaderChallenge = "X-RateLimit-Challenge"

// HTTP connects a Defense to httplimit.Config.Defense: every limited
// request passes the circuit breaker and gets the endpoint and global
// layers. It is safe for concurrent use.
type HTTP struct {
	Defense *Defense
	// Identify describes a request to the breaker. Nil reads the verified
	// identity that package identity stores in the request context: its
	// keyed client hash as Identity and its permissions. A challenge
	// implementation sets Request.ChallengeSolved here.
	Identify func(r *http.Request) Request
}

// Admit passes r through the circuit breaker and returns checks extended
// with the layers, or the denial to answer.
func (h HTTP) Admit(w http.ResponseWriter, r *http.Request, checks []calm.Check) (
	[]calm.Check, calm.Result, bool) {
	v := h.Defense.Admit(h.request(r))
	if !v.Allowed {
		if v.ChallengeRequired && w != nil {
			w.Header().Set(HeaderChallenge, "required")
		}
		return checks, h.Defense.Denial(v), false
	}
	// The layers go after the caller's checks in the same array, which
	// leaves the caller's elements unchanged.
	return h.Defense.Checks(checks[len(checks):], checks, v), calm.Result{}, true
}

// Observe records the layers' result for known-good decisions.
func (h HTTP) Observe(r *http.Request, res calm.Result) {
	if !h.Defense.tracksKnownGood() {
		return
	}
	h.Defense.Observe(h.request(r), res)
}

func (h HTTP) request(r *http.Request) Request {
	if h.Identify != nil {
		return h.Identify(r)
	}
	id, ok := identity.FromContext(r.Context())
	if !ok || !id.Verified {
		return Request{}
	}
	return Request{Identity: id.Key, Permissions: id}
}

// Denial returns the Result that answers a request v denies: scope global,
// policy "circuit", and Retry-After until this server probes again. The
// limit it reports is the breaker's threshold per window.
func (d *Defense) Denial(v Verdict) calm.Result {
	rule := calm.Rule{Requests: max(d.params.threshold, 1), Window: d.cfg.Window}
	return calm.Result{
		Reason:     algorithm.ReasonLimited,
		Limit:      rule.Requests,
		ResetAfter: v.RetryAfter,
		RetryAfter: v.RetryAfter,
		Policy:     CircuitPolicy,
		Scope:      calm.ScopeGlobal,
		Rule:       rule,
		Quotas: []calm.Quota{{
			Policy: CircuitPolicy, Scope: calm.ScopeGlobal, Rule: rule, ResetAfter: v.RetryAfter,
		}},
	}
}

// tracksKnownGood reports whether Observe records anything.
func (d *Defense) tracksKnownGood() bool {
	return d.cfg.AllowKnownGood && d.cfg.Mode == Lockdown
}
