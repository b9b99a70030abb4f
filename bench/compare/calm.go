package compare

import (
	"context"
	"fmt"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
)

// CalmAlgorithm is the algorithm of the calm and calm-limiter adapters:
// GCRA, the one the throttled peer runs and the one with the smallest
// state per key.
const CalmAlgorithm = algorithm.GCRA

// CalmPeers returns calm's adapters. The first calls the memory store
// with one check per request, the level the other libraries work at. The
// second calls calm.Limiter on the same store, which adds client hashing,
// key building and a Result with one Quota.
func CalmPeers() []Peer {
	return []Peer{
		CalmStorePeer(CalmAlgorithm),
		{Name: "calm-limiter", Via: "calm.Limiter.Allow with one GCRA rule on store/memory",
			Algorithm: CalmAlgorithm, New: newCalmLimiter},
	}
}

// CalmStorePeer returns the adapter that applies one check of kind per
// request to calm's memory store. It is the "calm" peer for CalmAlgorithm
// and is named CalmStoreName(kind) for the other kinds.
func CalmStorePeer(kind algorithm.Kind) Peer {
	return Peer{
		Name:      CalmStoreName(kind),
		Via:       "store/memory Store.Apply with one " + kind.String() + " check",
		Algorithm: kind,
		New: func(l Limit) (Limiter, error) {
			return newCalmStore(l, kind)
		},
	}
}

// CalmStoreName returns the name of CalmStorePeer(kind): "calm" for
// CalmAlgorithm and "calm-" followed by the kind's configuration name for
// the others, such as "calm-sliding_window".
func CalmStoreName(kind algorithm.Kind) string {
	if kind == CalmAlgorithm {
		return "calm"
	}
	return "calm-" + kind.String()
}

// calmStore applies one check per request to the memory store. Calling
// the concrete *memory.Store, as code that builds its own store does,
// lets the check and decision arrays stay on the stack.
type calmStore struct {
	st    *memory.Store
	kind  algorithm.Kind
	limit algorithm.Limit
}

func newCalmStore(l Limit, kind algorithm.Kind) (Limiter, error) {
	lim := algorithm.Limit{Quota: l.Requests, Window: l.Window.Microseconds()}
	if err := lim.Validate(); err != nil {
		return nil, fmt.Errorf("calm limit %d/%s: %w", l.Requests, l.Window, err)
	}
	return &calmStore{st: newMemoryStore(l.Keys), kind: kind, limit: lim}, nil
}

func (c *calmStore) Allow(key string) bool {
	checks := [1]store.Check{{Key: key, Algorithm: c.kind, Limit: c.limit}}
	var out [1]algorithm.Decision
	allowed, err := c.st.Apply(context.Background(), checks[:], 1, out[:])
	return allowed && err == nil
}

func (c *calmStore) Close() error { return c.st.Close() }

// calmLimiter goes through calm.Limiter, which hashes the client, builds
// the store key and folds the decision into a Result.
type calmLimiter struct {
	lim   *calm.Limiter
	st    store.Store
	rules []calm.Rule
}

func newCalmLimiter(l Limit) (Limiter, error) {
	st := newMemoryStore(l.Keys)
	lim, err := calm.New(calm.Config{Store: st, Algorithm: CalmAlgorithm})
	if err != nil {
		return nil, fmt.Errorf("creating calm limiter: %w", err)
	}
	rules := []calm.Rule{{Requests: l.Requests, Window: l.Window}}
	return &calmLimiter{lim: lim, st: st, rules: rules}, nil
}

func (c *calmLimiter) Allow(key string) bool {
	checks := [1]calm.Check{{
		Scope:    calm.ScopeUser,
		Endpoint: "/api",
		Client:   key,
		Rules:    c.rules,
	}}
	res, err := c.lim.Allow(context.Background(), checks[:], 1)
	return err == nil && res.Allowed
}

func (c *calmLimiter) Close() error { return c.st.Close() }

// newMemoryStore returns calm's memory store with its default size,
// DefaultMaxKeys, or room for keys when that is more.
func newMemoryStore(keys int) *memory.Store {
	return memory.New(memory.Config{MaxKeys: max(keys, memory.DefaultMaxKeys)})
}
