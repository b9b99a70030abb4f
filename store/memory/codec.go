package memory

import (
	"math"
	"math/bits"

	"github.com/calm-limiter/calm/algorithm"
)

// A compact slot keeps a state in payloadBits bits of its word, or in
// payloadBits+extBits bits when the shard's ext array is used too. Which
// form a (kind, limit) pair gets, and how many bits each field takes, is
// fixed once per pair in a layout.
//
// Times are stored relative to the shard's base, a recent Unix time that
// the shard moves forward at least every rebaseSpan microseconds, so a few
// dozen bits cover them exactly. The sweeper moves it once it is half a
// span behind, and Apply when it is a whole span behind. Every encoder checks that each value fits
// its field. When one does not, the state goes to the shard's wide map,
// which keeps it unchanged.
const (
	payloadBits = 40
	extBits     = 32
	rebaseSpan  = 1 << 30 // µs, about 18 minutes
)

// form is the storage a layout chooses.
type form uint8

const (
	formWide form = iota // no compact encoding: the wide map only
	formWord             // payloadBits in the slot's word
	formExt              // payloadBits in the word, extBits in ext
)

// layout is the compact encoding of the states of one (kind, limit) pair.
// Every encoding is exact: decode(encode(s)) == s.
//
//	FixedWindow, SlidingWindow  A as a window number relative to the
//	                            window before the base's, B and C as counts
//	GCRA, LeakyQueue,           A as µs relative to the base,
//	TokenBucket, LeakyBucket    B / unit (the TAT fraction)
//
// Every field is unsigned. A state the shard keeps has not expired, so its
// window is at latest the one before the base's, and its TAT is not before
// the base, which rebase only moves to the present (see rebase). A state
// outside these bounds, after the clock stepped back, goes to the wide map.
//
// unit is gcd(Window, Quota): every TAT fraction the algorithms produce is
// a multiple of it, because they only ever add multiples of Window and
// subtract multiples of Quota.
//
// A formWord payload holds A in bits [0, aBits), B in [aBits, cShift) and
// C from cShift up, as the packer lays them out. The layout keeps the
// shifts and masks, so that encode and decode need no packer for it.
type layout struct {
	kind                algorithm.Kind
	limit               algorithm.Limit
	form                form
	aBits, bBits, cBits uint
	unit                int64

	life int64 // a state expires at A + life (see expiry)
	aOff int64 // added to A's field value before it is stored

	cShift              uint   // aBits + bBits
	aMask, bMask, cMask uint64 // 2^aBits − 1, 2^bBits − 1, 2^cBits − 1
}

func newLayout(k algorithm.Kind, l algorithm.Limit) layout {
	lay := layout{kind: k, limit: l, unit: gcd(l.Window, l.Quota)}
	lay.life = expiry(k, l.Window, algorithm.State{})
	q, w, c := l.Quota, l.Window, l.Capacity()
	switch k {
	case algorithm.FixedWindow, algorithm.SlidingWindow:
		// Apply rebases once now is rebaseSpan past the base, so a state
		// is written at most rebaseSpan/w+1 windows after the base's.
		lay.aOff = 1
		lay.aBits = uint(bits.Len64(uint64(rebaseSpan/w + 2)))
		lay.bBits = uint(bits.Len64(uint64(q)))
		if k == algorithm.SlidingWindow {
			lay.cBits = lay.bBits
		}
	case algorithm.GCRA, algorithm.LeakyQueue, algorithm.TokenBucket, algorithm.LeakyBucket:
		// A TAT that still matters lies between now and now plus the
		// refill time plus the longest wait, so within rebaseSpan plus
		// that much of the base. The field keeps a window to spare.
		reach := satAdd(satAdd(rebaseSpan, c*w/q+w), l.MaxWait)
		lay.aBits = uint(bits.Len64(uint64(reach)))
		lay.bBits = uint(bits.Len64(uint64(q/lay.unit - 1)))
	default:
		return lay
	}
	switch total := lay.aBits + lay.bBits + lay.cBits; {
	case total <= payloadBits:
		lay.form = formWord
	case total <= payloadBits+extBits:
		lay.form = formExt
	}
	lay.cShift = lay.aBits + lay.bBits
	lay.aMask, lay.bMask, lay.cMask = 1<<lay.aBits-1, 1<<lay.bBits-1, 1<<lay.cBits-1
	return lay
}

// wordBits returns the number of payload bits the layout keeps in a slot's
// word: its fields for formWord, payloadBits for formExt and 0 for
// formWide, which keeps nothing in slots.
func (lay *layout) wordBits() uint {
	switch lay.form {
	case formWord:
		return lay.aBits + lay.bBits + lay.cBits
	case formExt:
		return payloadBits
	}
	return 0
}

// encode returns the compact form of s relative to base, or ok false when
// s does not fit this layout.
func (lay *layout) encode(s algorithm.State, base int64) (payload, bool) {
	switch lay.form {
	case formWord:
		lo, ok := lay.encodeWord(s, base)
		return payload{lo: lo}, ok
	case formExt:
		return lay.encodePacked(s, base)
	}
	return payload{}, false
}

// encodeWord is encode for formWord: the fields of the packer, written
// with the layout's shifts in a few instructions. Every check finds this
// path, so it avoids the packer's per-field branches.
func (lay *layout) encodeWord(s algorithm.State, base int64) (uint64, bool) {
	var a, b, c int64
	switch lay.kind {
	case algorithm.FixedWindow, algorithm.SlidingWindow:
		w := lay.limit.Window
		if s.A%w != 0 {
			return 0, false
		}
		a, b, c = s.A/w-floorDiv(base, w), s.B, s.C
	default:
		d, noOverflow := sub(s.A, base)
		if !noOverflow || s.C != 0 || s.B%lay.unit != 0 {
			return 0, false
		}
		a, b = d, s.B/lay.unit
	}
	// Each field must fit its bits. A negative value turns into one above
	// any mask.
	a += lay.aOff
	if uint64(a) > lay.aMask || uint64(b) > lay.bMask || uint64(c) > lay.cMask {
		return 0, false
	}
	return uint64(a) | uint64(b)<<(lay.aBits&63) | uint64(c)<<(lay.cShift&63), true
}

// encodePacked is encode through the packer, for formExt.
func (lay *layout) encodePacked(s algorithm.State, base int64) (p payload, ok bool) {
	var pk packer
	switch lay.kind {
	case algorithm.FixedWindow, algorithm.SlidingWindow:
		w := lay.limit.Window
		if s.A%w != 0 {
			return p, false
		}
		ok = pk.putUnsigned(lay.aBits, s.A/w-floorDiv(base, w)+lay.aOff) &&
			pk.putUnsigned(lay.bBits, s.B) && pk.putUnsigned(lay.cBits, s.C)
	default:
		d, noOverflow := sub(s.A, base)
		ok = noOverflow && s.B%lay.unit == 0 && s.C == 0 &&
			pk.putUnsigned(lay.aBits, d) && pk.putUnsigned(lay.bBits, s.B/lay.unit)
	}
	return pk.p, ok
}

// decode returns the state that p encodes relative to base.
func (lay *layout) decode(p payload, base int64) algorithm.State {
	if lay.form == formWord {
		return lay.decodeWord(p.lo, base)
	}
	pk := packer{p: p}
	a, b, c := pk.getUnsigned(lay.aBits), pk.getUnsigned(lay.bBits), pk.getUnsigned(lay.cBits)
	return lay.state(a-lay.aOff, b, c, base)
}

// decodeWord is decode for formWord, from the slot word w; the bits above
// the payload are ignored.
func (lay *layout) decodeWord(w uint64, base int64) algorithm.State {
	a := int64(w&lay.aMask) - lay.aOff
	b := int64(w >> (lay.aBits & 63) & lay.bMask)
	c := int64(w >> (lay.cShift & 63) & lay.cMask)
	return lay.state(a, b, c, base)
}

// state returns the state of the decoded fields a, b and c.
func (lay *layout) state(a, b, c, base int64) algorithm.State {
	switch lay.kind {
	case algorithm.FixedWindow, algorithm.SlidingWindow:
		w := lay.limit.Window
		return algorithm.State{A: (a + floorDiv(base, w)) * w, B: b, C: c}
	}
	return algorithm.State{A: base + a, B: b * lay.unit}
}

// expiry returns the Unix µs from which s decides exactly as the zero State
// does under kind k, so the store may forget it. That is the end of a fixed
// window, the end of the window after a sliding window's current one, and
// one µs past a TAT, which for the buckets is when they are full (or
// empty) again. window is the Window of the rule's Limit, the only part
// of it that matters.
func expiry(k algorithm.Kind, window int64, s algorithm.State) int64 {
	switch k {
	case algorithm.FixedWindow:
		return satAdd(s.A, window)
	case algorithm.SlidingWindow:
		return satAdd(s.A, 2*window)
	case algorithm.GCRA, algorithm.LeakyQueue, algorithm.TokenBucket, algorithm.LeakyBucket:
		return satAdd(s.A, 1)
	}
	return math.MaxInt64
}

// payload is the packed form of a state: lo holds the word's payloadBits,
// hi the ext array's extBits.
type payload struct {
	lo uint64
	hi uint32
}

// packer writes and reads fields of a payload in order, from bit 0 up.
type packer struct {
	p   payload
	pos uint
}

func (pk *packer) put(n uint, v uint64) {
	if pk.pos < payloadBits {
		pk.p.lo |= (v << pk.pos) & (1<<payloadBits - 1)
		if pk.pos+n > payloadBits {
			pk.p.hi |= uint32(v >> (payloadBits - pk.pos))
		}
	} else {
		pk.p.hi |= uint32(v << (pk.pos - payloadBits))
	}
	pk.pos += n
}

func (pk *packer) get(n uint) uint64 {
	var v uint64
	if pk.pos < payloadBits {
		v = pk.p.lo >> pk.pos
		if pk.pos+n > payloadBits {
			v |= uint64(pk.p.hi) << (payloadBits - pk.pos)
		}
	} else {
		v = uint64(pk.p.hi) >> (pk.pos - payloadBits)
	}
	pk.pos += n
	return v & (1<<n - 1)
}

// putUnsigned writes v in n bits and reports whether 0 ≤ v < 2^n.
func (pk *packer) putUnsigned(n uint, v int64) bool {
	if v < 0 || uint64(v)>>n != 0 {
		return false
	}
	pk.put(n, uint64(v))
	return true
}

func (pk *packer) getUnsigned(n uint) int64 { return int64(pk.get(n)) }

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// sub returns a − b and whether it did not overflow.
func sub(a, b int64) (int64, bool) {
	d := a - b
	return d, (d < a) == (b > 0)
}

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
