// Package algorithm holds calm's rate-limiting decisions as pure functions.
//
// Each algorithm is a function of (state, now, limit, cost) that returns the
// next state and a decision. Nothing here does I/O, reads a clock or keeps
// state between calls: stores keep the state and supply the time.
//
// All arithmetic is on int64 integers in microseconds. The same math runs in
// Redis Lua scripts (see LuaSource), where numbers are IEEE doubles, so every
// intermediate value stays below 2^53. Limit.Validate enforces the bounds
// that make this true.
//
// # Guarantees
//
// For a limit of Quota q per Window w and capacity c (Burst, or q when
// Burst is zero), each algorithm admits at most these units in a span of
// d microseconds. Random traces test each bound and a greedy client reaches
// it. The last column is "100/minute" over any 60 s.
//
//	Kind           bound                                       100/minute
//	FixedWindow    q per aligned window, 2q for d = w          200
//	SlidingWindow  q per aligned window, q + ⌊q(w−2)/w⌋ for    199
//	               d = w
//	TokenBucket    c + ⌊(d−1)·q/w⌋                             199; 100 with Burst 1
//	LeakyBucket    as TokenBucket                              199
//	GCRA           as TokenBucket                              199; 100 with Burst 1
//	LeakyQueue     admits as GCRA; with Delay 0 and cost 1,    199 admitted,
//	               releases (now + Wait) at most q for d = w   100 released
//
// The buckets and GCRA keep fractional rates exact: 7 per 3 s admits
// exactly 7 in every 3 s window of steady traffic, for any length of time.
// docs/ALGORITHMS.md explains each bound and the choice between them.
package algorithm

import (
	"errors"
	"fmt"
)

// Kind names an algorithm. The zero value is SlidingWindow.
type Kind uint8

// The algorithms calm implements.
const (
	SlidingWindow Kind = iota // sliding window counter, weighted previous window
	FixedWindow
	TokenBucket
	LeakyBucket // meter: rejects when the bucket is full
	LeakyQueue  // leaky bucket as a queue: delays a request until it may pass
	GCRA
)

var kindNames = [...]string{
	SlidingWindow: "sliding_window",
	FixedWindow:   "fixed_window",
	TokenBucket:   "token_bucket",
	LeakyBucket:   "leaky_bucket",
	LeakyQueue:    "leaky_queue",
	GCRA:          "gcra",
}

// String returns the configuration name of k, such as "sliding_window".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("algorithm(%d)", uint8(k))
}

// ParseKind returns the Kind whose configuration name is s.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if name == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown algorithm %q: use sliding_window, fixed_window, token_bucket, leaky_bucket, leaky_queue or gcra", s)
}

// MaxProduct is the largest value that Quota × Window (and Burst × Window)
// may reach. It is 2^53, the largest integer below which IEEE doubles, and so
// the Lua twins of these functions, count exactly.
const MaxProduct = 1 << 53

// Bounds on the durations in a Limit, in microseconds. Every time value the
// algorithms compute is a timestamp plus a few such durations, so with Unix
// microseconds near 2^51 today these bounds keep all of them below 2^53.
// MinWindow also keeps the few sums of a product and a quota (such as
// Burst×Window + Quota) below 2^53.
const (
	MinWindow   = 1000    // 1 ms
	MaxDuration = 1 << 50 // about 35.7 years
)

// Limit is one rule in the units the algorithms work in.
type Limit struct {
	Quota  int64 // requests (or cost units) per Window; > 0
	Window int64 // window length in microseconds; MinWindow to MaxDuration
	// Burst is the bucket capacity for TokenBucket, LeakyBucket, LeakyQueue
	// and GCRA: the largest cost that may pass at once. Zero means Quota.
	// The window algorithms ignore it.
	Burst int64
	// Delay applies to LeakyQueue only: the first Delay units of excess are
	// served without waiting, as nginx limit_req's delay= parameter. Zero
	// means every excess request waits. A Delay at or above the capacity
	// means no request waits, as nginx's nodelay.
	Delay int64
	// MaxWait applies to LeakyQueue only: a request that would wait longer
	// than MaxWait microseconds is rejected instead. Zero means no bound
	// besides the capacity, which already bounds the wait to
	// (capacity − 1 − Delay) × Window / Quota.
	MaxWait int64
}

// ErrInvalidLimit reports a Limit that no algorithm can apply.
var ErrInvalidLimit = errors.New("invalid limit")

// Capacity returns the largest cost that a single request may carry under l
// with the bucket algorithms and GCRA. The window algorithms use Quota.
func (l Limit) Capacity() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Quota
}

// Validate reports whether l can be applied exactly by every algorithm, in
// Go and in Lua.
func (l Limit) Validate() error {
	switch {
	case l.Quota <= 0:
		return fmt.Errorf("%w: quota %d must be positive", ErrInvalidLimit, l.Quota)
	case l.Window < MinWindow || l.Window > MaxDuration:
		return fmt.Errorf("%w: window %dµs must be between %dµs (1 ms) and %dµs (about 35 years)",
			ErrInvalidLimit, l.Window, MinWindow, MaxDuration)
	case l.Burst < 0 || l.Delay < 0 || l.MaxWait < 0:
		return fmt.Errorf("%w: burst, delay and max wait must not be negative", ErrInvalidLimit)
	case l.Quota > (MaxProduct-1)/l.Window || l.Capacity() > (MaxProduct-1)/l.Window:
		return fmt.Errorf("%w: %d per %dµs is too large: quota × window must stay below 2^53 µs",
			ErrInvalidLimit, l.Capacity(), l.Window)
	case l.Capacity()*l.Window/l.Quota > MaxDuration:
		return fmt.Errorf("%w: burst %d refills in more than %dµs at %d per %dµs: lower the burst",
			ErrInvalidLimit, l.Capacity(), int64(MaxDuration), l.Quota, l.Window)
	case l.MaxWait > MaxDuration:
		return fmt.Errorf("%w: max wait %dµs exceeds %dµs", ErrInvalidLimit, l.MaxWait, int64(MaxDuration))
	}
	return nil
}

// State is the per-key state of every algorithm: three integers whose
// meaning depends on the Kind. The zero State is a key never seen before, and
// a State that has aged past the point where it can change a decision
// decides exactly as the zero State does. Stores may encode it more
// compactly as long as Decide receives the same values. Times are Unix
// microseconds.
//
//	Kind           A                          B                             C
//	FixedWindow    start of the window        units used in it              0
//	SlidingWindow  start of the current       units used in the current     units used in the
//	               window                     window                        previous window
//	GCRA           theoretical arrival time   fraction of TAT in units of   0
//	               (TAT), whole µs            1/Quota µs, 0 ≤ B < Quota
//	LeakyQueue     same as GCRA               same as GCRA                  0
//	TokenBucket    same as GCRA: the time at  same as GCRA                  0
//	               which the bucket is full
//	LeakyBucket    same as GCRA: the time at  same as GCRA                  0
//	               which the bucket is empty
//
// Window starts are multiples of Window. The TAT is A + B/Quota
// microseconds and grows by Window/Quota per unit of cost. A TAT at or
// before now means a full TokenBucket, an empty LeakyBucket and an empty
// queue; the deficit or level at now is (TAT − now) × Quota/Window units.
type State struct {
	A, B, C int64
}

// Reason is the cause of a decision.
type Reason uint8

// Reasons for a decision.
const (
	ReasonAllowed      Reason = iota
	ReasonLimited             // the budget is spent; RetryAfter gives the time until it returns
	ReasonCostTooLarge        // cost exceeds the capacity, so the request can never pass
	ReasonQueueFull           // LeakyQueue: the wait would exceed MaxWait
	ReasonInvalidCost         // negative cost
	ReasonInvalidLimit        // unknown Kind, or a Quota or Window that is not positive
)

var reasonNames = [...]string{
	ReasonAllowed:      "allowed",
	ReasonLimited:      "limited",
	ReasonCostTooLarge: "cost_exceeds_capacity",
	ReasonQueueFull:    "queue_full",
	ReasonInvalidCost:  "invalid_cost",
	ReasonInvalidLimit: "invalid_limit",
}

// String returns a stable snake_case name for r, used in logs and bodies.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Decision is the outcome of one rule for one request. Durations are in
// microseconds and are never negative.
type Decision struct {
	Allowed bool
	Reason  Reason
	// Limit is the budget reported in RateLimit-Limit: Quota for the
	// window kinds, the capacity (Burst, or Quota) for the others.
	Limit int64
	// Remaining is how many requests of cost 1 would still be allowed at
	// the same instant, after this request. It is never negative.
	Remaining int64
	// ResetAfter is the time until the budget is as full as for a key never
	// seen. FixedWindow reports the end of its window even when nothing is
	// used, and SlidingWindow the end of the next window while the current
	// one has units, because they weigh on the next window until it ends.
	ResetAfter int64
	// RetryAfter is the exact time until a request of the same cost would
	// pass if no other request comes first: 1µs earlier it would not. It
	// is zero when allowed, with ReasonCostTooLarge (it can never pass) and
	// with ReasonInvalidCost.
	RetryAfter int64
	// Wait is how long an allowed LeakyQueue request must be held before it
	// is served. It is zero for every other kind.
	Wait int64
}
