// Package store defines where calm keeps rate-limit state. Implementations
// live in store/memory and store/redis.
package store

import (
	"context"
	"errors"

	"github.com/calm-limiter/calm/algorithm"
)

// Check is one rule applied to one key.
type Check struct {
	// Key identifies the state. It is complete (environment, prefix, layer,
	// endpoint, client hash and window), contains no raw client data, and
	// may carry a Redis Cluster hash tag in braces.
	Key       string
	Algorithm algorithm.Kind
	Limit     algorithm.Limit
}

// Store keeps algorithm state and applies checks atomically.
type Store interface {
	// Apply decides every check at once for a request of the given cost and
	// writes one decision per check into out, which must be at least as long
	// as checks. When every check allows, all of them are charged and Apply
	// returns true; otherwise none is charged and Apply returns false, and
	// the decisions of the checks that allowed describe their budgets
	// without this request, as a request of cost 0 would see them.
	// The store's clock supplies the time. A non-nil error means no decision
	// was made and nothing was charged.
	Apply(ctx context.Context, checks []Check, cost int64, out []algorithm.Decision) (bool, error)
	// Close releases what the store started. Apply after Close returns
	// ErrClosed.
	Close() error
}

// Errors returned by stores.
var (
	// ErrClosed is returned by Apply on a store that was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable is wrapped by the errors of a store that could not
	// reach a decision, such as a Redis store whose server is down or slow.
	// Nothing was charged; the caller falls back to another store, or fails
	// open or closed as configured.
	ErrUnavailable = errors.New("store: unavailable")
)
