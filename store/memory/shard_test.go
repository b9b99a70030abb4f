package memory

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
)

// modelRule is a (kind, limit) pair of TestShardMatchesModel.
type modelRule struct {
	kind  algorithm.Kind
	limit algorithm.Limit
}

// modelRules returns more rules than the registry holds. The first ones
// take slots of very different widths: 22 bits for a sliding window of
// 1/hour, 56 for GCRA at 1/day, 58 and ext for 2^20/minute, and none for
// 2^40/ms. Enough small ones follow to fill the registry and go past it.
func modelRules() []modelRule {
	second, minute := time.Second.Microseconds(), time.Minute.Microseconds()
	hour, day := time.Hour.Microseconds(), 24*time.Hour.Microseconds()
	rules := []modelRule{
		{sw, lim{Quota: 1, Window: hour}},
		{fw, lim{Quota: 1, Window: hour}},
		{gcra, lim{Quota: 1, Window: day}},
		{lb, lim{Quota: 7, Window: 3 * second}},
		{lq, lim{Quota: 5, Window: minute, Delay: 2, MaxWait: 30 * second}},
		{tb, lim{Quota: 10, Window: second, Burst: 1000}},
		{sw, lim{Quota: 1 << 20, Window: minute}},
		{tb, lim{Quota: 999_983, Window: second}},
		{sw, lim{Quota: 1 << 40, Window: 1000}},
		{fw, lim{Quota: 1 << 40, Window: 1000}},
	}
	for i := 0; len(rules) < maxLayouts+7; i++ {
		rules = append(rules, modelRule{
			kind:  benchKinds[i%len(benchKinds)],
			limit: lim{Quota: int64(i + 2), Window: int64(i%5+1) * second},
		})
	}
	return rules
}

// modelEntry is what a shard must return for a key: the state last saved,
// the kind that saved it and its expiry under the saving rule.
type modelEntry struct {
	state  algorithm.State
	kind   algorithm.Kind
	expiry int64
}

// shardModel drives one shard with random saves, clock steps, sweeps,
// rebases and growths, and keeps the states it must hold.
type shardModel struct {
	t       *testing.T
	r       *rand.Rand
	s       *Store
	sh      *shard
	rules   []modelRule
	keys    []uint64 // hashes, every one with its own fingerprint
	entries map[uint64]modelEntry
	// evicting is set when the shard holds fewer keys than the trace
	// uses, so that it must evict some.
	evicting bool
	// clockEvery is the mean number of steps between clock moves.
	clockEvery int
	now        int64
}

// TestShardMatchesModel saves states of many rules, mixed on each key, to
// one shard, and checks after each step that the shard returns what a map
// of exact states returns. The states come from algorithm.Decide and at
// random, both near the bounds of their layouts and past them, so that
// some go to the wide map. The clock steps back and forward by up to a
// day, across rebases, and the sweeper runs now and then. The table grows
// from room for 2 keys and widens its slots as rules arrive, up to 64
// bits and past the registry's last layout. The keys have distinct
// fingerprints, so no key may take another's slot, and the shard never
// fills, so none is evicted. So every state must survive exactly.
func TestShardMatchesModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(2) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			newShardModel(t, seed, 2500, 5000).run(50_000)
		})
	}
}

// TestShardEvictingMatchesModel is TestShardMatchesModel for a shard of
// 300 keys under a trace of 2500: keys are evicted all along, from the
// slots and from the wide map. A key the shard still holds must keep its
// exact state, and a save must never evict the key it saves.
func TestShardEvictingMatchesModel(t *testing.T) {
	t.Parallel()
	m := newShardModel(t, 7, 2500, 300)
	// A clock that moves rarely keeps states alive, so the shard fills.
	m.clockEvery = 100
	m.run(30_000)
}

// newShardModel returns a model of a shard of maxKeys keys and a trace on
// the given number of keys.
func newShardModel(t *testing.T, seed uint64, keys, maxKeys int) *shardModel {
	clk := newTestClock()
	s := newStore(Config{MaxKeys: maxKeys, Clock: clk.Now, CleanupInterval: 24 * time.Hour},
		1, 2)
	t.Cleanup(func() { s.Close() })
	m := &shardModel{
		t:          t,
		r:          rand.New(rand.NewPCG(seed, 99)),
		s:          s,
		sh:         &s.shards[0],
		rules:      modelRules(),
		entries:    make(map[uint64]modelEntry),
		now:        clk.Now().UnixMicro(),
		evicting:   maxKeys < keys,
		clockEvery: 3,
	}
	seen := make(map[uint64]bool)
	for len(m.keys) < keys {
		h := m.r.Uint64()
		if fp := fingerprint(h); !seen[fp] {
			seen[fp] = true
			m.keys = append(m.keys, h)
		}
	}
	return m
}

func (m *shardModel) run(steps int) {
	sh := m.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	firstLevel := sh.level
	for step := range steps {
		m.stepClock()
		// Rules arrive one by one, so that slots widen with keys in them.
		rule := m.r.IntN(min(len(m.rules), 1+step/150))
		h := m.keys[m.r.IntN(len(m.keys))]
		if m.r.IntN(4) == 0 {
			h = m.keys[m.r.IntN(20)] // a few keys see every rule
		}
		m.save(step, h, rule)
		if m.r.IntN(300) == 0 {
			m.sweep(step)
		}
		if step%2000 == 0 || step == steps-1 {
			m.checkAll(step)
		}
	}
	if sh.words.width != 64 || sh.level+4 > firstLevel {
		m.t.Errorf("after the trace: slot width %d at level %d, want 64 and 4 levels "+
			"above the first, %d", sh.words.width, sh.level, firstLevel)
	}
	if len(sh.wide) == 0 {
		m.t.Errorf("after the trace: no wide entries, want some")
	}
}

// stepClock moves the clock and rebases the shard when Apply would.
func (m *shardModel) stepClock() {
	steps := []int64{0, 0, 1, 999, time.Second.Microseconds(), time.Minute.Microseconds(),
		17 * time.Minute.Microseconds(), rebaseSpan / 2, rebaseSpan + 1,
		time.Hour.Microseconds(), 24 * time.Hour.Microseconds()}
	if m.r.IntN(m.clockEvery) != 0 {
		return
	}
	d := steps[m.r.IntN(len(steps))]
	if m.r.IntN(6) == 0 {
		d = -d
	}
	m.now += d
	if m.now-m.sh.base >= rebaseSpan {
		m.forgetEvicted()
		m.drop("rebase", m.sh.rebase(m.now, m.s.registry.snapshot()))
	}
}

// sweep runs what the sweeper runs on the shard.
func (m *shardModel) sweep(step int) {
	sh, layouts := m.sh, m.s.registry.snapshot()
	m.forgetEvicted()
	if m.now-sh.base >= rebaseSpan/2 {
		m.drop(fmt.Sprintf("step %d: sweeper rebase", step), sh.rebase(m.now, layouts))
		return
	}
	n := sh.sweepWide(m.now)
	n += sh.sweepSlots(m.now, layouts, 0, sh.words.n)
	m.drop(fmt.Sprintf("step %d: sweep", step), n)
}

// drop forgets the states expired at now and fails the test unless the
// shard dropped as many. The caller forgets evicted keys before the shard
// drops any.
func (m *shardModel) drop(event string, dropped int) {
	m.t.Helper()
	want := 0
	for h, e := range m.entries {
		if e.expiry <= m.now {
			delete(m.entries, h)
			want++
		}
	}
	if dropped != want {
		m.t.Fatalf("%s at %d: dropped %d keys, want %d", event, m.now, dropped, want)
	}
}

// save writes a new state of key h under rule i, from Decide or at random.
func (m *shardModel) save(step int, h uint64, i int) {
	rule := &m.rules[i]
	idx, lay, err := m.s.registry.lookup(rule.kind, &rule.limit)
	if err != nil {
		m.t.Fatalf("lookup(%s %+v) error: %v", rule.kind, rule.limit, err)
	}
	layouts := m.s.registry.snapshot()
	if m.evicting && !m.holds(h) {
		delete(m.entries, h)
	}
	got := m.sh.load(h, rule.kind, m.now, layouts)
	if want := m.load(h, rule.kind); got != want {
		m.t.Fatalf("step %d at %d: load(%#x, %s) = %+v, want %+v (width %d, level %d)",
			step, m.now, h, rule.kind, got, want, m.sh.words.width, m.sh.level)
	}

	next := m.randomState(rule)
	if m.r.IntN(2) == 0 {
		cost := m.r.Int64N(3)
		var d algorithm.Decision
		if next, d = algorithm.Decide(rule.kind, got, m.now, rule.limit, cost); !d.Allowed {
			return
		}
	}
	m.sh.save(h, idx, lay, rule.kind, rule.limit, next, layouts)
	if !m.holds(h) || m.sh.count > m.sh.cap {
		m.t.Fatalf("step %d: after save(%#x): held = %v, count %d of capacity %d",
			step, h, m.holds(h), m.sh.count, m.sh.cap)
	}
	m.entries[h] = modelEntry{
		state:  next,
		kind:   rule.kind,
		expiry: expiry(rule.kind, rule.limit.Window, next),
	}
}

// holds reports whether the shard holds key h, in a slot or in the wide
// map. The keys' fingerprints differ, so no other key's slot matches.
func (m *shardModel) holds(h uint64) bool {
	if _, ok := m.sh.wide[h]; ok {
		return true
	}
	return m.sh.locate(h) >= 0
}

// forgetEvicted drops from the model the keys that a shard smaller than
// the trace evicted.
func (m *shardModel) forgetEvicted() {
	if !m.evicting {
		return
	}
	for h := range m.entries {
		if !m.holds(h) {
			delete(m.entries, h)
		}
	}
}

// load returns the state the shard must return for key h under kind k.
func (m *shardModel) load(h uint64, k algorithm.Kind) algorithm.State {
	if e, ok := m.entries[h]; ok && e.kind == k && e.expiry > m.now {
		return e.state
	}
	return algorithm.State{}
}

// randomState returns a state of rule near now: mostly one that Decide
// could write, now and then one just past the bounds of its layout.
func (m *shardModel) randomState(rule *modelRule) algorithm.State {
	r, q, w := m.r, rule.limit.Quota, rule.limit.Window
	odd := r.IntN(20) == 0
	switch rule.kind {
	case fw, sw:
		s := algorithm.State{A: (floorDiv(m.now, w) + int64(r.IntN(5)-2)) * w}
		s.B = r.Int64N(q + 1)
		if rule.kind == sw {
			s.C = r.Int64N(q + 1)
		}
		if odd {
			s.A += int64(r.IntN(3) - 1)
			s.B += q
		}
		return s
	}
	unit := gcd(w, q)
	refill := rule.limit.Capacity() * w / q
	s := algorithm.State{
		A: m.now + r.Int64N(refill+2*w) - w/2,
		B: r.Int64N(q/unit) * unit,
	}
	if odd {
		s.A += (r.Int64N(3) - 1) * 2 * rebaseSpan
		s.B += int64(r.IntN(2))
	}
	return s
}

// checkAll compares the state of every key the model holds, and the
// shard's count, with the model.
func (m *shardModel) checkAll(step int) {
	m.forgetEvicted()
	layouts := m.s.registry.snapshot()
	for h, e := range m.entries {
		got := m.sh.load(h, e.kind, m.now, layouts)
		if want := m.load(h, e.kind); got != want {
			m.t.Fatalf("step %d at %d: load(%#x, %s) = %+v, want %+v (width %d, level %d)",
				step, m.now, h, e.kind, got, want, m.sh.words.width, m.sh.level)
		}
	}
	occupied := len(m.sh.wide)
	for pos := range m.sh.words.n {
		if m.sh.words.get(pos) != 0 {
			occupied++
			checkSlotHash(m.t, m.sh, 0, pos)
		}
	}
	if m.sh.count != len(m.entries) || occupied != len(m.entries) {
		m.t.Fatalf("step %d: count %d, occupied %d, want %d keys",
			step, m.sh.count, occupied, len(m.entries))
	}
}
