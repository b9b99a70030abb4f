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
	for _, p := range Peers() {
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
	for _, p := range Peers() {
		if seen[p.Name] {
			t.Errorf("peer name %q appears twice", p.Name)
		}
		seen[p.Name] = true
	}
	if got := Peers()[0].Name; got != "calm" {
		t.Errorf("Peers()[0].Name = %q, want %q (reports use it as the base)", got, "calm")
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

// TestCompareScriptListsEveryPeer keeps the peer list of compare.sh, which
// runs one peer at a time to interleave them, in step with Peers.
func TestCompareScriptListsEveryPeer(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("../compare.sh")
	if err != nil {
		t.Fatalf("reading compare.sh: %v", err)
	}
	var names []string
	for _, p := range Peers() {
		names = append(names, p.Name)
	}
	want := "PEERS=${PEERS:-" + strings.Join(names, " ") + "}"
	if !strings.Contains(string(script), want) {
		t.Errorf("compare.sh does not contain %q; update its default peer list", want)
	}
}
