package redis

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/calm-limiter/calm/internal/redistest"
)

func TestKeySlotKnownValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want uint16
	}{
		{name: "crc16 check value", key: "123456789", want: 0x31C3 % slotCount},
		{name: "plain key", key: "foo", want: 12182},
		{name: "hash tag", key: "{user1000}.following", want: keySlot("user1000")},
		{name: "same tag other key", key: "{user1000}.followers", want: keySlot("user1000")},
		{name: "empty tag hashes whole key", key: "foo{}{bar}", want: crc16("foo{}{bar}") % slotCount},
		{name: "first tag wins", key: "foo{{bar}}zap", want: keySlot("{bar")},
		{name: "tag after first brace", key: "foo{bar}{zap}", want: keySlot("bar")},
		{name: "unclosed brace", key: "foo{bar", want: crc16("foo{bar") % slotCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := keySlot(tt.key); got != tt.want {
				t.Errorf("keySlot(%q) = %d, want %d", tt.key, got, tt.want)
			}
		})
	}
}

// TestKeySlotMatchesRedis compares keySlot with CLUSTER KEYSLOT of a real
// Redis for random keys full of braces.
func TestKeySlotMatchesRedis(t *testing.T) {
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab{}:{}xy"
	for i := 0; i < 60; i++ {
		var b strings.Builder
		for j := 0; j < 1+rng.IntN(12); j++ {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		key := b.String()
		out, err := redistest.Command(srv.Addr, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "(integer)")))
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q = %q: %v", key, out, err)
		}
		if got := keySlot(key); int(got) != want {
			t.Errorf("keySlot(%q) = %d, want %d (CLUSTER KEYSLOT)", key, got, want)
		}
	}
}

func BenchmarkKeySlot(b *testing.B) {
	b.ReportAllocs()
	key := "production:ratelimit:v1:user:{GET_/users/{id}:0123456789abcdef0123456789abcdef}:60"
	for b.Loop() {
		keySlot(key)
	}
}

// FuzzKeySlot compares keySlot with a plain reading of the Redis Cluster
// rule: hash the text between the first '{' and the next '}' when it is not
// empty, else the whole key.
func FuzzKeySlot(f *testing.F) {
	for _, seed := range []string{"", "{", "}", "{}", "a{b}c", "{{a}}", "a{}b{c}", "x{y", "{user1000}.following"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		hashed := key
		if open := strings.IndexByte(key, '{'); open >= 0 {
			if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
				hashed = key[open+1 : open+1+end]
			}
		}
		if got, want := keySlot(key), crc16(hashed)%slotCount; got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	})
}
