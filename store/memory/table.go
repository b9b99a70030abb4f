package memory

import (
	"sync"
	"sync/atomic"

	"github.com/calm-limiter/calm/algorithm"
)

// A shard's table is an array of slots in buckets of bucketSlots. A key
// may live in either of two buckets chosen from its hash. The slots are
// packed as narrow as the shard's layouts allow (see slots). Code outside
// slots reads and writes each one as a 64-bit word:
//
//	bits 46–63  fingerprint: 18 bits of the key's hash, never 0
//	bits 40–45  layout index in the store's registry, 1 to maxLayouts
//	bits  0–39  payload: the state, encoded by the layout
//
// and 0 when the slot is empty. Layouts of formExt keep 32 more payload
// bits in the shard's ext array at the same position.
const (
	fpBits      = 18
	idxBits     = 6
	maxLayouts  = 1<<idxBits - 1
	bucketSlots = 8
	tagShift    = payloadBits
	payloadMask = 1<<payloadBits - 1
	idxMask     = 1<<idxBits - 1
)

// Slots per key: a table holds its shard's capacity at a load of at most
// loadNum/loadDen, where two-choice insertion into buckets of 8 rarely
// finds both buckets full.
const (
	loadNum = 7
	loadDen = 8
)

// registry numbers the (kind, limit) pairs the store has seen, so that a
// slot can name its layout in idxBits. Reads are lock-free: the slice is
// replaced, never modified, when a pair is added.
type registry struct {
	mu      sync.Mutex
	layouts atomic.Pointer[[]layout]
}

// lookup returns the index and layout of (k, l), adding the pair when it
// is new, or the error of l.Validate for an invalid limit. Only valid
// limits are registered, so a registered pair needs no validation again.
// Once maxLayouts pairs are registered, lookup returns index 0 and a nil
// layout for new pairs, and those keep their state in the wide maps.
func (r *registry) lookup(k algorithm.Kind, l *algorithm.Limit) (uint8, *layout, error) {
	if idx, lay := find(r.layouts.Load(), k, l); lay != nil {
		return idx, lay, nil
	}
	return r.register(k, l)
}

// register is lookup for a pair that was not registered at the first look.
func (r *registry) register(k algorithm.Kind, l *algorithm.Limit) (uint8, *layout, error) {
	if err := l.Validate(); err != nil {
		return 0, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.layouts.Load()
	if idx, lay := find(old, k, l); lay != nil {
		return idx, lay, nil
	}
	var next []layout
	if old != nil {
		if len(*old) >= maxLayouts {
			return 0, nil, nil
		}
		next = append(next, *old...)
	}
	next = append(next, newLayout(k, *l))
	r.layouts.Store(&next)
	return uint8(len(next)), &next[len(next)-1], nil
}

// snapshot returns the registered layouts; index i holds layout index i+1.
func (r *registry) snapshot() []layout {
	if p := r.layouts.Load(); p != nil {
		return *p
	}
	return nil
}

func find(layouts *[]layout, k algorithm.Kind, l *algorithm.Limit) (uint8, *layout) {
	if layouts == nil {
		return 0, nil
	}
	for i := range *layouts {
		if lay := &(*layouts)[i]; sameRule(lay, k, l) {
			return uint8(i + 1), lay
		}
	}
	return 0, nil
}

// sameRule reports whether lay is the layout of (k, l). It compares field
// by field, which the compiler does inline, where == on the Limit struct
// calls memequal.
func sameRule(lay *layout, k algorithm.Kind, l *algorithm.Limit) bool {
	m := &lay.limit
	return m.Quota == l.Quota && m.Window == l.Window && lay.kind == k &&
		m.Burst == l.Burst && m.Delay == l.Delay && m.MaxWait == l.MaxWait
}

// wideEntry is a state kept unencoded, for values that do not fit their
// layout and for layouts with no compact form.
type wideEntry struct {
	state  algorithm.State
	kind   algorithm.Kind // the algorithm that wrote state
	expiry int64
}

// startKeys is the number of keys a shard's first table is sized for.
// The table doubles when its keys fill it to loadNum/loadDen, and until it
// reaches its full size it keeps each key's hash beside the slots. So a
// store of far fewer keys than MaxKeys keeps them in few cache lines, and
// one near MaxKeys takes the full table's bytes and no more.
const startKeys = 256

// shard is one mutex's share of the keys: a compact table plus a map for
// the states the table cannot hold.
//
// The table grows by levels: at level j it is sized for room =
// ⌈cap/2^j⌉ keys, at level 0 for cap. Below level 0, hashes keeps the
// low 32 bits of the key's hash in each slot, the bits that choose its
// buckets, so that growing can place every key in the larger table. Level
// 1 takes at most 8 + 4 bytes per slot, for half the slots of level 0.
type shard struct {
	mu     sync.Mutex
	words  slots                // unallocated until the first insert
	ext    []uint32             // nil until the first formExt insert
	hashes []uint32             // by slot, below level 0; nil at level 0
	nb     uint64               // buckets in words
	count  int                  // keys in words and wide
	cap    int                  // maximum number of keys in the shard
	room   int                  // number of keys at which the table grows; cap at level 0
	level  uint                 // the table's level, 0 at full size
	base   int64                // Unix µs that compact times are relative to
	wide   map[uint64]wideEntry // by the key's 64-bit hash
	_      [64]byte             // keeps neighbouring shards' mutexes off one cache line
}

// init sets up an empty shard of the given capacity whose first table
// holds at least firstKeys keys, or capacity when that is less.
func (sh *shard) init(capacity, firstKeys int, now int64) {
	sh.cap = capacity
	sh.base = now
	for roomAt(capacity, sh.level+1) >= max(firstKeys, 1) {
		sh.level++
	}
	sh.room = roomAt(capacity, sh.level)
	sh.nb = bucketsFor(sh.room)
	sh.wide = make(map[uint64]wideEntry)
}

// roomAt returns the number of keys a table of level j holds in a shard of
// the given capacity: ⌈capacity/2^j⌉.
func roomAt(capacity int, j uint) int {
	return (capacity + 1<<j - 1) >> j
}

// bucketsFor returns the number of buckets that hold keys at a load of
// loadNum/loadDen.
func bucketsFor(keys int) uint64 {
	slots := (keys*loadDen + loadNum - 1) / loadNum
	return uint64((slots + bucketSlots - 1) / bucketSlots)
}

// allocate makes the arrays of a table of at least sh.nb buckets: words,
// hashes below level 0, and ext when withExt is true. The words take whole
// pages of the Go heap, as every large allocation does, and the table
// takes as many more buckets as that leaves room for.
func (sh *shard) allocate(withExt bool) {
	sh.nb = fillPages(sh.nb, sh.words.width)
	n := sh.nb * bucketSlots
	sh.words = sh.words.alloc(int(n))
	sh.hashes, sh.ext = nil, nil
	if sh.level > 0 {
		sh.hashes = make([]uint32, n)
	}
	if withExt {
		sh.ext = make([]uint32, n)
	}
}

// The Go heap gives an allocation above largeAlloc bytes whole pages of
// heapPage bytes: MaxSmallSize and 1<<PageShift in the runtime's
// internal/runtime/gc of Go 1.26. Another size only wastes part of a page.
const (
	heapPage   = 8192
	largeAlloc = 32 << 10
)

// fillPages returns the number of buckets of slots width bits wide, at
// least nb, that fill the pages the words of nb buckets take. A bucket of
// bucketSlots (8) slots takes width bytes, and the words 8 bytes more.
func fillPages(nb uint64, width uint) uint64 {
	bytes := nb*uint64(width) + 8
	if bytes <= largeAlloc {
		return nb
	}
	pages := (bytes + heapPage - 1) / heapPage
	return (pages*heapPage - 8) / uint64(width)
}

// grow moves the table one level up: it allocates the larger table and
// places every key in it by its hash. The caller holds sh.mu and
// sh.level > 0.
//
// NOTE: growing holds the lock while it moves every key of the shard,
// 0.2 to 0.3 ms for the last growth of a shard of a million-key store
// (BenchmarkGrow), a few times in the life of the store.
func (sh *shard) grow(layouts []layout) {
	words, ext, hashes := sh.words, sh.ext, sh.hashes
	sh.level--
	sh.room = roomAt(sh.cap, sh.level)
	sh.nb = bucketsFor(sh.room)
	sh.allocate(ext != nil)
	for from := range words.n {
		w := words.raw(from)
		if w == 0 {
			continue
		}
		h := hashes[from]
		b1, b2 := sh.bucketsOf(h)
		to := sh.freeSlot(b1, b2)
		if to < 0 {
			// Both buckets full in a table about half full: practically
			// never, and then handled as a full shard handles a new key.
			to = sh.victim(b1, b2, layouts)
			sh.count--
		}
		sh.words.setRaw(to, w)
		if ext != nil {
			sh.ext[to] = ext[from]
		}
		if sh.hashes != nil {
			sh.hashes[to] = h
		}
	}
}

// fingerprint returns the fingerprint of the key with hash h, never 0:
// bits 32 to 49 of the hash. The shard takes up to the top 12 bits (for
// maxShards) and both buckets the low 32, so every fingerprint bit varies
// among the keys of one shard and of one bucket.
func fingerprint(h uint64) uint64 {
	if fp := (h >> 32) & (1<<fpBits - 1); fp != 0 {
		return fp
	}
	return 1
}

// buckets returns the two buckets of the key with hash h. They may be
// equal.
func (sh *shard) buckets(h uint64) (uint64, uint64) {
	return sh.bucketsOf(uint32(h))
}

// bucketsOf returns the two buckets of the keys whose hash has the low 32
// bits x. The first comes from the top bits of x. The second comes from
// the top bits of x times 2^32 over the golden ratio, an odd constant, so
// the keys of one first bucket scatter over the table.
func (sh *shard) bucketsOf(x uint32) (uint64, uint64) {
	b1 := uint64(x) * sh.nb >> 32
	b2 := uint64(x*0x9e3779b9) * sh.nb >> 32
	return b1, b2
}

// find returns the slot with fingerprint fp in buckets b1 and b2, or -1.
// A key has one slot whichever rule wrote it last, and the slot's layout
// index names the encoding of its payload.
func (sh *shard) find(b1, b2, fp uint64) int {
	if !sh.words.allocated() {
		return -1
	}
	if i := sh.scan(b1, fp); i >= 0 {
		return i
	}
	return sh.scan(b2, fp)
}

// scan returns the slot with fingerprint fp in bucket b, or -1.
func (sh *shard) scan(b, fp uint64) int {
	first := int(b) * bucketSlots
	for pos := first; pos < first+bucketSlots; pos++ {
		if sh.words.fp(pos) == fp {
			return pos
		}
	}
	return -1
}

// slotLayout returns the layout index of the slot word w.
func slotLayout(w uint64) uint8 {
	return uint8(w >> tagShift & idxMask)
}

func (sh *shard) payloadAt(pos int) payload {
	p := payload{lo: sh.words.get(pos) & payloadMask}
	if sh.ext != nil {
		p.hi = sh.ext[pos]
	}
	return p
}

// write stores payload p in slot pos for the key with fingerprint fp under
// layout index idx.
func (sh *shard) write(pos int, fp uint64, idx uint8, p payload) {
	sh.words.set(pos, (fp<<idxBits|uint64(idx))<<tagShift|p.lo)
	if sh.ext != nil {
		sh.ext[pos] = p.hi
	}
}

// slotState returns the state in the occupied slot pos, the kind that
// wrote it and its expiry.
func (sh *shard) slotState(pos int, layouts []layout) (algorithm.State, algorithm.Kind, int64) {
	lay := &layouts[slotLayout(sh.words.get(pos))-1]
	s := lay.decode(sh.payloadAt(pos), sh.base)
	return s, lay.kind, expiry(lay.kind, lay.limit.Window, s)
}

// load returns the state of the key with hash h for algorithm k at time
// now. It returns the zero State when the shard does not hold the key,
// when the state has expired, and when another algorithm wrote it. So a
// key whose algorithm changes starts afresh, as in the Redis store, and no
// layout is read as another. A state written under another limit of the
// same algorithm is kept. The caller holds sh.mu.
func (sh *shard) load(h uint64, k algorithm.Kind, now int64, layouts []layout) algorithm.State {
	return sh.loadAt(sh.locate(h), h, k, now, layouts)
}

// locate returns the slot of the key with hash h, or -1. The caller holds
// sh.mu.
func (sh *shard) locate(h uint64) int {
	b1, b2 := sh.buckets(h)
	return sh.find(b1, b2, fingerprint(h))
}

// loadAt is load for a key whose slot locate found at pos (or -1).
func (sh *shard) loadAt(pos int, h uint64, k algorithm.Kind, now int64,
	layouts []layout) algorithm.State {
	if pos >= 0 {
		if s, kind, e := sh.slotState(pos, layouts); kind == k && e > now {
			return s
		}
		return algorithm.State{}
	}
	if len(sh.wide) > 0 {
		if e, ok := sh.wide[h]; ok && e.kind == k && e.expiry > now {
			return e.state
		}
	}
	return algorithm.State{}
}

// save stores s as the state of the key with hash h under the check's kind
// k and limit l, whose layout is lay with index idx. Both are nil and 0
// when the registry is full. It keeps s compact when it fits and in the
// wide map otherwise, and evicts a key when the shard is full. The caller
// holds sh.mu.
func (sh *shard) save(h uint64, idx uint8, lay *layout, k algorithm.Kind, l algorithm.Limit,
	s algorithm.State, layouts []layout) {
	sh.saveAt(sh.locate(h), h, idx, lay, k, l, s, layouts)
}

// saveAt is save for a key whose slot locate found at pos (or -1) with
// the lock held since.
func (sh *shard) saveAt(pos int, h uint64, idx uint8, lay *layout, k algorithm.Kind,
	l algorithm.Limit, s algorithm.State, layouts []layout) {
	b1, b2 := sh.buckets(h)
	if lay != nil {
		if p, ok := lay.encode(s, sh.base); ok {
			if !sh.words.fits(idx, lay.wordBits()) {
				sh.words = sh.words.widen(idx, lay.wordBits())
			}
			sh.saveCompact(pos, b1, b2, h, idx, p, lay.form == formExt, layouts)
			return
		}
	}

	if pos >= 0 {
		sh.words.set(pos, 0)
		sh.count--
	}
	if _, ok := sh.wide[h]; !ok {
		if sh.count >= sh.cap {
			sh.evict(b1, b2, layouts)
		}
		sh.count++
	}
	sh.wide[h] = wideEntry{state: s, kind: k, expiry: expiry(k, l.Window, s)}
}

// saveCompact writes payload p for the key with hash h under layout index
// idx at pos, or into a free or evicted slot of b1 or b2 when pos is -1.
// The caller holds sh.mu.
func (sh *shard) saveCompact(pos int, b1, b2, h uint64, idx uint8, p payload, useExt bool,
	layouts []layout) {
	if !sh.words.allocated() {
		sh.allocate(useExt)
	} else if useExt && sh.ext == nil {
		sh.ext = make([]uint32, sh.nb*bucketSlots)
	}
	fp := fingerprint(h)
	if pos >= 0 {
		sh.write(pos, fp, idx, p)
		return
	}
	if len(sh.wide) > 0 {
		if _, ok := sh.wide[h]; ok {
			delete(sh.wide, h)
			sh.count--
		}
	}
	for sh.count >= sh.room && sh.level > 0 {
		sh.grow(layouts)
	}
	b1, b2 = sh.buckets(h)
	if sh.count >= sh.cap {
		sh.evict(b1, b2, layouts)
	}
	pos = sh.freeSlot(b1, b2)
	for pos < 0 && sh.level > 0 {
		sh.grow(layouts)
		b1, b2 = sh.buckets(h)
		pos = sh.freeSlot(b1, b2)
	}
	if pos < 0 {
		pos = sh.victim(b1, b2, layouts)
		sh.words.set(pos, 0)
		sh.count--
	}
	sh.write(pos, fp, idx, p)
	if sh.hashes != nil {
		sh.hashes[pos] = uint32(h)
	}
	sh.count++
}

// freeSlot returns an empty slot in the emptier of b1 and b2, or -1.
func (sh *shard) freeSlot(b1, b2 uint64) int {
	free1, pos1 := sh.emptySlots(b1)
	free2, pos2 := sh.emptySlots(b2)
	switch {
	case free1 == 0 && free2 == 0:
		return -1
	case free2 > free1:
		return pos2
	}
	return pos1
}

// emptySlots returns the number of empty slots in bucket b and the first.
func (sh *shard) emptySlots(b uint64) (int, int) {
	n, first := 0, -1
	for pos := int(b) * bucketSlots; pos < int(b+1)*bucketSlots; pos++ {
		if sh.words.fp(pos) == 0 {
			if n == 0 {
				first = pos
			}
			n++
		}
	}
	return n, first
}

// victim returns the occupied slot of buckets b1 and b2 whose state expires
// first, or -1 when both are empty.
func (sh *shard) victim(b1, b2 uint64, layouts []layout) int {
	best, bestExpiry := -1, int64(0)
	for _, b := range [2]uint64{b1, b2} {
		for pos := int(b) * bucketSlots; pos < int(b+1)*bucketSlots; pos++ {
			if sh.words.fp(pos) == 0 {
				continue
			}
			if _, _, e := sh.slotState(pos, layouts); best < 0 || e < bestExpiry {
				best, bestExpiry = pos, e
			}
		}
	}
	return best
}

// evict removes one key to make room for another: the first to expire in
// buckets b1 and b2, else the first found in the buckets after them, else
// a key of the wide map. The caller holds sh.mu and sh.count > 0.
func (sh *shard) evict(b1, b2 uint64, layouts []layout) {
	if sh.words.allocated() {
		pos := sh.victim(b1, b2, layouts)
		for b := (b1 + 1) % sh.nb; pos < 0 && b != b1; b = (b + 1) % sh.nb {
			pos = sh.victim(b, b, layouts)
		}
		if pos >= 0 {
			sh.words.set(pos, 0)
			sh.count--
			return
		}
	}
	for key := range sh.wide {
		// Map iteration starts at a random entry: a sampled eviction.
		delete(sh.wide, key)
		sh.count--
		return
	}
}

// sweepWide drops the wide entries expired at now and returns how many it
// dropped. The caller holds sh.mu.
func (sh *shard) sweepWide(now int64) int {
	dropped := 0
	for key, e := range sh.wide {
		if e.expiry <= now {
			delete(sh.wide, key)
			sh.count--
			dropped++
		}
	}
	return dropped
}

// sweepSlots drops the keys in slots [from, to) whose state expired at now
// and returns how many it dropped. The caller holds sh.mu.
func (sh *shard) sweepSlots(now int64, layouts []layout, from, to int) int {
	dropped := 0
	for pos := from; pos < to; pos++ {
		if sh.words.fp(pos) == 0 {
			continue
		}
		if _, _, e := sh.slotState(pos, layouts); e <= now {
			sh.words.set(pos, 0)
			sh.count--
			dropped++
		}
	}
	return dropped
}

// rebase drops every key expired at now, moves the base forward to now and
// re-encodes every kept slot, and returns the number of keys dropped. The
// caller holds sh.mu.
//
// NOTE: a rebase holds the lock for the whole shard, 0.25 to 0.3 ms for a
// shard of 15,625 keys (BenchmarkRebase), once every 9 minutes. A slot bit
// naming one of two bases would let it move slots in chunks like sweeps.
//
// A state that has not expired at now fits its layout relative to any base
// between the old base and now (see the layout bounds), so re-encoding
// does not fail. A slot that did not fit would be dropped and counted.
func (sh *shard) rebase(now int64, layouts []layout) int {
	dropped := sh.sweepWide(now)
	newBase := max(sh.base, now)
	for pos := range sh.words.n {
		w := sh.words.get(pos)
		if w == 0 {
			continue
		}
		lay := &layouts[slotLayout(w)-1]
		s := lay.decode(sh.payloadAt(pos), sh.base)
		if expiry(lay.kind, lay.limit.Window, s) <= now {
			sh.words.set(pos, 0)
			sh.count--
			dropped++
			continue
		}
		if newBase == sh.base {
			continue
		}
		p, ok := lay.encode(s, newBase)
		if !ok {
			sh.words.set(pos, 0)
			sh.count--
			dropped++
			continue
		}
		sh.write(pos, w>>(tagShift+idxBits), uint8((w>>tagShift)&idxMask), p)
	}
	sh.base = newBase
	return dropped
}
