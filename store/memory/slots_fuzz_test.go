package memory

import (
	"math/rand/v2"
	"testing"
)

// FuzzSlots applies a sequence of writes, empties and widenings to a slot
// array and checks, after each one, every bit of the array against the
// layout that slots documents: slot pos takes width bits from bit
// pos×width, fingerprint first, then the layout index minus one, then the
// payload. So a write that touches a bit of a neighbouring slot, or a byte
// past the last slot, fails here even when get would hide it.
//
// Each byte of ops is one step: its low 2 bits choose the step (0 and 1
// write a random word, 2 empties a slot, 3 widens), the rest the slot or
// the new widths. seed draws the words.
func FuzzSlots(f *testing.F) {
	f.Add(uint8(0), uint8(4), uint8(1), uint64(1), []byte{0, 4, 8, 12, 16, 20, 24, 28})
	f.Add(uint8(0), uint8(22), uint8(3), uint64(2), []byte{1, 5, 0xfc, 9, 0xff, 13, 3, 0xfd})
	f.Add(uint8(6), uint8(40), uint8(2), uint64(3), []byte{0xfc, 0xf8, 0xf4, 0x7c, 0x7e, 2})
	f.Add(uint8(6), uint8(39), uint8(5), uint64(4), []byte{0, 0xfc, 4, 0xf8, 8, 0xf6})
	f.Add(uint8(1), uint8(0), uint8(1), uint64(5), []byte{3, 0, 7, 4, 0x0b, 8, 0xff, 0xfc})
	f.Add(uint8(3), uint8(33), uint8(4), uint64(6), []byte{0x13, 0x33, 0x53, 0x73, 0x93, 0xb3})
	f.Fuzz(func(t *testing.T, idxW, payW, buckets uint8, seed uint64, ops []byte) {
		s := newSlots(uint(idxW)%(idxBits+1), uint(payW)%(payloadBits+1),
			(1+int(buckets)%8)*bucketSlots)
		r := rand.New(rand.NewPCG(seed, uint64(len(ops))))
		want := make([]uint64, s.n)
		for step, op := range ops {
			pos := int(op>>2) % s.n
			switch op & 3 {
			case 0, 1:
				want[pos] = randomWord(r, &s)
				s.set(pos, want[pos])
			case 2:
				want[pos] = 0
				s.set(pos, 0)
			case 3:
				idx := uint8(1 + int(op>>2)%maxLayouts)
				payW := uint(op>>2) % (payloadBits + 1)
				s = s.widen(idx, payW)
				if !s.fits(idx, payW) {
					t.Fatalf("step %d: after widen(%d, %d) fits = false", step, idx, payW)
				}
			}
			checkSlotBits(t, &s, want, step)
		}
	})
}

// checkSlotBits fails the test when a bit of s differs from the packing
// of want, or when a byte past the last slot is not zero.
func checkSlotBits(t *testing.T, s *slots, want []uint64, step int) {
	t.Helper()
	for pos, w := range want {
		var packed uint64
		if w != 0 {
			fp := w >> (tagShift + idxBits)
			idx := w >> tagShift & idxMask
			packed = fp | (idx-1)<<fpBits | (w&payloadMask)<<(fpBits+s.idxW)
		}
		for i := range s.width {
			bit := uint(pos)*s.width + i
			got := uint64(s.buf[bit/8]>>(bit%8)) & 1
			if got != packed>>i&1 {
				t.Fatalf("step %d: width %d, slot %d bit %d = %d, want %d (word %#x)",
					step, s.width, pos, i, got, packed>>i&1, w)
			}
		}
		if got := s.get(pos); got != w {
			t.Fatalf("step %d: get(%d) = %#x, want %#x", step, pos, got, w)
		}
	}
	end := uint(s.n) * s.width / 8
	for i := end; i < uint(len(s.buf)); i++ {
		if s.buf[i] != 0 {
			t.Fatalf("step %d: width %d, byte %d past the last slot = %#x, want 0",
				step, s.width, i-end, s.buf[i])
		}
	}
}
