// Package memory is calm's in-process store: rate-limit state kept in the
// heap of one process, bounded by a maximum number of keys.
//
// The store is split into shards, each guarded by its own mutex, so checks
// on different keys rarely contend. A call to Apply locks every shard its
// keys fall in, in ascending shard order, decides every check and writes the
// new states only when every check allows, so stacked rules are charged all
// together or not at all.
//
// Each key has an expiry: the time after which its state can no longer
// change a decision, so that forgetting it is the same as keeping it (see
// horizon). Expired keys are dropped by one background sweeper goroutine per
// store and are read as fresh state before the sweeper reaches them. When a
// shard is full, inserting a new key evicts the shard's least recently used
// key.
package memory

import (
	"container/list"
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

// maxShards is the number of shards of a store large enough to use them
// all. It is a power of two well above the core count of common servers,
// so that two cores rarely want the same shard.
const maxShards = 64

// ErrShortOutput is returned by Apply when out has fewer elements than
// checks.
var ErrShortOutput = errors.New("memory: out is shorter than checks")

// Config configures a Store. The zero value is usable: every zero field
// means its documented default.
type Config struct {
	// MaxKeys is the largest number of keys the store holds
	// (RATELIMIT_MEMORY_MAX_KEYS). Inserting a key into a full shard evicts
	// that shard's least recently used key. Zero means DefaultMaxKeys;
	// negative values are invalid (see Validate).
	MaxKeys int
	// CleanupInterval is the period of the sweeper that drops expired keys
	// (RATELIMIT_MEMORY_CLEANUP_INTERVAL). Zero means
	// DefaultCleanupInterval; negative values are invalid.
	CleanupInterval time.Duration
	// Clock returns the current time. Nil means time.Now. Only its
	// microseconds since the Unix epoch are used.
	Clock func() time.Time
}

// Validate reports a negative MaxKeys or CleanupInterval, naming the
// setting, the value and the fix.
func (c Config) Validate() error {
	if c.MaxKeys < 0 {
		return fmt.Errorf("memory: RATELIMIT_MEMORY_MAX_KEYS is %d: use a positive number of keys, or 0 for the default %d",
			c.MaxKeys, DefaultMaxKeys)
	}
	if c.CleanupInterval < 0 {
		return fmt.Errorf("memory: RATELIMIT_MEMORY_CLEANUP_INTERVAL is %s: use a positive duration such as 1m, or 0 for the default %s",
			c.CleanupInterval, DefaultCleanupInterval)
	}
	return nil
}

// Store is an in-memory store.Store. It is safe for concurrent use. Create
// it with New and stop its sweeper with Close.
type Store struct {
	clock     func() time.Time
	seed      maphash.Seed
	shards    []shard
	shardBits uint
	closed    atomic.Bool
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// New returns a Store configured by cfg and starts its sweeper goroutine.
// Zero or negative fields of cfg take their defaults; call Config.Validate
// first to reject negative values.
func New(cfg Config) *Store {
	return newStore(cfg, maxShards)
}

// newStore is New with at most maxShards shards, a power of two.
func newStore(cfg Config, maxShards int) *Store {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = DefaultCleanupInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}

	// A small store uses fewer shards, so that every shard holds at least
	// one key and the shard capacities add up to at most MaxKeys.
	bits := uint(0)
	for 1<<(bits+1) <= maxShards && 1<<(bits+1) <= cfg.MaxKeys {
		bits++
	}
	n := 1 << bits
	s := &Store{
		clock:     cfg.Clock,
		seed:      maphash.MakeSeed(),
		shards:    make([]shard, n),
		shardBits: bits,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].init(cfg.MaxKeys / n)
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
		n += len(sh.index)
		sh.mu.Unlock()
	}
	return n
}

// Apply decides every check for a request of the given cost at the time of
// the store's clock and charges all of them only if all allow. See
// store.Store. It returns an error wrapping algorithm.ErrInvalidLimit when a
// check's Limit is invalid, ErrShortOutput when out is too short, the
// context's error when ctx is done, and store.ErrClosed after Close; in
// those cases nothing is charged.
func (s *Store) Apply(ctx context.Context, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(out) < len(checks) {
		return false, fmt.Errorf("%w: %d decisions for %d checks", ErrShortOutput, len(out), len(checks))
	}
	for i := range checks {
		if err := checks[i].Limit.Validate(); err != nil {
			return false, fmt.Errorf("memory: check %d (%s): %w", i, checks[i].Algorithm, err)
		}
	}
	if len(checks) == 0 {
		return true, nil
	}

	var hashBuf [8]uint64
	var shardBuf [8]int
	hashes, shards := hashBuf[:0], shardBuf[:0]
	for i := range checks {
		h := s.hash(checks[i].Key)
		hashes = append(hashes, h)
		shards = insertSorted(shards, s.shardOf(h))
	}

	for _, i := range shards {
		s.shards[i].mu.Lock()
	}
	allowed := s.decideLocked(checks, hashes, cost, out)
	for j := len(shards) - 1; j >= 0; j-- {
		s.shards[shards[j]].mu.Unlock()
	}
	return allowed, nil
}

// decideLocked decides every check and writes the new states when all
// allow. The caller holds the lock of every shard the checks fall in.
func (s *Store) decideLocked(checks []store.Check, hashes []uint64, cost int64, out []algorithm.Decision) bool {
	now := s.clock().UnixMicro()
	var stateBuf [8]algorithm.State
	states := stateBuf[:0]
	allowed := true
	for i := range checks {
		c := &checks[i]
		st := s.pendingState(checks[:i], states, c.Key)
		if st == nil {
			cur := s.shards[s.shardOf(hashes[i])].get(c.Key, now)
			st = &cur
		}
		next, d := algorithm.Decide(c.Algorithm, *st, now, c.Limit, cost)
		out[i] = d
		states = append(states, next)
		allowed = allowed && d.Allowed
	}
	if !allowed {
		// A denied client is still an active one: keep its state from
		// being the next to go.
		for i := range checks {
			s.shards[s.shardOf(hashes[i])].touch(checks[i].Key)
		}
		return false
	}

	for i := range checks {
		c := &checks[i]
		expiry := satAdd(now, horizon(c.Limit))
		s.shards[s.shardOf(hashes[i])].put(c.Key, states[i], expiry)
	}
	return true
}

// pendingState returns the state that an earlier check of the same call
// left for key, or nil when no earlier check has that key. A request that
// names one key twice is charged twice, in order.
func (s *Store) pendingState(earlier []store.Check, states []algorithm.State, key string) *algorithm.State {
	for j := len(earlier) - 1; j >= 0; j-- {
		if earlier[j].Key == key {
			return &states[j]
		}
	}
	return nil
}

func (s *Store) hash(key string) uint64 {
	return maphash.String(s.seed, key)
}

// contains reports whether the store holds key, expired or not.
func (s *Store) contains(key string) bool {
	sh := &s.shards[s.shardOf(s.hash(key))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.index[key]
	return ok
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

// horizon returns how long after a write the written state can still change
// a decision, in microseconds. Past it, the state decides exactly as the
// zero State does, so the store may forget it.
//
// A fixed window matters until its window ends (at most Window), a sliding
// window until the following window ends (at most 2×Window). A bucket is
// full again, or empty for the leaky kinds, after Capacity emission
// intervals of Window/Quota each; a queue adds the longest wait it may have
// promised. The bound used here is their sum for every kind, rounded up, so
// that a change in how one algorithm uses its state cannot make the store
// forget it early.
func horizon(l algorithm.Limit) int64 {
	interval := l.Window/l.Quota + 1
	h := satAdd(2*l.Window, satMul(l.Capacity(), interval))
	return satAdd(h, l.MaxWait)
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// shard is one lock's share of the keys, with its own LRU order.
type shard struct {
	mu    sync.Mutex
	cap   int
	index map[string]*list.Element
	lru   list.List // front is the most recently used
}

type entry struct {
	key    string
	state  algorithm.State
	expiry int64 // Unix µs after which state no longer matters
}

func (sh *shard) init(capacity int) {
	sh.cap = capacity
	sh.index = make(map[string]*list.Element)
}

// get returns the state of key at time now, the zero State when the key is
// absent or expired. The caller holds sh.mu.
func (sh *shard) get(key string, now int64) algorithm.State {
	el, ok := sh.index[key]
	if !ok {
		return algorithm.State{}
	}
	e := el.Value.(*entry)
	if e.expiry <= now {
		return algorithm.State{}
	}
	return e.state
}

// touch marks key most recently used if the shard holds it. The caller
// holds sh.mu.
func (sh *shard) touch(key string) {
	if el, ok := sh.index[key]; ok {
		sh.lru.MoveToFront(el)
	}
}

// put stores the state of key and marks it most recently used, evicting the
// least recently used key when the shard is full. An expiry earlier than
// the one stored keeps the later one, so that a clock step backwards never
// shortens a key's life. The caller holds sh.mu.
func (sh *shard) put(key string, st algorithm.State, expiry int64) {
	if el, ok := sh.index[key]; ok {
		e := el.Value.(*entry)
		e.state = st
		e.expiry = max(e.expiry, expiry)
		sh.lru.MoveToFront(el)
		return
	}
	if len(sh.index) >= sh.cap {
		oldest := sh.lru.Back()
		delete(sh.index, oldest.Value.(*entry).key)
		sh.lru.Remove(oldest)
	}
	sh.index[key] = sh.lru.PushFront(&entry{key: key, state: st, expiry: expiry})
}

// sweep drops the keys that expired at or before now and returns how many
// it dropped. It locks sh.mu.
func (sh *shard) sweep(now int64) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := 0
	for el := sh.lru.Back(); el != nil; {
		prev := el.Prev()
		e := el.Value.(*entry)
		if e.expiry <= now {
			delete(sh.index, e.key)
			sh.lru.Remove(el)
			n++
		}
		el = prev
	}
	return n
}

// sweep drops every expired key, one shard at a time, and returns how many
// it dropped.
func (s *Store) sweep() int {
	n := 0
	for i := range s.shards {
		n += s.shards[i].sweep(s.clock().UnixMicro())
	}
	return n
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
