// Package fallback keeps rate limiting alive while a shared store is down.
//
// A Store sends every check to its primary store (Redis) until the primary
// fails with store.ErrUnavailable. From then on checks go to the secondary
// store (memory) at once, without waiting on the primary, and one
// background goroutine probes the primary with growing backoff. When a probe
// succeeds, checks go back to the primary. Each transition is logged once.
//
// While the secondary decides, each server counts on its own, so a service
// of N servers may admit up to N times a limit. That is the price of staying
// up, and it is why RATELIMIT_FALLBACK_TO_MEMORY can be turned off.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// Defaults for the zero fields of Config.
const (
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
	DefaultProbeTimeout = time.Second
)

// Pinger is a store that can tell whether it is healthy. The Redis store
// implements it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config configures a Store. Primary and Secondary are required; the zero
// value of every other field means its documented default.
type Config struct {
	// Primary decides while it is healthy, typically a Redis store. It must
	// wrap store.ErrUnavailable in the errors that should cause a fallback.
	Primary store.Store
	// Secondary decides while Primary is down, typically a memory store.
	Secondary store.Store
	// Name names the primary in log lines, such as "redis". Default
	// "primary".
	Name string
	// Probe reports whether Primary is healthy again. Nil means Primary's
	// Ping method; New fails when Primary has none.
	Probe func(ctx context.Context) error
	// ProbeTimeout bounds each probe. Default 1s.
	ProbeTimeout time.Duration
	// MinBackoff is the wait before the first probe, doubled after each
	// failed probe up to MaxBackoff. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives one warning when checks move to Secondary and one
	// info line when they move back. Nil discards them.
	Logger *slog.Logger
	// After waits between probes; nil means time.After. Tests replace it to
	// run probes without waiting.
	After func(time.Duration) <-chan time.Time
	// OnChange, when set, is called after each transition with true when
	// checks moved to Secondary and false when they moved back. It must not
	// block.
	OnChange func(degraded bool)
}

// Store is a store.Store that falls back from a primary to a secondary
// store. It is safe for concurrent use.
type Store struct {
	cfg      Config
	probe    func(ctx context.Context) error
	degraded atomic.Bool
	closed   atomic.Bool
	ctx      context.Context // canceled by Close, ends the probe
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// New returns a Store for cfg. It starts no goroutine until the primary
// fails.
func New(cfg Config) (*Store, error) {
	if cfg.Primary == nil || cfg.Secondary == nil {
		return nil, errors.New("fallback: Config.Primary and Config.Secondary are required")
	}
	probe := cfg.Probe
	if probe == nil {
		p, ok := cfg.Primary.(Pinger)
		if !ok {
			return nil, fmt.Errorf("fallback: primary store %T has no Ping method: set Config.Probe", cfg.Primary)
		}
		probe = p.Ping
	}
	if cfg.Name == "" {
		cfg.Name = "primary"
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{cfg: cfg, probe: probe, ctx: ctx, cancel: cancel}, nil
}

// Degraded reports whether checks currently go to the secondary store.
func (s *Store) Degraded() bool { return s.degraded.Load() }

// Apply implements store.Store. While the primary is healthy it decides.
// When it fails with store.ErrUnavailable and ctx is still live, the
// secondary decides the same call, so a failing primary delays a request by
// at most the primary's own timeout, once.
func (s *Store) Apply(ctx context.Context, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if !s.degraded.Load() {
		ok, err := s.cfg.Primary.Apply(ctx, checks, cost, out)
		if err == nil || !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
			return ok, err
		}
		s.degrade(err)
	}
	return s.cfg.Secondary.Apply(ctx, checks, cost, out)
}

// degrade moves checks to the secondary and starts the probe, once per
// transition.
func (s *Store) degrade(cause error) {
	if !s.degraded.CompareAndSwap(false, true) {
		return
	}
	s.cfg.Logger.Warn("store unavailable: using the in-memory fallback until it recovers",
		"component", "store", "store", s.cfg.Name, "err", cause)
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(true)
	}
	s.wg.Add(1)
	go s.probeLoop()
}

// probeLoop probes the primary with doubling backoff until a probe
// succeeds or the Store is closed.
func (s *Store) probeLoop() {
	defer s.wg.Done()
	backoff := s.cfg.MinBackoff
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.cfg.After(backoff):
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ProbeTimeout)
		err := s.probe(ctx)
		cancel()
		if s.closed.Load() {
			return
		}
		if err == nil {
			s.degraded.Store(false)
			s.cfg.Logger.Info("store recovered: checks use it again",
				"component", "store", "store", s.cfg.Name)
			if s.cfg.OnChange != nil {
				s.cfg.OnChange(false)
			}
			return
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// Close stops the probe and closes both stores. It is safe to call more
// than once; later calls return nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return errors.Join(s.cfg.Primary.Close(), s.cfg.Secondary.Close())
}
