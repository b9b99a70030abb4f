package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// randomWord returns an occupied slot word that fits the widths of s.
func randomWord(r *rand.Rand, s *slots) uint64 {
	fp := 1 + r.Uint64N(fpMask)
	idx := 1 + r.Uint64N(min(uint64(1)<<s.idxW, maxLayouts))
	p := r.Uint64() & (1<<s.payW - 1)
	return fp<<(tagShift+idxBits) | idx<<tagShift | p
}

func newSlots(idxW, payW uint, n int) slots {
	s := slots{idxW: idxW, payW: payW, width: fpBits + idxW + payW}
	return s.alloc(n)
}

// TestSlotsKeepEveryWord writes random words, and empties, to random slots
// of tables of many widths, straddling bytes and 8-byte loads, and checks
// after each write that every slot holds what was last written to it.
func TestSlotsKeepEveryWord(t *testing.T) {
	t.Parallel()
	for _, idxW := range []uint{0, 1, 3, idxBits} {
		for _, payW := range []uint{0, 1, 4, 7, 22, 33, 39, payloadBits} {
			t.Run(fmt.Sprintf("idx=%d/payload=%d", idxW, payW), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(uint64(idxW), uint64(payW)))
				s := newSlots(idxW, payW, 4*bucketSlots)
				if got, want := len(s.buf), 4*int(s.width)+8; got != want {
					t.Fatalf("len(buf) = %d, want %d (a bucket per width byte, 8 more)", got, want)
				}
				want := make([]uint64, s.n)
				for range 2000 {
					pos := r.IntN(s.n)
					w := randomWord(r, &s)
					if r.IntN(4) == 0 {
						w = 0
					}
					s.set(pos, w)
					want[pos] = w
					for i, w := range want {
						if got := s.get(i); got != w {
							t.Fatalf("get(%d) = %#x, want %#x after set(%d)", i, got, w, pos)
						}
						if got := s.fp(i); got != w>>(tagShift+idxBits) {
							t.Fatalf("fp(%d) = %#x, want %#x", i, got, w>>(tagShift+idxBits))
						}
					}
				}
			})
		}
	}
}

// TestSlotsWidenKeepsEveryWord widens a full table step by step, to the
// widest slot, and checks that every word survives each step.
func TestSlotsWidenKeepsEveryWord(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	s := newSlots(0, 4, 8*bucketSlots)
	want := make([]uint64, s.n)
	for pos := range want {
		want[pos] = randomWord(r, &s)
		s.set(pos, want[pos])
	}
	steps := []struct {
		idx  uint8
		payW uint
	}{{2, 4}, {2, 20}, {9, 20}, {maxLayouts, payloadBits}}
	for _, st := range steps {
		if s.fits(st.idx, st.payW) {
			t.Fatalf("fits(%d, %d) = true on widths %d/%d, want false",
				st.idx, st.payW, s.idxW, s.payW)
		}
		s = s.widen(st.idx, st.payW)
		if !s.fits(st.idx, st.payW) {
			t.Fatalf("after widen(%d, %d): fits = false", st.idx, st.payW)
		}
		for pos, w := range want {
			if got := s.get(pos); got != w {
				t.Fatalf("after widen(%d, %d): get(%d) = %#x, want %#x",
					st.idx, st.payW, pos, got, w)
			}
		}
	}
	if s.width != 64 {
		t.Fatalf("width of the widest slot = %d, want 64", s.width)
	}
}

func TestSlotsRejectWordWiderThanTable(t *testing.T) {
	t.Parallel()
	s := newSlots(1, 8, bucketSlots)
	words := map[string]uint64{
		"layout index 3": 1<<(tagShift+idxBits) | 3<<tagShift,
		"payload 2^8":    1<<(tagShift+idxBits) | 1<<tagShift | 1<<8,
	}
	for name, w := range words {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("set(%s) did not panic, want a panic rather than a spill", name)
				}
			}()
			s.set(0, w)
		}()
	}
}

func TestFillPages(t *testing.T) {
	t.Parallel()
	for _, width := range []uint{18, 22, 23, 51, 52, 64} {
		for _, nb := range []uint64{1, 100, 1000, 2233, 4681} {
			got := fillPages(nb, width)
			bytes := nb*uint64(width) + 8
			if bytes <= largeAlloc {
				if got != nb {
					t.Errorf("fillPages(%d, %d) = %d, want %d for a small allocation",
						nb, width, got, nb)
				}
				continue
			}
			pages := (bytes + heapPage - 1) / heapPage
			if got < nb || got*uint64(width)+8 > pages*heapPage ||
				(got+1)*uint64(width)+8 <= pages*heapPage {
				t.Errorf("fillPages(%d, %d) = %d: does not fill %d pages", nb, width, got, pages)
			}
		}
	}
}

// TestStoreWidensSlotsForNewRules fills a store under a rule whose slots
// are narrow, then adds rules that need a layout index and wider payloads,
// and checks that every key keeps its state through each widening. Keys
// whose fingerprint another key in their shard shares may take each
// other's slot (see the package documentation), so the test leaves them
// out.
func TestStoreWidensSlotsForNewRules(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	s := newTestStore(t, clk, 20_000, 4)
	rules := []store.Check{
		{Algorithm: algorithm.SlidingWindow, Limit: perWindow(1, time.Hour)},
		{Algorithm: algorithm.FixedWindow, Limit: perWindow(1, time.Hour)},
		{Algorithm: algorithm.GCRA, Limit: perWindow(1, 24*time.Hour)},
		{Algorithm: algorithm.SlidingWindow, Limit: perWindow(1<<20, time.Minute)},
	}
	const keysPerRule = 2000
	key := func(rule, i int) string { return fmt.Sprintf("rule-%d-key-%d", rule, i) }
	shared := make(map[[2]uint64]int)
	for rule := range rules {
		for i := range keysPerRule {
			h := s.hash(key(rule, i))
			shared[[2]uint64{uint64(s.shardOf(h)), fingerprint(h)}]++
		}
	}
	alone := func(rule, i int) bool {
		h := s.hash(key(rule, i))
		return shared[[2]uint64{uint64(s.shardOf(h)), fingerprint(h)}] == 1
	}

	out := make([]algorithm.Decision, 1)
	apply := func(rule, i int) bool {
		c := rules[rule]
		c.Key = key(rule, i)
		allowed, err := s.Apply(context.Background(), []store.Check{c}, c.Limit.Quota, out)
		if err != nil {
			t.Fatalf("Apply(%s) error: %v", c.Key, err)
		}
		return allowed
	}
	for rule := range rules {
		for i := range keysPerRule {
			if !apply(rule, i) && alone(rule, i) {
				t.Fatalf("rule %d: first request of key %d denied", rule, i)
			}
		}
		for earlier := 0; earlier <= rule; earlier++ {
			for i := range keysPerRule {
				if apply(earlier, i) && alone(earlier, i) {
					t.Fatalf("after rule %d: key %d of rule %d allowed again, want its "+
						"spent budget kept", rule, i, earlier)
				}
			}
		}
	}
	checkInvariants(t, s)
	sh := &s.shards[0]
	sh.mu.Lock()
	width := sh.words.width
	sh.mu.Unlock()
	// Four layouts take 2 index bits; the last one keeps payloadBits in the
	// word and the rest in ext.
	if want := uint(fpBits + 2 + payloadBits); width != want {
		t.Errorf("slot width after a 2^20/minute sliding window = %d, want %d", width, want)
	}
}
