package compare

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestPeersAllowThenDeny checks that every adapter admits a fresh key up to
// its limit, denies the next request, and keeps other keys apart.
func TestPeersAllowThenDeny(t *testing.T) {
	t.Parallel()
	limit := Limit{Requests: 3, Window: time.Hour}
	for _, p := range HeapPeers() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			lim, err := p.New(limit)
			if err != nil {
				t.Fatalf("New(%v) error: %v", limit, err)
			}
			t.Cleanup(func() {
				if err := lim.Close(); err != nil {
					t.Errorf("Close() error: %v", err)
				}
			})

			a, b := Key(0), Key(1)
			for i := range limit.Requests {
				if !lim.Allow(a) {
					t.Fatalf("Allow(%q) request %d = false, want true", a, i+1)
				}
			}
			if lim.Allow(a) {
				t.Errorf("Allow(%q) request %d = true, want false", a, limit.Requests+1)
			}
			if !lim.Allow(b) {
				t.Errorf("Allow(%q) after %q ran out = false, want true", b, a)
			}
		})
	}
}

func TestPeerNamesUnique(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for _, p := range HeapPeers() {
		if seen[p.Name] {
			t.Errorf("peer name %q appears twice", p.Name)
		}
		seen[p.Name] = true
	}
	if got := Peers()[0].Name; got != "calm" {
		t.Errorf("Peers()[0].Name = %q, want %q (reports use it as the base)", got, "calm")
	}
}

// TestHeapPeersPairEveryPeer checks that BenchmarkHeap runs calm's memory
// store under the algorithm of every peer, and that each calm store
// adapter applies the algorithm in its name.
func TestHeapPeersPairEveryPeer(t *testing.T) {
	t.Parallel()
	heap := make(map[string]Peer)
	for _, p := range HeapPeers() {
		heap[p.Name] = p
	}
	for _, p := range Peers() {
		name := CalmStoreName(p.Algorithm)
		calm, ok := heap[name]
		if !ok {
			t.Errorf("HeapPeers() has no %q to pair with %s (%s)", name, p.Name, p.Algorithm)
			continue
		}
		if calm.Algorithm != p.Algorithm {
			t.Errorf("%s.Algorithm = %s, want %s as for %s", name, calm.Algorithm, p.Algorithm,
				p.Name)
		}
		got, ok := PeerAlgorithm(p.Name)
		if !ok || got != p.Algorithm {
			t.Errorf("PeerAlgorithm(%q) = %s, %t, want %s, true", p.Name, got, ok, p.Algorithm)
		}
	}
	if _, ok := PeerAlgorithm("no-such-peer"); ok {
		t.Errorf("PeerAlgorithm(%q) found a peer, want false", "no-such-peer")
	}
}

func TestKeysDistinct(t *testing.T) {
	t.Parallel()
	const n = 200_000
	seen := make(map[string]int, n)
	for i, k := range Keys(n) {
		if j, ok := seen[k]; ok {
			t.Fatalf("Key(%d) = Key(%d) = %q, want distinct keys", i, j, k)
		}
		seen[k] = i
	}
	if got, want := Key(0), "10.0.0.0"; got != want {
		t.Errorf("Key(0) = %q, want %q", got, want)
	}
}

func TestOrderInRange(t *testing.T) {
	t.Parallel()
	order := Order(100, 10_000)
	for i, k := range order {
		if k < 0 || k >= 100 {
			t.Fatalf("Order(100, 10000)[%d] = %d, want within [0, 100)", i, k)
		}
	}
	again := Order(100, 10_000)
	for i := range order {
		if order[i] != again[i] {
			t.Fatalf("Order is not repeatable: index %d is %d then %d", i, order[i], again[i])
		}
	}
}

// TestCompareScriptListsEveryPeer keeps the peer lists of compare.sh,
// which runs one peer at a time to interleave them, in step with Peers
// and HeapPeers.
func TestCompareScriptListsEveryPeer(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("../compare.sh")
	if err != nil {
		t.Fatalf("reading compare.sh: %v", err)
	}
	var names, calmStores []string
	for _, p := range Peers() {
		names = append(names, p.Name)
	}
	for _, p := range HeapPeers()[len(names):] {
		calmStores = append(calmStores, p.Name)
	}
	tests := []struct {
		name, want string
	}{
		{name: "PEERS", want: "PEERS=${PEERS:-" + strings.Join(names, " ") + "}"},
		{name: "HEAP_PEERS", want: "HEAP_PEERS=${HEAP_PEERS:-$PEERS " +
			strings.Join(calmStores, " ") + "}"},
	}
	for _, tt := range tests {
		if !strings.Contains(string(script), tt.want) {
			t.Errorf("compare.sh does not contain %q; update its default %s list", tt.want, tt.name)
		}
	}
}
