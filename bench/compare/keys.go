package compare

import (
	"math/rand/v2"
	"strconv"
)

// maxKeys is the number of distinct keys Key can produce: one per address
// of 10.0.0.0/8.
const maxKeys = 1 << 24

// Key returns the i-th benchmark key, an IPv4 address in 10.0.0.0/8 such as
// "10.181.4.97", the usual key of a per-client limit. Keys for i in
// [0, 2^24) are distinct. Multiplying by an odd constant modulo 2^24 spreads
// neighbouring i over the address space, so the keys do not share long
// prefixes.
func Key(i int) string {
	a := uint32(i) * 2654435761 % maxKeys
	buf := make([]byte, 0, len("10.255.255.255"))
	buf = append(buf, "10."...)
	buf = strconv.AppendUint(buf, uint64(a>>16), 10)
	buf = append(buf, '.')
	buf = strconv.AppendUint(buf, uint64(a>>8&0xff), 10)
	buf = append(buf, '.')
	buf = strconv.AppendUint(buf, uint64(a&0xff), 10)
	return string(buf)
}

// Keys returns Key(0) to Key(n-1).
func Keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = Key(i)
	}
	return keys
}

// Order returns length indexes drawn uniformly from [0, n) with a fixed
// seed, so every peer sees the same keys in the same order.
func Order(n, length int) []int32 {
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int32, length)
	for i := range order {
		order[i] = int32(rng.IntN(n))
	}
	return order
}
