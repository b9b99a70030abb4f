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

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if conn.cluster && !sameSlot(checks) {
		return s.applyAcrossSlots(ctx, conn.client, checks, cost, out)
	}

	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.reset(s.nowArg(), cost, modeCharge)
	for i := range checks {
		sc.add(checks[i])
	}
	vals, err := applyScript.exec(ctx, conn.client, sc.keys, sc.args).ToArray()
	if err != nil {
		return false, unavailable(err)
	}
	return parseApply(vals, out[:len(checks)], nil)
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
	decisionFields = 7
	stateFields    = 6
)

// parseApply copies the decisions of an apply reply into out and returns
// whether every check allowed. When states is not nil the reply carries the
// state before and after each check, which go to states (6 per check).
func parseApply(vals []rueidis.RedisMessage, out []algorithm.Decision, states []int64) (bool, error) {
	per := decisionFields
	if states != nil {
		per += stateFields
	}
	if len(vals) != 2+per*len(out) {
		return false, unavailable(fmt.Errorf("script reply has %d values, want %d", len(vals), 2+per*len(out)))
	}
	allowed, err := vals[0].AsInt64()
	if err != nil {
		return false, unavailable(err)
	}
	var ints [decisionFields + stateFields]int64
	for i := range out {
		base := 2 + per*i
		for j := 0; j < per; j++ {
			if ints[j], err = vals[base+j].AsInt64(); err != nil {
				return false, unavailable(err)
			}
		}
		out[i] = algorithm.Decision{
			Allowed:    ints[0] == 1,
			Reason:     algorithm.Reason(ints[1]),
			Limit:      ints[2],
			Remaining:  ints[3],
			ResetAfter: ints[4],
			RetryAfter: ints[5],
			Wait:       ints[6],
		}
		if states != nil {
			copy(states[stateFields*i:], ints[decisionFields:])
		}
	}
	return allowed == 1, nil
}

// scratch holds the arguments of one script call between uses.
type scratch struct {
	keys []string
	args []string
}

// Modes of the apply script (its ARGV[3]).
const (
	modeCharge          = "0"
	modeChargeWithState = "1"
	modeDryRun          = "2"
)

func (sc *scratch) reset(now string, cost int64, mode string) {
	sc.keys = sc.keys[:0]
	sc.args = append(sc.args[:0], now, strconv.FormatInt(cost, 10), mode)
}

// add appends the key and the limit arguments of c.
func (sc *scratch) add(c store.Check) {
	l := c.Limit
	sc.keys = append(sc.keys, c.Key)
	sc.args = append(sc.args,
		strconv.Itoa(int(c.Algorithm)),
		strconv.FormatInt(l.Quota, 10),
		strconv.FormatInt(l.Window, 10),
		strconv.FormatInt(l.Burst, 10),
		strconv.FormatInt(l.Delay, 10),
		strconv.FormatInt(l.MaxWait, 10),
		strconv.FormatInt(horizonMillis(c.Algorithm, l), 10),
	)
}

// horizonMillis returns how long, in milliseconds after it was written, the
// state of a key under kind and l can still change a decision; after that
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
