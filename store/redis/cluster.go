package redis

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// slotCall is the script call for the checks of one hash slot.
type slotCall struct {
	idx    []int // indexes into the checks of the request
	sc     scratch
	states []int64 // state before and after each check, 6 per check
}

// applyAcrossSlots applies checks whose keys live in several Redis Cluster
// hash slots. It sends one script per slot to all nodes at once, so the
// request still takes one round trip. Each script charges its slot only
// when all of that slot's checks allow. When a slot denies or fails, the
// slots that charged are refunded in a second round trip.
//
// Between the charge and the refund, other requests see less budget than
// they should and may be denied: the cost of keeping the rule that a denied
// request consumes nothing without locks across nodes. Over-admission
// cannot happen, because every slot decides on its own state atomically.
func (s *Store) applyAcrossSlots(ctx context.Context, c rueidis.Client, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	groups := groupBySlot(checks)
	now := s.nowArg()
	calls := make([]slotCall, len(groups))
	cmds := make(rueidis.Commands, len(groups))
	for g, idx := range groups {
		call := &calls[g]
		call.idx = idx
		call.sc.reset(now, cost, true)
		for _, i := range idx {
			call.sc.add(checks[i])
		}
		cmds[g] = applyScript.evalSHA(c, call.sc.keys, call.sc.args)
	}
	resps := c.DoMulti(ctx, cmds...)

	allowed := true
	var firstErr error
	var charged []int
	decisions := make([]algorithm.Decision, len(checks))
	for g := range calls {
		call := &calls[g]
		resp := resps[g]
		if isNoScript(resp.Error()) {
			resp = c.Do(ctx, applyScript.eval(c, call.sc.keys, call.sc.args))
		}
		call.states = make([]int64, stateFields*len(call.idx))
		ok, err := parseSlot(resp, decisions[:len(call.idx)], call.states)
		if err != nil {
			allowed = false
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for j, i := range call.idx {
			out[i] = decisions[j]
		}
		if ok {
			charged = append(charged, g)
		} else {
			allowed = false
		}
	}
	if allowed {
		return true, nil
	}
	if len(charged) > 0 {
		s.refund(ctx, c, checks, now, cost, calls, charged)
	}
	if firstErr != nil {
		return false, firstErr
	}
	return false, nil
}

func parseSlot(resp rueidis.RedisResult, out []algorithm.Decision, states []int64) (bool, error) {
	vals, err := resp.ToArray()
	if err != nil {
		return false, unavailable(err)
	}
	return parseApply(vals, out, states)
}

// refund takes back the charges of the given slot calls. It runs even when
// ctx has expired, within the store's timeout; a refund that fails leaves
// the charge in place, which denies more, never admits more.
func (s *Store) refund(ctx context.Context, c rueidis.Client, checks []store.Check, now string, cost int64, calls []slotCall, charged []int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(charged))
	sent := make([]scratch, 0, len(charged))
	for _, g := range charged {
		call := &calls[g]
		keys := make([]string, 0, len(call.idx))
		args := []string{now, strconv.FormatInt(cost, 10)}
		for j, i := range call.idx {
			st := call.states[stateFields*j : stateFields*(j+1)]
			if st[0] == st[3] && st[1] == st[4] && st[2] == st[5] {
				continue // this check wrote nothing
			}
			ch := checks[i]
			keys = append(keys, ch.Key)
			args = append(args,
				strconv.Itoa(int(ch.Algorithm)),
				strconv.FormatInt(ch.Limit.Quota, 10),
				strconv.FormatInt(ch.Limit.Window, 10),
				strconv.FormatInt(horizonMillis(ch.Algorithm, ch.Limit), 10),
			)
			for _, v := range st {
				args = append(args, strconv.FormatInt(v, 10))
			}
		}
		if len(keys) > 0 {
			cmds = append(cmds, refundScript.evalSHA(c, keys, args))
			sent = append(sent, scratch{keys: keys, args: args})
		}
	}
	if len(cmds) == 0 {
		return
	}
	resps := c.DoMulti(ctx, cmds...)
	for i, resp := range resps {
		if isNoScript(resp.Error()) {
			_ = c.Do(ctx, refundScript.eval(c, sent[i].keys, sent[i].args)).Error()
		}
	}
}

// groupBySlot returns the indexes of checks grouped by hash slot, in order
// of first appearance.
func groupBySlot(checks []store.Check) [][]int {
	var slots []uint16
	var groups [][]int
	for i := range checks {
		slot := keySlot(checks[i].Key)
		found := false
		for g, s := range slots {
			if s == slot {
				groups[g] = append(groups[g], i)
				found = true
				break
			}
		}
		if !found {
			slots = append(slots, slot)
			groups = append(groups, []int{i})
		}
	}
	return groups
}
