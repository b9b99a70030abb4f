// Package memory is calm's in-process store: rate-limit state kept in the
// heap of one process, bounded by a maximum number of keys. A key takes a
// slot just wide enough for its fingerprint, its rule and its state, and
// a table keeps about 1.15 slots per key. For 1,000,000 keys under one
// rule (make bench-memory), the window algorithms take about 3.2 bytes per
// key at 1/hour and 4.7 to 5.8 at 100/minute. GCRA and the buckets take
// 7.4 at either rule. A rule whose values need more than 40 bits, such as
// 1,048,576/minute, takes about 13 bytes per key.
//
// # Layout
//
// Keys are hashed with a per-store random seed (hash/maphash) and spread
// over shards, each guarded by its own mutex, so checks on different keys
// rarely contend. A shard holds a flat table of slots in buckets of 8; a
// key may sit in either of two buckets chosen from its hash. A slot keeps
// an 18-bit fingerprint of the hash, the index of the key's (kind, limit)
// pair in a per-store registry, and the algorithm state packed into at
// most 40 bits. Its width is the sum of the three as the shard needs them:
// no index bits while the shard holds one rule, and the widest state
// among its rules. A store of one rule of 1/hour takes 22 bits per slot
// under the sliding window counter and 51 under GCRA. A shard widens
// its slots in place when a rule needs more. Limits whose values need more
// than 40 bits use 32 more in a side array. The store keeps no key strings
// and no per-key pointers. States that do not fit their packed form
// exactly go to a per-shard map that keeps them unchanged, so a packed
// form never rounds a value: a limit means what it says.
//
// A shard's table starts small and doubles as its keys fill it, up to the
// size its share of MaxKeys needs. Until it reaches that size it also keeps
// the 32 bits of each key's hash that choose its buckets, which growing
// needs to place the key again. The table one step below full size, with
// those bits, takes at most 6 bytes per slot of the full table. So a
// store holding far fewer keys than MaxKeys keeps them close together, in
// few cache lines.
//
// # Fingerprint collisions
//
// A check for a key the store does not hold compares its 18-bit
// fingerprint with at most 16 occupied slots, so with the table at its
// maximum load of 7/8 the chance that a new key is taken for another one is
// at most 16 × 7/8 / 2^18, about 1 in 19,000. A table that grows places
// its keys again, and two held keys then meet with the same chance. Two
// keys of one algorithm that meet share one budget until the state expires
// or is evicted, so neither gets more than its limit. Two keys of different algorithms replace each
// other's state, and each starts afresh after the other's request.
//
// # All or nothing
//
// A call to Apply locks every shard its keys fall in, in ascending shard
// order, decides every check with algorithm.Decide and writes the new states
// only when every check allows, so stacked rules are charged all together
// or not at all.
//
// # Time
//
// Apply reads the store's clock once per call, in Unix microseconds, and
// hands that time to algorithm.Decide unchanged. A clock that steps back
// is handled by the algorithms, as with every other store.
//
// # Expiry and eviction
//
// A state expires when it can no longer change a decision, so forgetting
// it is the same as keeping it: at the end of a fixed window, at the end of
// the window after a sliding window's current one, when a bucket is full
// (or empty) again, and just past a GCRA or queue theoretical arrival time.
// Expired keys read as fresh, and one sweeper goroutine per store drops
// them every CleanupInterval. Each shard holds at most MaxKeys/shards keys;
// a new key in a full shard, or in two full buckets, evicts the key of its
// two buckets whose state expires first (or, when both are empty, a key of
// the next occupied bucket): a sampled approximation of evicting the least
// recently used key.
package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// Defaults for the zero fields of Config.
const (
	// DefaultMaxKeys is the number of keys a store holds when
	// Config.MaxKeys is zero.
	DefaultMaxKeys = 1_000_000
	// DefaultCleanupInterval is how often the sweeper drops expired keys
	// when Config.CleanupInterval is zero.
	DefaultCleanupInterval = time.Minute
)

// Shard counts, powers of two. A store has minShards shards, well above
// the core count of common servers so that two cores rarely want the same
// shard, and more, up to maxShards, when its shards would otherwise hold
// more than shardKeys keys each.
const (
	minShards = 64
	maxShards = 4096
	shardKeys = 1 << 15
)

// ErrShortOutput is returned by Apply when out has fewer elements than
// checks.
var ErrShortOutput = errors.New("memory: out is shorter than checks")

// Config configures a Store. The zero value is usable: every zero field
// means its documented default.
type Config struct {
	// MaxKeys is the largest number of keys the store holds
	// (RATELIMIT_MEMORY_MAX_KEYS). Each shard holds an equal share, and a
	// new key in a full shard evicts a key whose state expires soonest.
	// Because keys spread over shards by hash, a store with MaxKeys active
	// keys holds about 99.5% of them, so leave a few percent of headroom.
	// Zero means DefaultMaxKeys; negative values are invalid (see Validate).
	MaxKeys int
	// CleanupInterval is the period of the sweeper that drops expired keys
	// (RATELIMIT_MEMORY_CLEANUP_INTERVAL). Zero means
	// DefaultCleanupInterval; negative values are invalid.
	CleanupInterval time.Duration
	// Clock returns the current time. Only its microseconds since the
	// Unix epoch are used. Nil means the system clock, read as the Unix
	// time at New plus the monotonic time elapsed since. That takes one
	// clock read per Apply, where time.Now takes two, and the store's time
	// does not jump when the wall clock is set.
	Clock func() time.Time
}

// Validate reports a negative MaxKeys or CleanupInterval, naming the
// setting, the value and the fix.
func (c Config) Validate() error {
	if c.MaxKeys < 0 {
		return fmt.Errorf("memory: RATELIMIT_MEMORY_MAX_KEYS is %d: "+
			"use a positive number of keys, or 0 for the default %d", c.MaxKeys, DefaultMaxKeys)
	}
	if c.CleanupInterval < 0 {
		return fmt.Errorf("memory: RATELIMIT_MEMORY_CLEANUP_INTERVAL is %s: "+
			"use a positive duration such as 1m, or 0 for the default %s",
			c.CleanupInterval, DefaultCleanupInterval)
	}
	return nil
}

// Store is an in-memory store.Store. It is safe for concurrent use. Create
// it with New and stop its sweeper with Close.
type Store struct {
	clock       func() time.Time // nil: start and startMicros
	start       time.Time        // with a monotonic reading
	startMicros int64            // start in Unix µs
	maxKeys     int
	seed        maphash.Seed
	registry    registry
	shards      []shard
	shardBits   uint
	closed      atomic.Bool
	stop        chan struct{}
	done        chan struct{}
	closeOnce   sync.Once
}

var _ store.Store = (*Store)(nil)

// New returns a Store configured by cfg and starts its sweeper goroutine.
// Zero or negative fields of cfg take their defaults; call Config.Validate
// first to reject negative values.
//
// Each shard allocates a small table when its first key arrives and
// doubles it as keys arrive, up to about 1.15 slots per key of its share
// of MaxKeys. That is at most 9.2 bytes per key, 9.2 MB in all for the
// default, and less for rules with small states (see the package
// documentation). A side array of up to 4.6 bytes per key more follows
// when a key needs it.
func New(cfg Config) *Store {
	return newStore(cfg, maxShards, startKeys)
}

// newStore is New with at most maxShards shards, a power of two, whose
// first tables hold about firstKeys keys.
func newStore(cfg Config, maxShards, firstKeys int) *Store {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = DefaultCleanupInterval
	}

	// A large store uses more shards, so that a sweep holds each lock
	// briefly. A small one uses fewer, so that every shard holds at least
	// one key and the shard capacities add up to at most MaxKeys.
	bits := uint(0)
	for 1<<bits < maxShards && (1<<bits < minShards || cfg.MaxKeys>>bits > shardKeys) {
		bits++
	}
	for bits > 0 && 1<<bits > cfg.MaxKeys {
		bits--
	}
	n := 1 << bits
	s := &Store{
		clock:     cfg.Clock,
		start:     time.Now(),
		maxKeys:   cfg.MaxKeys,
		seed:      maphash.MakeSeed(),
		shards:    make([]shard, n),
		shardBits: bits,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.startMicros = s.start.UnixMicro()
	now := s.now()
	for i := range s.shards {
		s.shards[i].init(cfg.MaxKeys/n, firstKeys, now)
	}
	go s.sweepEvery(cfg.CleanupInterval)
	return s
}

// Close stops the sweeper and waits for it to exit. Apply after Close
// returns store.ErrClosed. Close is idempotent and always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
	})
	<-s.done
	return nil
}

// Len returns the number of keys the store holds, expired keys that the
// sweeper has not dropped yet included.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.count
		sh.mu.Unlock()
	}
	return n
}

// ref is one check of an Apply call, resolved to its shard and layout.
type ref struct {
	hash  uint64
	shard int
	idx   uint8
	lay   *layout
	// same is the index of an earlier check of the call with the same key,
	// or -1.
	same int
}

// Apply decides every check for a request of the given cost at the time of
// the store's clock and charges all of them only if all allow. See
// store.Store. It returns an error, and charges nothing, when ctx is done,
// when out is shorter than checks (ErrShortOutput), when a check's Limit is
// invalid (algorithm.ErrInvalidLimit) and after Close (store.ErrClosed).
func (s *Store) Apply(
	ctx context.Context,
	checks []store.Check,
	cost int64,
	out []algorithm.Decision,
) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(out) < len(checks) {
		return false, fmt.Errorf("%w: %d decisions for %d checks",
			ErrShortOutput, len(out), len(checks))
	}
	switch len(checks) {
	case 0:
		return true, nil
	case 1:
		return s.applyOne(&checks[0], cost, &out[0])
	}

	var refBuf [8]ref
	var shardBuf [8]int
	refs, shards := refBuf[:0], shardBuf[:0]
	for i := range checks {
		r, err := s.resolve(checks, refs, i)
		if err != nil {
			return false, fmt.Errorf("memory: check %d (%s): %w", i, checks[i].Algorithm, err)
		}
		refs = append(refs, r)
		shards = insertSorted(shards, r.shard)
	}
	for _, i := range shards {
		s.shards[i].mu.Lock()
	}
	// Read with the locks held, after every lookup: a slot in these shards
	// was written under their locks, after its layout was registered, so
	// the snapshot has the layout of every slot and of every check.
	layouts := s.registry.snapshot()
	now := s.now()
	for _, i := range shards {
		if sh := &s.shards[i]; now-sh.base >= rebaseSpan {
			sh.rebase(now, layouts)
		}
	}
	allowed := s.decideLocked(checks, refs, now, cost, out, layouts)
	for j := len(shards) - 1; j >= 0; j-- {
		s.shards[shards[j]].mu.Unlock()
	}
	return allowed, nil
}

// applyOne is Apply for one check, the common case. It decides as the
// general path does, but skips what only several checks need: the arrays
// of refs and states, the sorted shard list, and the second search for the
// key's slot when the new state is written. A key whose slot the check's
// own word-sized layout wrote, as on every request after a client's first,
// is read and written in place. Every other case takes the general load
// and save.
func (s *Store) applyOne(c *store.Check, cost int64, out *algorithm.Decision) (bool, error) {
	idx, lay, err := s.registry.lookup(c.Algorithm, &c.Limit)
	if err == nil && idx == 0 {
		// The registry is full and did not validate the limit.
		err = c.Limit.Validate()
	}
	if err != nil {
		return false, fmt.Errorf("memory: check 0 (%s): %w", c.Algorithm, err)
	}
	h := s.hash(c.Key)
	sh := &s.shards[s.shardOf(h)]

	sh.mu.Lock()
	now := s.now()
	if now-sh.base >= rebaseSpan {
		sh.rebase(now, s.registry.snapshot())
	}
	pos := sh.locate(h)
	var st algorithm.State
	var w uint64
	if pos >= 0 {
		w = sh.words.get(pos)
	}
	inPlace := pos >= 0 && lay != nil && lay.form == formWord && slotLayout(w) == idx
	if inPlace {
		st = lay.decodeWord(w, sh.base)
		if satAdd(st.A, lay.life) <= now { // expiry, inline
			st = algorithm.State{}
		}
	} else {
		// Read after the lock, as in Apply.
		st = sh.loadAt(pos, h, c.Algorithm, now, s.registry.snapshot())
	}
	next, d := algorithm.Decide(c.Algorithm, st, now, c.Limit, cost)
	if d.Allowed && next != st {
		lo, ok := uint64(0), false
		if inPlace {
			lo, ok = lay.encodeWord(next, sh.base)
		}
		if ok {
			sh.words.set(pos, w&^payloadMask|lo)
		} else {
			sh.saveAt(pos, h, idx, lay, c.Algorithm, c.Limit, next, s.registry.snapshot())
		}
	}
	sh.mu.Unlock()

	*out = d
	return d.Allowed, nil
}

// resolve hashes checks[i] and finds its shard, its layout and any earlier
// check in refs (the refs of checks[:i]) with the same key. It returns the
// error of Limit.Validate for an invalid limit.
func (s *Store) resolve(checks []store.Check, refs []ref, i int) (ref, error) {
	c := &checks[i]
	idx, lay, err := s.registry.lookup(c.Algorithm, &c.Limit)
	if err != nil {
		return ref{}, err
	}
	if idx == 0 {
		// The registry is full and did not validate the limit.
		if err := c.Limit.Validate(); err != nil {
			return ref{}, err
		}
	}
	r := ref{hash: s.hash(c.Key), idx: idx, lay: lay, same: -1}
	r.shard = s.shardOf(r.hash)
	for j := i - 1; j >= 0; j-- {
		if refs[j].hash == r.hash && checks[j].Key == c.Key {
			r.same = j
			break
		}
	}
	return r, nil
}

// decideLocked decides every check and writes the new states when all
// allow. The caller holds the lock of every shard the checks fall in.
func (s *Store) decideLocked(checks []store.Check, refs []ref, now, cost int64,
	out []algorithm.Decision, layouts []layout) bool {
	var stateBuf, loadedBuf [8]algorithm.State
	states, loaded := stateBuf[:0], loadedBuf[:0]
	allowed := true
	for i := range checks {
		c := &checks[i]
		st := s.stateBefore(checks, refs, states, loaded, i, now, layouts)
		next, d := algorithm.Decide(c.Algorithm, st, now, c.Limit, cost)
		out[i] = d
		loaded = append(loaded, st)
		states = append(states, next)
		allowed = allowed && d.Allowed
	}
	if !allowed {
		s.reportUncharged(checks, refs, loaded, now, out, layouts)
		return false
	}

	for i := range checks {
		if states[i] == loaded[i] {
			continue // a request of cost 0 changes nothing
		}
		c, r := &checks[i], &refs[i]
		s.shards[r.shard].save(r.hash, r.idx, r.lay, c.Algorithm, c.Limit, states[i], layouts)
	}
	return true
}

// stateBefore returns the state that check i reads: the new state of the
// last earlier check that changed the same key, or the stored state when
// none did. So a request that names one key twice is charged twice, in
// order. A state another algorithm wrote reads as the zero State, as in
// load and in the Redis store. states and loaded contain the new and the
// read states of checks[:i].
func (s *Store) stateBefore(checks []store.Check, refs []ref, states, loaded []algorithm.State,
	i int, now int64, layouts []layout) algorithm.State {
	c, r := &checks[i], &refs[i]
	j := r.same
	for j >= 0 && states[j] == loaded[j] {
		j = refs[j].same
	}
	switch {
	case j < 0:
		return s.shards[r.shard].load(r.hash, c.Algorithm, now, layouts)
	case checks[j].Algorithm == c.Algorithm:
		return states[j]
	}
	return algorithm.State{}
}

// reportUncharged rewrites the decisions of the checks that allowed a request
// that another check denied: nothing was charged, so each reports its
// budget as a request of cost 0 would get it, from the state before the
// request. A check that names the key of an earlier check reads the stored
// state again, because the earlier check read it for its own algorithm.
func (s *Store) reportUncharged(checks []store.Check, refs []ref, loaded []algorithm.State,
	now int64, out []algorithm.Decision, layouts []layout) {
	for i := range checks {
		if !out[i].Allowed {
			continue
		}
		c, r := &checks[i], &refs[i]
		st := loaded[i]
		if r.same >= 0 {
			st = s.shards[r.shard].load(r.hash, c.Algorithm, now, layouts)
		}
		_, out[i] = algorithm.Decide(c.Algorithm, st, now, c.Limit, 0)
	}
}

// now returns the store's time in Unix microseconds.
func (s *Store) now() int64 {
	if s.clock != nil {
		return s.clock().UnixMicro()
	}
	// time.Since reads only the monotonic clock, where time.Now reads the
	// wall clock too.
	return s.startMicros + int64(time.Since(s.start)/time.Microsecond)
}

func (s *Store) hash(key string) uint64 {
	return maphash.String(s.seed, key)
}

func (s *Store) shardOf(h uint64) int {
	if s.shardBits == 0 {
		return 0
	}
	return int(h >> (64 - s.shardBits))
}

// insertSorted adds v to the ascending slice a unless a contains it.
func insertSorted(a []int, v int) []int {
	i := len(a)
	for i > 0 && a[i-1] > v {
		i--
	}
	if i > 0 && a[i-1] == v {
		return a
	}
	a = append(a, 0)
	copy(a[i+1:], a[i:])
	a[i] = v
	return a
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// sweepChunk is the number of slots a sweep handles per lock hold, so that
// a check waits for a sweep for a few microseconds at most.
const sweepChunk = 1024

// sweep drops every expired key, shard by shard and chunk by chunk, and
// moves forward the base of every shard whose base is half a rebaseSpan
// old, and returns how many keys it dropped.
func (s *Store) sweep() int {
	n := 0
	for i := range s.shards {
		n += s.sweepShard(&s.shards[i])
	}
	return n
}

func (s *Store) sweepShard(sh *shard) int {
	sh.mu.Lock()
	now := s.now()
	if now-sh.base >= rebaseSpan/2 {
		n := sh.rebase(now, s.registry.snapshot())
		sh.mu.Unlock()
		return n
	}
	n := sh.sweepWide(now)
	sh.mu.Unlock()

	for from := 0; ; from += sweepChunk {
		sh.mu.Lock()
		if from >= sh.words.n {
			sh.mu.Unlock()
			return n
		}
		to := min(from+sweepChunk, sh.words.n)
		n += sh.sweepSlots(s.now(), s.registry.snapshot(), from, to)
		sh.mu.Unlock()
	}
}

// sweepEvery runs sweep every interval until Close.
func (s *Store) sweepEvery(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// contains reports whether the store holds key, expired or not. Tests use
// it to see evictions.
func (s *Store) contains(key string) bool {
	h := s.hash(key)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.wide[h]; ok {
		return true
	}
	b1, b2 := sh.buckets(h)
	return sh.find(b1, b2, fingerprint(h)) >= 0
}
