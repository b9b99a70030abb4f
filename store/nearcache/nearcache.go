// Package nearcache decides most checks of hot keys without a round trip to
// a shared store, and never admits more than the shared store would.
//
// A naive near-cache counts locally and syncs with Redis now and then, so
// two servers that each see room admit twice into the same gap. This one
// leases instead: when a request of a signature (the same checks) arrives
// and no lease is held, it charges the shared store for several requests at
// once, all or nothing, and decides the following requests of that
// signature from the leased units. Every admitted unit was charged in the
// shared store first, so the servers together never admit more than the
// limit. The cost is over-denial: units leased by one server and not used
// before the lease expires are lost until the limit resets or refills.
//
// Lease sizes follow demand: a lease used up before it expires doubles the
// next one, a lease that expires with units left shrinks the next one to
// what was used, and no lease takes more than a fraction of the budget the
// shared store last reported. A quiet signature therefore leases one
// request at a time, which is the same as no cache, and units pile up only
// where traffic uses them within the lease time.
//
// Denials are cached too: after the shared store denies a request, requests
// of the same signature and at least the same cost are denied locally until
// the store's RetryAfter has passed.
package nearcache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// Defaults for the zero fields of Config.
const (
	DefaultLeaseTime     = 100 * time.Millisecond
	DefaultMaxLease      = 64
	DefaultLeaseFraction = 8
	DefaultMaxEntries    = 100_000
)

// Config configures a Store. Store is required; the zero value of every
// other field means its documented default.
type Config struct {
	// Store is the shared store, typically a Redis store.
	Store store.Store
	// LeaseTime is how long leased units may be used. Longer leases save
	// more round trips and strand more units. Default 100ms.
	LeaseTime time.Duration
	// MaxLease caps a lease, in requests of the cost that asked for it.
	// Default 64.
	MaxLease int64
	// LeaseFraction caps a lease at 1/LeaseFraction of the smallest
	// remaining budget the shared store last reported for the signature,
	// so that the last units of a budget are charged one request at a
	// time. Default 8.
	LeaseFraction int64
	// MaxEntries bounds the signatures held; when full, requests of new
	// signatures go to the shared store directly. Default 100,000.
	MaxEntries int
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Store is a store.Store in front of a shared store. It is safe for
// concurrent use.
type Store struct {
	cfg     Config
	mu      sync.Mutex
	entries map[string]*entry // guarded by mu
}

var _ store.Store = (*Store)(nil)

// entry is the cached state of one signature.
type entry struct {
	mu sync.Mutex
	// The lease: units left until expires, and the shared store's
	// decisions when it was charged.
	units     int64
	expires   time.Time
	leasedAt  time.Time
	decisions []algorithm.Decision
	// size is the next lease, in requests; used counts the requests served
	// from the current lease.
	size, used int64
	// remaining is the smallest Remaining the shared store last reported.
	remaining int64
	// The cached denial: requests of at least deniedCost are denied until
	// deniedUntil, with the decisions the shared store gave at deniedAt.
	deniedUntil time.Time
	deniedAt    time.Time
	deniedCost  int64
	denied      []algorithm.Decision
}

// New returns a Store in front of cfg.Store.
func New(cfg Config) (*Store, error) {
	if cfg.Store == nil {
		return nil, errors.New("nearcache: Config.Store is required")
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.MaxLease <= 0 {
		cfg.MaxLease = DefaultMaxLease
	}
	if cfg.LeaseFraction <= 0 {
		cfg.LeaseFraction = DefaultLeaseFraction
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, entries: make(map[string]*entry)}, nil
}

// Apply implements store.Store. Requests of cost 0, and requests with a
// leaky queue check, whose waits depend on each request's place in the
// queue, go to the shared store directly.
func (s *Store) Apply(ctx context.Context, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	if cost <= 0 || len(checks) == 0 || len(out) < len(checks) || hasQueue(checks) {
		return s.cfg.Store.Apply(ctx, checks, cost, out)
	}
	e := s.entry(checks)
	if e == nil {
		return s.cfg.Store.Apply(ctx, checks, cost, out)
	}
	now := s.cfg.Now()
	if allowed, ok := e.local(now, cost, out[:len(checks)]); ok {
		return allowed, nil
	}
	return s.lease(ctx, e, now, checks, cost, out[:len(checks)])
}

// local decides from the entry when the lease or a cached denial covers
// the request, and reports whether it did.
func (e *entry) local(now time.Time, cost int64, out []algorithm.Decision) (allowed, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Leased units were charged already: use them even while the shared
	// store denies further requests.
	if e.units >= cost && now.Before(e.expires) {
		e.units -= cost
		e.used++
		age := now.Sub(e.leasedAt).Microseconds()
		for i, d := range e.decisions {
			// The store reported the budget after the whole lease; the
			// units this server still holds are part of it for this client.
			d.Remaining += e.units
			d.ResetAfter = max(d.ResetAfter-age, 0)
			out[i] = d
		}
		return true, true
	}
	if now.Before(e.deniedUntil) && cost >= e.deniedCost {
		age := now.Sub(e.deniedAt).Microseconds()
		for i, d := range e.denied {
			d.ResetAfter = max(d.ResetAfter-age, 0)
			if d.RetryAfter > 0 {
				d.RetryAfter = max(d.RetryAfter-age, 1)
			}
			out[i] = d
		}
		return false, true
	}
	return false, false
}

// lease charges the shared store for the request and, when it allows,
// for further requests of the same cost, and keeps those as the entry's
// lease.
func (s *Store) lease(ctx context.Context, e *entry, now time.Time, checks []store.Check, cost int64, out []algorithm.Decision) (bool, error) {
	n := e.nextSize(now, cost, s.cfg)
	sent := s.cfg.Now()
	allowed, err := s.cfg.Store.Apply(ctx, checks, n*cost, out)
	if err == nil && !allowed && n > 1 {
		// The lease did not fit; the request alone may.
		n = 1
		allowed, err = s.cfg.Store.Apply(ctx, checks, cost, out)
	}
	if err != nil {
		return false, err
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.remaining = minRemaining(out)
	if !allowed {
		e.cacheDenial(now, cost, out)
		return false, nil
	}
	// Units left of a lease that another request renewed meanwhile stay.
	e.units += (n - 1) * cost
	e.used = 1
	e.leasedAt, e.expires = now, leaseEnd(checks, out, sent, s.cfg.LeaseTime)
	e.decisions = append(e.decisions[:0], out...)
	for i := range out {
		out[i].Remaining += e.units
	}
	return true, nil
}

// nextSize returns the number of requests of the given cost to lease now,
// and adapts the entry's lease size to how the last lease was used.
func (e *entry) nextSize(now time.Time, cost int64, cfg Config) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.size == 0:
		e.size = 1
	case e.units < cost && now.Before(e.expires):
		// Used up before it expired: demand is higher.
		e.size = min(2*e.size, cfg.MaxLease)
	default:
		// Expired with units left: lease what was used.
		e.size = max(min(e.used, cfg.MaxLease), 1)
	}
	if !now.Before(e.expires) {
		// Forget the expired lease: its units are lost, which denies more,
		// never admits more.
		e.units = 0
	}
	n := min(e.size, e.remaining/cost/cfg.LeaseFraction)
	return max(n, 1)
}

// leaseEnd returns when a lease charged at sent stops being usable: after
// the lease time, and never after the end of the window that a window
// algorithm charged it in. A unit charged in one window and used in the
// next would be counted in neither. The store decided after sent, so
// sent plus the time to the window's end is never late. Bucket algorithms
// and GCRA need no such bound: a unit charged early and used late only
// makes the bucket fuller than it is.
func leaseEnd(checks []store.Check, decisions []algorithm.Decision, sent time.Time, leaseTime time.Duration) time.Time {
	end := sent.Add(leaseTime)
	for i := range checks {
		var left int64
		switch checks[i].Algorithm {
		case algorithm.FixedWindow:
			left = decisions[i].ResetAfter
		case algorithm.SlidingWindow:
			// After a charge ResetAfter reaches the end of the next window.
			left = decisions[i].ResetAfter - checks[i].Limit.Window
		default:
			continue
		}
		if t := sent.Add(time.Duration(left) * time.Microsecond); t.Before(end) {
			end = t
		}
	}
	return end
}

// cacheDenial keeps a denial until the shared store's RetryAfter. Denials
// that no wait can cure (cost above the capacity) are not cached. The
// caller holds e.mu.
func (e *entry) cacheDenial(now time.Time, cost int64, out []algorithm.Decision) {
	var wait int64
	for _, d := range out {
		if !d.Allowed {
			wait = max(wait, d.RetryAfter)
		}
	}
	if wait <= 0 {
		return
	}
	e.deniedAt, e.deniedCost = now, cost
	e.deniedUntil = now.Add(time.Duration(wait) * time.Microsecond)
	e.denied = append(e.denied[:0], out...)
}

func minRemaining(ds []algorithm.Decision) int64 {
	m := ds[0].Remaining
	for _, d := range ds[1:] {
		m = min(m, d.Remaining)
	}
	return m
}

func hasQueue(checks []store.Check) bool {
	for i := range checks {
		if checks[i].Algorithm == algorithm.LeakyQueue {
			return true
		}
	}
	return false
}

// entry returns the entry of the checks' signature, or nil when the
// cache is full of live entries.
func (s *Store) entry(checks []store.Check) *entry {
	sig := signature(checks)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[sig]; ok {
		return e
	}
	if len(s.entries) >= s.cfg.MaxEntries && !s.dropExpired() {
		return nil
	}
	e := &entry{}
	s.entries[sig] = e
	return e
}

// dropExpired removes the entries with neither a live lease nor a live
// denial and reports whether any was removed. The caller holds s.mu.
func (s *Store) dropExpired() bool {
	now := s.cfg.Now()
	removed := false
	for sig, e := range s.entries {
		e.mu.Lock()
		idle := !now.Before(e.expires) && !now.Before(e.deniedUntil)
		e.mu.Unlock()
		if idle {
			delete(s.entries, sig)
			removed = true
		}
	}
	return removed
}

// signature identifies a request's checks: their algorithms and keys.
func signature(checks []store.Check) string {
	var b strings.Builder
	for i := range checks {
		b.WriteByte(byte('0' + checks[i].Algorithm))
		b.WriteString(checks[i].Key)
		b.WriteByte(0)
	}
	return b.String()
}

// Ping reports whether the shared store is healthy, when it can tell (it
// has a Ping method, as the Redis store does), so that a fallback store can
// probe through the cache. Without one it returns nil.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.cfg.Store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close closes the shared store.
func (s *Store) Close() error {
	return s.cfg.Store.Close()
}
