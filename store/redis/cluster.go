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
	idx    []int         // indexes into the checks of the request
	checks []store.Check // the checks at idx
	script script        // the apply script of the last call
	sc     scratch
	states []int64 // state before and after each check, 6 per check
}

// applyAcrossSlots applies checks whose keys live in several Redis Cluster
// hash slots, one script per slot. Each script charges its slot only when
// all of that slot's checks allow, and when a slot denies or fails, the
// slots that charged are refunded. Over-admission cannot happen, because
// every slot decides on its own state atomically. Between a charge and its
// refund, though, other requests see less budget than they should and may
// be denied.
//
// By default the slots run one after another in check order, stopping at
// the first denial, so a request denied by an earlier (narrower) check
// never charges a later (wider) one. With ParallelSlots every slot runs at
// once, in one round trip.
func (s *Store) applyAcrossSlots(ctx context.Context, c rueidis.Client, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	groups := groupBySlot(checks)
	now := s.nowArg()
	calls := make([]slotCall, len(groups))
	all := make([]int, len(groups))
	for g, idx := range groups {
		calls[g].idx = idx
		all[g] = g
	}
	if s.parallel {
		ok, charged, err := s.sendSlots(ctx, c, checks, now, cost, modeChargeWithState, calls, all, out)
		if !ok {
			s.refund(ctx, c, checks, cost, calls, charged)
		}
		return ok, err
	}

	var charged []int
	decisions := make([]algorithm.Decision, len(checks))
	for g := range calls {
		call := &calls[g]
		call.checks = call.checks[:0]
		for _, i := range call.idx {
			call.checks = append(call.checks, checks[i])
		}
		call.states = make([]int64, stateFields*len(call.idx))
		b := s.slotBatcher(keySlot(call.checks[0].Key))
		ok, err := s.applyBatched(ctx, c, b, call.checks, cost, decisions[:len(call.idx)], call.states)
		if err == nil {
			for j, i := range call.idx {
				out[i] = decisions[j]
			}
		}
		if ok && err == nil {
			charged = append(charged, g)
			continue
		}
		s.refund(ctx, c, checks, cost, calls, charged)
		if err == nil && g+1 < len(calls) {
			// Fill in the budgets of the slots the request never reached.
			// A failure here leaves their decisions empty; the request is
			// denied either way.
			_, _, _ = s.sendSlots(ctx, c, checks, now, cost, modeDryRun, calls, all[g+1:], out)
		}
		return false, err
	}
	return true, nil
}

// sendSlots sends the apply script in mode to the given slot calls at once
// and copies their decisions into out. It returns whether every call
// allowed, which calls charged, and the first error.
func (s *Store) sendSlots(ctx context.Context, c rueidis.Client, checks []store.Check, now string, cost int64, mode string, calls []slotCall, selected []int, out []algorithm.Decision) (bool, []int, error) {
	cmds := make(rueidis.Commands, len(selected))
	for n, g := range selected {
		call := &calls[g]
		call.checks = call.checks[:0]
		for _, i := range call.idx {
			call.checks = append(call.checks, checks[i])
		}
		call.sc.reset(now, mode)
		call.sc.addRequest(call.checks, cost)
		call.script = call.sc.script()
		cmds[n] = call.script.evalSHA(c, call.sc.keys, call.sc.finish())
	}
	resps := c.DoMulti(ctx, cmds...)

	allowed := true
	var firstErr error
	var charged []int
	decisions := make([]algorithm.Decision, len(checks))
	for n, g := range selected {
		call := &calls[g]
		resp := resps[n]
		if isNoScript(resp.Error()) {
			resp = c.Do(ctx, call.script.eval(c, call.sc.keys, call.sc.args))
		}
		var states []int64
		if mode == modeChargeWithState {
			states = make([]int64, stateFields*len(call.idx))
			call.states = states
		}
		ok, err := parseSlot(resp, call.checks, decisions[:len(call.idx)], states)
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
		if !ok {
			allowed = false
		} else if mode == modeChargeWithState {
			charged = append(charged, g)
		}
	}
	return allowed, charged, firstErr
}

func parseSlot(resp rueidis.RedisResult, checks []store.Check, out []algorithm.Decision, states []int64) (bool, error) {
	vals, err := resp.ToArray()
	if err != nil {
		return false, unavailable(err)
	}
	return parseOne(vals, checks, out, states)
}

// refund takes back the charges of the given slot calls. It runs even when
// ctx has expired, within the store's timeout. A refund that fails leaves
// the charge in place, which denies more, never admits more.
func (s *Store) refund(ctx context.Context, c rueidis.Client, checks []store.Check, cost int64, calls []slotCall, charged []int) {
	if len(charged) == 0 {
		return
	}
	// The time of the refund, not of the charge: the later the time, the
	// less of a bucket or GCRA charge comes back.
	now := s.nowArg()
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
