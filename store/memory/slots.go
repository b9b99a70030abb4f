package memory

import (
	"encoding/binary"
	"math/bits"
)

// slots is a table's slot array, packed: slot pos takes width bits from
// bit pos×width of buf, least significant first:
//
//	fpBits  the key's fingerprint, never 0 in an occupied slot
//	idxW    the layout index minus one
//	payW    the payload
//
// An empty slot is all zeros. A bucket of bucketSlots (8) slots takes
// width bytes, so every bucket starts on a byte. buf ends with 8 bytes
// past the last slot, so that a slot is read with one 8-byte load, and
// one byte more when it straddles them.
//
// The widths grow with the layouts a shard meets: idxW names every layout
// index the shard holds (no bits while it holds one layout) and payW holds
// the widest payload among them. A store of one rule of 1/hour takes 22
// bits per slot under the sliding window counter and 51 under GCRA.
//
// get and set speak in the table's word form, which keeps fields apart
// whatever the widths: the fingerprint from bit tagShift+idxBits up, the
// layout index from bit tagShift and the payload below.
type slots struct {
	buf   []byte
	n     int  // number of slots; 0 until allocated
	width uint // fpBits + idxW + payW, at most 64
	idxW  uint
	payW  uint
}

const fpMask = 1<<fpBits - 1

// alloc returns an empty array of n slots with the widths of s.
func (s *slots) alloc(n int) slots {
	return slots{
		buf:   make([]byte, uint(n)*s.width/8+8),
		n:     n,
		width: s.width,
		idxW:  s.idxW,
		payW:  s.payW,
	}
}

// allocated reports whether the array holds any slots.
func (s *slots) allocated() bool { return s.buf != nil }

// fp returns the fingerprint in slot pos, 0 when the slot is empty.
func (s *slots) fp(pos int) uint64 {
	bit := uint(pos) * s.width
	// 18 bits at a shift of at most 7 lie in 4 bytes.
	return uint64(binary.LittleEndian.Uint32(s.buf[bit>>3:])>>(bit&7)) & fpMask
}

// raw returns the packed bits of slot pos.
func (s *slots) raw(pos int) uint64 {
	bit := uint(pos) * s.width
	o, sh := bit>>3, bit&7
	v := binary.LittleEndian.Uint64(s.buf[o:]) >> sh
	if sh+s.width > 64 {
		v |= uint64(s.buf[o+8]) << (64 - sh)
	}
	return v & (1<<s.width - 1)
}

// setRaw writes the packed bits v, of at most width bits, to slot pos.
func (s *slots) setRaw(pos int, v uint64) {
	bit := uint(pos) * s.width
	o, sh := bit>>3, bit&7
	m := uint64(1)<<s.width - 1
	x := binary.LittleEndian.Uint64(s.buf[o:])
	binary.LittleEndian.PutUint64(s.buf[o:], x&^(m<<sh)|v<<sh)
	if sh+s.width > 64 {
		hi := 64 - sh
		s.buf[o+8] = s.buf[o+8]&^byte(m>>hi) | byte(v>>hi)
	}
}

// get returns the word of slot pos, 0 when it is empty.
func (s *slots) get(pos int) uint64 {
	v := s.raw(pos)
	if v == 0 {
		return 0
	}
	idx := v>>fpBits&(1<<s.idxW-1) + 1
	return (v&fpMask)<<(tagShift+idxBits) | idx<<tagShift | v>>(fpBits+s.idxW)
}

// set writes word w to slot pos, and w == 0 empties it. The word's layout
// index and payload must fit the widths (see fits).
func (s *slots) set(pos int, w uint64) {
	if w == 0 {
		s.setRaw(pos, 0)
		return
	}
	idx, p := w>>tagShift&idxMask, w&payloadMask
	if idx == 0 || idx-1 >= 1<<s.idxW || p >= 1<<s.payW {
		// A write past the widths would spill into the next slot.
		panic("memory: slot word does not fit the table's widths")
	}
	s.setRaw(pos, w>>(tagShift+idxBits)|(idx-1)<<fpBits|p<<(fpBits+s.idxW))
}

// fits reports whether layout index idx and a payload of payW bits fit the
// widths.
func (s *slots) fits(idx uint8, payW uint) bool {
	return idxWidth(idx) <= s.idxW && payW <= s.payW
}

// widen returns an array with the slots of s whose widths hold layout
// index idx and payloads of payW bits as well.
func (s *slots) widen(idx uint8, payW uint) slots {
	w := slots{idxW: max(s.idxW, idxWidth(idx)), payW: max(s.payW, payW)}
	w.width = fpBits + w.idxW + w.payW
	if !s.allocated() {
		return w
	}
	w = w.alloc(s.n)
	for pos := range s.n {
		w.set(pos, s.get(pos))
	}
	return w
}

// idxWidth returns the bits that index idx, stored minus one, needs.
func idxWidth(idx uint8) uint {
	if idx == 0 {
		return 0
	}
	return uint(bits.Len8(idx - 1))
}
