// Package redis keeps calm's rate-limit state in Redis, so that every server
// of a service shares one exact limit.
//
// Each Apply runs one Lua script per Redis Cluster hash slot. The script
// reads the state of every check, decides them with the same math as package
// algorithm, and charges all of them or none. Keys built by calm.Limiter put
// the rules of one check under one hash tag, so a standalone Redis, or a
// request whose checks share a slot, needs one round trip. On a Redis Cluster
// the slots of a request are charged in turn, and when one slot denies, the
// slots that charged are refunded. No request is admitted over a limit.
//
// Concurrent requests share script calls: requests that arrive while calls
// are in flight join the next one, which decides them one after another,
// each all or nothing. The store works with a standalone Redis, Redis
// Sentinel and Redis Cluster through the rueidis client, whose
// auto-pipelining carries the calls of many goroutines over a few
// connections. docs/REDIS.md describes the keys, values and TTLs.
package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/store"
)

// Store is a store.Store backed by Redis. It is safe for concurrent use.
//
// A Store created while Redis is unreachable works: Apply returns errors
// that wrap store.ErrUnavailable until a connection succeeds, which the
// Store retries in the background with backoff.
type Store struct {
	timeout  time.Duration
	parallel bool // charge the slots of a request at once
	now      func() time.Time
	opt      rueidis.ClientOption
	owned    bool // the Store created the client and closes it

	conn atomic.Pointer[connection]

	dialMu   sync.Mutex
	dialing  bool
	nextDial time.Time
	backoff  time.Duration

	closed  atomic.Bool
	scratch sync.Pool
	batch   batcher // standalone and Sentinel
	// slots holds the batcher of each Redis Cluster hash slot, made on
	// first use.
	slots [slotCount]atomic.Pointer[batcher]
}

// connection is a connected client and the deployment it found.
type connection struct {
	client  rueidis.Client
	cluster bool
}

// Reconnection backoff after a failed connection attempt.
const (
	minRedialBackoff = 100 * time.Millisecond
	maxRedialBackoff = 5 * time.Second
)

var _ store.Store = (*Store)(nil)

// New returns a Store for cfg. It connects and loads the scripts before it
// returns, waiting at most cfg.SocketTimeout. When Redis cannot be reached
// it still returns a Store, which keeps trying in the background. It
// returns an error only for an invalid configuration.
func New(cfg Config) (*Store, error) {
	s := &Store{timeout: cfg.Timeout, now: cfg.Now, parallel: cfg.ParallelSlots}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	s.scratch.New = func() any { return new(scratch) }
	s.batch.mode = modeCharge

	if cfg.Client != nil {
		s.setClient(cfg.Client)
		ctx, cancel := context.WithTimeout(context.Background(), DefaultSocketTimeout)
		defer cancel()
		// A failure here is repaired by the first NOSCRIPT reply.
		_ = load(ctx, cfg.Client, allScripts...)
		return s, nil
	}
	opt, err := cfg.clientOption()
	if err != nil {
		return nil, err
	}
	s.opt, s.owned = opt, true
	_ = s.dial(s.opt.Dialer.Timeout)
	return s, nil
}

// setClient publishes a connected client.
func (s *Store) setClient(c rueidis.Client) {
	s.conn.Store(&connection{client: c, cluster: c.Mode() == rueidis.ClientModeCluster})
}

// dial connects within timeout and loads the scripts. Callers make sure
// that only one dial runs at a time.
func (s *Store) dial(timeout time.Duration) error {
	if s.conn.Load() != nil {
		return nil
	}
	opt := s.opt
	opt.Dialer.Timeout = min(opt.Dialer.Timeout, timeout)
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return fmt.Errorf("connecting to redis: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := load(ctx, c, allScripts...); err != nil {
		c.Close()
		return fmt.Errorf("loading scripts: %w", err)
	}
	if s.closed.Load() {
		c.Close()
		return store.ErrClosed
	}
	s.setClient(c)
	if s.closed.Load() {
		// Close ran between the two checks and may have missed the client.
		c.Close()
	}
	return nil
}

// redial starts a background connection attempt unless one is running or
// the backoff after the last failure has not passed. It never blocks.
func (s *Store) redial() {
	if !s.owned || s.closed.Load() {
		return
	}
	s.dialMu.Lock()
	if s.dialing || time.Now().Before(s.nextDial) {
		s.dialMu.Unlock()
		return
	}
	s.dialing = true
	s.dialMu.Unlock()

	go func() {
		err := s.dial(s.opt.Dialer.Timeout)
		s.dialMu.Lock()
		defer s.dialMu.Unlock()
		s.dialing = false
		if err == nil {
			s.backoff = 0
			return
		}
		s.backoff = min(max(2*s.backoff, minRedialBackoff), maxRedialBackoff)
		s.nextDial = time.Now().Add(s.backoff)
	}()
}

// dialNow connects in the caller's goroutine, within the time ctx allows,
// unless a dial is already running.
func (s *Store) dialNow(ctx context.Context) error {
	s.dialMu.Lock()
	if s.dialing {
		s.dialMu.Unlock()
		return errors.New("a connection attempt is in progress")
	}
	s.dialing = true
	s.dialMu.Unlock()
	defer func() {
		s.dialMu.Lock()
		s.dialing = false
		s.dialMu.Unlock()
	}()

	timeout := s.opt.Dialer.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	return s.dial(timeout)
}

// Ping connects if needed, loads the scripts, and reports whether every
// Redis node replies to PING within the time ctx allows. A fallback store
// probes with it. Its errors wrap store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	conn := s.conn.Load()
	if conn == nil {
		if !s.owned {
			return unavailable(errors.New("no client"))
		}
		if err := s.dialNow(ctx); err != nil {
			return unavailable(err)
		}
		if conn = s.conn.Load(); conn == nil {
			return unavailable(errors.New("not connected"))
		}
	}
	c := conn.client
	for _, node := range c.Nodes() {
		if err := node.Do(ctx, node.B().Ping().Build()).Error(); err != nil {
			return unavailable(err)
		}
	}
	if err := load(ctx, c, allScripts...); err != nil {
		return unavailable(fmt.Errorf("loading scripts: %w", err))
	}
	return nil
}

// Close closes the client if the Store created it. Apply after Close
// returns store.ErrClosed. Close is safe to call more than once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if conn := s.conn.Load(); conn != nil && s.owned {
		conn.client.Close()
	}
	return nil
}

// unavailable wraps err, a failure to reach a decision in Redis.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// errNotConnected is the cause of ErrUnavailable before the first
// connection succeeds.
var errNotConnected = errors.New("not connected to redis")
