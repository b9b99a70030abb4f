package defense

import (
	"time"

	"github.com/calm-limiter/calm"
)

// Verdict is the circuit breaker's decision for one request.
type Verdict struct {
	// Allowed reports whether the request may go on to the rate-limit
	// layers. When false, answer with 420 (or 429), X-RateLimit-Scope
	// "global" and Retry-After.
	Allowed bool
	// State is the breaker state this server saw.
	State State
	// Mode is the configured mode.
	Mode Mode
	// Reduced reports that Checks shrinks every limit by the reduction
	// factor (Adaptive mode while the circuit is not closed).
	Reduced bool
	// ChallengeRequired reports that the client must solve a challenge
	// before it may pass (Challenge mode).
	ChallengeRequired bool
	// Bypass reports that the client passed through the bypass permission.
	Bypass bool
	// KnownGood reports that the client passed as a known-good client
	// (Lockdown mode).
	KnownGood bool
	// Probe reports that the request is one of the half-open probes.
	Probe bool
	// RetryAfter is when a denied client may try again: the time until this
	// server probes, or the recovery time while the open is forced. Zero
	// when allowed.
	RetryAfter time.Duration
}

// Reason returns a stable name for why the verdict denies, for logs and
// response bodies: "circuit_open" or "challenge_required". It returns
// "allowed" for an allowing verdict.
func (v Verdict) Reason() string {
	switch {
	case v.Allowed:
		return "allowed"
	case v.ChallengeRequired:
		return "challenge_required"
	}
	return "circuit_open"
}

// Admit counts the arrival of a request and decides whether the circuit
// breaker lets it through. It never blocks on the network: the state it
// reads is this server's copy, refreshed every SyncInterval and on every
// published change. Call it once per request, before the rate-limit layers.
func (d *Defense) Admit(req Request) Verdict {
	if d.cfg.Mode == Disabled {
		return Verdict{Allowed: true, Mode: Disabled}
	}
	d.pending.Add(1)
	v := d.view.Load()
	if v.state == Closed {
		return Verdict{Allowed: true, State: Closed, Mode: d.cfg.Mode}
	}

	now := d.now()
	if v.state == Open && !v.reopenAt.IsZero() && !now.Before(v.reopenAt) {
		v = d.enterHalfOpen(v, now)
	}
	switch v.state {
	case Closed:
		return Verdict{Allowed: true, State: Closed, Mode: d.cfg.Mode}
	case HalfOpen:
		if d.probes.Add(-1) >= 0 {
			return Verdict{Allowed: true, State: HalfOpen, Mode: d.cfg.Mode, Probe: true}
		}
	}
	return d.decideOpen(req, v, now)
}

// decideOpen applies the mode to a request that arrived while the circuit
// is open, or half-open with no probe left.
func (d *Defense) decideOpen(req Request, v *view, now time.Time) Verdict {
	verdict := Verdict{State: v.state, Mode: d.cfg.Mode}
	if req.Permissions != nil && req.Permissions.HasPermission(BypassPermission) {
		verdict.Allowed, verdict.Bypass = true, true
		return verdict
	}
	switch d.cfg.Mode {
	case Adaptive:
		verdict.Allowed, verdict.Reduced = true, true
		return verdict
	case Lockdown:
		if d.cfg.AllowKnownGood && req.Identity != "" &&
			d.knownGood.check(req.Identity, v.toLocal(v.snap.TripTime), now) {
			verdict.Allowed, verdict.KnownGood = true, true
			return verdict
		}
	case Challenge:
		if req.ChallengeSolved {
			verdict.Allowed = true
			return verdict
		}
		verdict.ChallengeRequired = true
	}
	verdict.RetryAfter = d.retryAfter(v, now)
	return verdict
}

// retryAfter returns the time until v probes, at least one second.
func (d *Defense) retryAfter(v *view, now time.Time) time.Duration {
	wait := d.cfg.RecoveryTime
	switch {
	case v.state == HalfOpen:
		wait = d.cfg.ProbeWindow - now.Sub(v.halfOpenAt)
	case !v.reopenAt.IsZero():
		wait = v.reopenAt.Sub(now)
	}
	return max(wait.Round(time.Second), time.Second)
}

// Observe records the outcome of the rate-limit layers for a request, which
// decides who is known-good in Lockdown mode: an allowed request of a
// verified identity counts as history, and a denial by the user layer as a
// violation. Requests without an Identity are ignored.
func (d *Defense) Observe(req Request, res calm.Result) {
	if req.Identity == "" || !d.tracksKnownGood() {
		return
	}
	now := d.now()
	if res.Allowed {
		d.knownGood.allowed(req.Identity, now)
		return
	}
	if res.Scope == calm.ScopeUser {
		d.knownGood.violated(req.Identity, now)
	}
}
