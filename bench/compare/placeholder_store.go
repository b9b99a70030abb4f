package compare

import (
	"context"
	"sync"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// newMemoryStore returns the store the calm adapters run on.
//
// NOTE: a map under one mutex stands in until store/memory is on main;
// numbers measured with it say nothing about calm's memory store.
func newMemoryStore() store.Store {
	return &placeholderStore{keys: make(map[string]algorithm.State)}
}

type placeholderStore struct {
	mu     sync.Mutex
	keys   map[string]algorithm.State
	closed bool
}

func (p *placeholderStore) Apply(
	_ context.Context, checks []store.Check, cost int64, out []algorithm.Decision,
) (bool, error) {
	now := time.Now().UnixMicro()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, store.ErrClosed
	}
	next := make([]algorithm.State, len(checks))
	allowed := true
	for i, c := range checks {
		next[i], out[i] = algorithm.Decide(c.Algorithm, p.keys[c.Key], now, c.Limit, cost)
		allowed = allowed && out[i].Allowed
	}
	if allowed {
		for i, c := range checks {
			p.keys[c.Key] = next[i]
		}
	}
	return allowed, nil
}

func (p *placeholderStore) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}
