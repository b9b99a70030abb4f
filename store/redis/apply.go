package redis

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// Apply implements store.Store. It returns an error that wraps
// store.ErrUnavailable when Redis could not decide within the timeout, and
// one that wraps algorithm.ErrInvalidLimit for a check no algorithm can
// apply. On any error nothing was charged, except that a request which
// timed out may still reach Redis later and be charged there.
func (s *Store) Apply(ctx context.Context, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if len(out) < len(checks) {
		return false, fmt.Errorf("redis: %d decisions for %d checks: out is too short", len(out), len(checks))
	}
	if len(checks) == 0 {
		return true, nil
	}
	for i := range checks {
		if err := validate(checks[i]); err != nil {
			return false, err
		}
	}
	conn := s.conn.Load()
	if conn == nil {
		s.redial()
		return false, unavailable(errNotConnected)
	}

	if !conn.cluster {
		// applyBatched bounds the wait by the timeout itself, with a timer
		// that its pooled request reuses. A context per check took about 8%
		// of the client's CPU time in a profile of bench/redis.
		return s.applyBatched(ctx, conn.client, &s.batch, checks, cost, out, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.applyCluster(ctx, conn.client, checks, cost, out)
}

// applyCluster applies checks on a Redis Cluster: one script call when
// they share a slot, one per slot otherwise.
func (s *Store) applyCluster(ctx context.Context, c rueidis.Client, checks []store.Check, cost int64, out []algorithm.Decision) (allowed bool, err error) {
	defer func() {
		// rueidis panics when the keys of one command span slots. keySlot
		// groups keys as Redis does, so this only guards against a bug.
		if r := recover(); r != nil {
			allowed, err = false, unavailable(fmt.Errorf("building a script call: %v", r))
		}
	}()
	if !sameSlot(checks) {
		return s.applyAcrossSlots(ctx, c, checks, cost, out)
	}
	b := s.slotBatcher(keySlot(checks[0].Key))
	return s.applyBatched(ctx, c, b, checks, cost, out[:len(checks)], nil)
}

// nowArg returns the time argument of the script: "" for Redis TIME.
func (s *Store) nowArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMicro(), 10)
}

// validate reports a check that no algorithm can apply.
func validate(c store.Check) error {
	if c.Algorithm > algorithm.GCRA {
		return fmt.Errorf("%w: unknown algorithm %v", algorithm.ErrInvalidLimit, c.Algorithm)
	}
	return c.Limit.Validate()
}

// sameSlot reports whether every key hashes to one Redis Cluster slot.
func sameSlot(checks []store.Check) bool {
	first := keySlot(checks[0].Key)
	for i := 1; i < len(checks); i++ {
		if keySlot(checks[i].Key) != first {
			return false
		}
	}
	return true
}

// decisionFields is the number of integers per check in a script reply,
// and stateFields the number that follow them when the script returns the
// state before and after the check.
const (
	decisionFields = 5
	stateFields    = 6
)

// parseOne parses the reply of a script call that carried one request.
func parseOne(vals []rueidis.RedisMessage, checks []store.Check, out []algorithm.Decision, states []int64) (bool, error) {
	allowed, next, err := parseRequest(vals, 1, checks, out, states)
	if err == nil && next != len(vals) {
		err = unavailable(fmt.Errorf("script reply has %d values, want %d", len(vals), next))
	}
	return allowed, err
}

// parseRequest copies the decisions of the request whose reply starts at
// vals[i] into out, one per check, and returns whether every check allowed
// and the index after the request. When states is not nil the reply
// carries the state before and after each check, which go to states (6 per
// check).
func parseRequest(vals []rueidis.RedisMessage, i int, checks []store.Check, out []algorithm.Decision, states []int64) (bool, int, error) {
	per := decisionFields
	if states != nil {
		per += stateFields
	}
	end := i + 1 + per*len(checks)
	if len(vals) < end {
		return false, 0, unavailable(fmt.Errorf("script reply has %d values, want at least %d", len(vals), end))
	}
	allowed, err := vals[i].AsInt64()
	if err != nil {
		return false, 0, unavailable(err)
	}
	var ints [decisionFields + stateFields]int64
	for c := range checks {
		base := i + 1 + per*c
		for j := 0; j < per; j++ {
			if ints[j], err = vals[base+j].AsInt64(); err != nil {
				return false, 0, unavailable(err)
			}
		}
		out[c] = algorithm.Decision{
			Allowed:    ints[0] == int64(algorithm.ReasonAllowed),
			Reason:     algorithm.Reason(ints[0]),
			Limit:      reportedLimit(checks[c]),
			Remaining:  ints[1],
			ResetAfter: ints[2],
			RetryAfter: ints[3],
			Wait:       ints[4],
		}
		if states != nil {
			copy(states[stateFields*c:], ints[decisionFields:])
		}
	}
	return allowed == 1, end, nil
}

// reportedLimit returns Decision.Limit for c: the quota of the window
// algorithms and the capacity of the others, as package algorithm reports
// it.
func reportedLimit(c store.Check) int64 {
	switch c.Algorithm {
	case algorithm.SlidingWindow, algorithm.FixedWindow:
		return c.Limit.Quota
	}
	return c.Limit.Capacity()
}

// scratch builds the keys and arguments of one script call.
type scratch struct {
	keys     []string
	limits   []limitKey // the distinct limits of the call, in order
	requests []string   // cost, check count and limit numbers of each request
	count    int        // requests added
	now      string
	mode     string
	args     []string
}

// limitKey identifies a distinct limit in the arguments of a call.
type limitKey struct {
	kind  algorithm.Kind
	limit algorithm.Limit
}

// Modes of the apply script (its ARGV[2]).
const (
	modeCharge          = "0"
	modeChargeWithState = "1"
	modeDryRun          = "2"
)

// reset starts a call.
func (sc *scratch) reset(now, mode string) {
	sc.keys, sc.limits, sc.requests = sc.keys[:0], sc.limits[:0], sc.requests[:0]
	sc.count, sc.now, sc.mode = 0, now, mode
}

// addRequest appends the keys and arguments of one request.
func (sc *scratch) addRequest(checks []store.Check, cost int64) {
	sc.count++
	sc.requests = append(sc.requests, strconv.FormatInt(cost, 10), strconv.Itoa(len(checks)))
	for i := range checks {
		c := &checks[i]
		sc.keys = append(sc.keys, c.Key)
		sc.requests = append(sc.requests, strconv.Itoa(sc.limitNumber(c.Algorithm, c.Limit)))
	}
}

// limitNumber returns the 1-based number of (kind, l) among the call's
// limits, adding it when new. Calls carry few distinct limits, so a linear
// search is enough.
func (sc *scratch) limitNumber(kind algorithm.Kind, l algorithm.Limit) int {
	key := limitKey{kind, l}
	for i, k := range sc.limits {
		if k == key {
			return i + 1
		}
	}
	sc.limits = append(sc.limits, key)
	return len(sc.limits)
}

// script returns the apply script for the checks added since reset.
func (sc *scratch) script() script {
	for _, k := range sc.limits[1:] {
		if k.kind != sc.limits[0].kind {
			return applyScript
		}
	}
	return scriptFor(sc.limits[0].kind, false)
}

// finish returns the script arguments of the call.
func (sc *scratch) finish() []string {
	sc.args = append(sc.args[:0], sc.now, sc.mode, strconv.Itoa(len(sc.limits)))
	for _, k := range sc.limits {
		l := k.limit
		sc.args = append(sc.args,
			strconv.Itoa(int(k.kind)),
			strconv.FormatInt(l.Quota, 10),
			strconv.FormatInt(l.Window, 10),
			strconv.FormatInt(l.Burst, 10),
			strconv.FormatInt(l.Delay, 10),
			strconv.FormatInt(l.MaxWait, 10),
			strconv.FormatInt(horizonMillis(k.kind, l), 10),
		)
	}
	sc.args = append(sc.args, strconv.Itoa(sc.count))
	sc.args = append(sc.args, sc.requests...)
	return sc.args
}

// horizonMillis returns how long, in milliseconds after it was written, the
// state of a key under kind and l can still change a decision. After that
// the state decides as the zero State does, so the key expires. The bounds
// follow the State layout of package algorithm: a window state matters
// until the end of the window after next (sliding) or of its own window
// (fixed); a bucket level or a theoretical arrival time is at most the
// capacity's worth of time ahead of the write, Capacity×Window/Quota.
func horizonMillis(kind algorithm.Kind, l algorithm.Limit) int64 {
	var us int64
	switch kind {
	case algorithm.SlidingWindow:
		us = 2 * l.Window
	case algorithm.FixedWindow:
		us = 2 * l.Window
	default:
		us = mulDivCeil(l.Window, l.Capacity(), l.Quota) + 1
	}
	return us/1000 + 2
}

// mulDivCeil returns ceil(a*b/c) for positive a, b and c, saturating at
// 2^62 so that sums of a few results cannot overflow.
func mulDivCeil(a, b, c int64) int64 {
	const ceiling = 1 << 62
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return ceiling
	}
	q, r := bits.Div64(hi, lo, uint64(c))
	if r != 0 {
		q++
	}
	return int64(min(q, ceiling))
}
