package defense

import (
	"context"
	"log/slog"
	"time"
)

// view is one server's copy of the breaker state. A view is immutable once
// stored; a change stores a new one under Defense.mu.
type view struct {
	state    State
	snap     snapshot
	shared   bool // snap came from Redis
	localGen bool // no backend call has answered yet
	// offset is the backend clock minus the local clock, from the last
	// backend call. Backend times convert to local times with it.
	offset     time.Duration
	reopenAt   time.Time // local time of the half-open; zero when forced or closed
	halfOpenAt time.Time
}

// toLocal converts a backend time in Unix ms to a local time.
func (v *view) toLocal(ms int64) time.Time {
	return time.UnixMilli(ms).Add(-v.offset)
}

// sameOpen reports whether snap continues the open that v shows.
func (v *view) sameOpen(snap snapshot, shared bool) bool {
	return v.state != Closed && v.snap.Open && snap.Open && v.shared == shared &&
		v.snap.Gen == snap.Gen && v.snap.Epoch == snap.Epoch
}

// callKind names a backend operation.
type callKind uint8

const (
	callSync   callKind = iota // arg: arrivals to add
	callSettle                 // arg: epoch of the open to end
	callForce                  // arg: 1 to open, 0 to close
)

// State returns the state of the circuit breaker in this server's copy.
func (d *Defense) State() State { return d.view.Load().state }

// Sync sends the arrivals counted since the last call to the backend, reads
// the shared state back and makes the time-driven transitions: open to
// half-open after the recovery time, and half-open to closed or open after
// the probes. The background loop that Start begins calls it every
// SyncInterval; tests call it to step the breaker.
func (d *Defense) Sync(ctx context.Context) {
	if d.cfg.Mode == Disabled {
		return
	}
	v := d.view.Load()
	epoch := int64(-1)
	if v.shared && !v.localGen {
		epoch = v.snap.Epoch
	}
	add := d.pending.Swap(0)
	snap, shared, at := d.call(ctx, callSync, add, epoch)
	d.apply(snap, shared, at, true)
	d.advance(ctx)
}

// Force opens or closes the circuit as an operator asks, in Redis when it is
// reachable. A forced open lasts until a forced close; a forced close also
// clears the arrival count, so the traffic that tripped the circuit does not
// trip it again at once.
func (d *Defense) Force(ctx context.Context, open bool) {
	arg := int64(0)
	if open {
		arg = 1
	}
	snap, shared, at := d.call(ctx, callForce, arg, -1)
	d.apply(snap, shared, at, true)
}

// advance makes the transitions that time drives.
func (d *Defense) advance(ctx context.Context) {
	now := d.now()
	v := d.view.Load()
	if v.state == Open && !v.reopenAt.IsZero() && !now.Before(v.reopenAt) {
		v = d.enterHalfOpen(v, now)
	}
	if v.state != HalfOpen {
		return
	}
	if d.probes.Load() > 0 && now.Sub(v.halfOpenAt) < d.cfg.ProbeWindow {
		return
	}
	snap, shared, at := d.call(ctx, callSettle, v.snap.Epoch, -1)
	d.apply(snap, shared, at, true)
}

// call runs one backend operation: in Redis when it is configured and
// healthy (or due for a retry), and in the local breaker otherwise. It
// returns the snapshot, whether it came from Redis, and the local time the
// answer arrived. epoch is passed to the shared backend (see run).
func (d *Defense) call(ctx context.Context, kind callKind, arg, epoch int64) (snapshot, bool, time.Time) {
	if d.remote != nil && d.remoteDue() {
		cctx, cancel := context.WithTimeout(ctx, d.cfg.RedisTimeout)
		snap, err := d.remote.run(cctx, kind, arg, epoch)
		cancel()
		at := d.now()
		if err == nil {
			d.remoteHealthy()
			return snap, true, at
		}
		d.remoteFailed(at, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	ms := now.UnixMilli()
	var snap snapshot
	switch kind {
	case callSync:
		snap = d.local.sync(ms, arg, d.params)
	case callSettle:
		snap = d.local.settle(ms, arg, d.params)
	case callForce:
		snap = d.local.force(ms, arg == 1, d.params)
	}
	return snap, false, now
}

func (d *Defense) remoteDue() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.degraded || !d.now().Before(d.retryAt)
}

// remoteHealthy records a successful Redis call.
func (d *Defense) remoteHealthy() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.degraded {
		d.degraded = false
		d.backoff = 0
		d.log.Info("redis reachable again; adopting the shared circuit state",
			"component", "defense", "store", "redis")
	}
}

// remoteFailed switches to the local breaker on the first failure and
// schedules the next attempt with exponential backoff.
//
// The local breaker starts from the last state this server saw. It never
// extends an open circuit on information it can no longer confirm, so an
// automatic open keeps its recovery time and a forced open becomes an
// automatic one that began now. Arrivals are counted afresh.
func (d *Defense) remoteFailed(now time.Time, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.backoff = min(max(2*d.backoff, d.cfg.SyncInterval), 2*time.Second)
	d.retryAt = now.Add(d.backoff)
	if d.degraded {
		return
	}
	d.degraded = true
	d.log.Warn("redis unreachable; the local circuit breaker decides until it returns",
		"component", "defense", "store", "redis", "err", err)

	v := d.view.Load()
	d.local = record{}
	if v.snap.Open {
		trip := now.UnixMilli()
		if !v.snap.Forced && v.shared {
			trip = min(v.toLocal(v.snap.TripTime).UnixMilli(), trip)
		}
		d.local.begin(now.UnixMilli(), d.params)
		d.local.trip(trip, v.snap.Count, false, CauseRedisLost)
	}
}

// applyEvent applies a change that Redis published.
func (d *Defense) applyEvent(snap snapshot) {
	d.mu.Lock()
	degraded := d.degraded
	d.mu.Unlock()
	if degraded {
		return
	}
	d.apply(snap, true, d.now(), false)
}

// apply adopts a snapshot as this server's view. A snapshot older than the
// view (same hash life, lower epoch) is ignored, since an event can overtake
// the answer to an earlier call. withClock is true for answers to calls,
// whose backend time refreshes the clock offset.
func (d *Defense) apply(snap snapshot, shared bool, at time.Time, withClock bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.view.Load()
	if !old.localGen && old.shared == shared && old.snap.Gen == snap.Gen &&
		snap.Epoch < old.snap.Epoch {
		return
	}
	next := *old
	next.snap, next.shared, next.localGen = snap, shared, false
	if withClock {
		next.offset = time.UnixMilli(snap.Now).Sub(at)
	}
	switch {
	case !snap.Open:
		next.state, next.reopenAt = Closed, time.Time{}
	case old.sameOpen(snap, shared):
		// The same open continues; keep the half-open state and jitter.
	default:
		next.state, next.reopenAt = Open, time.Time{}
		if !snap.Forced {
			next.reopenAt = next.toLocal(snap.TripTime).Add(d.cfg.RecoveryTime + d.jitter())
		}
	}
	d.view.Store(&next)
	if next.state != old.state {
		d.transitioned(old.state, &next, snap.Cause, at)
	}
}

// enterHalfOpen moves v to half-open unless the view changed meanwhile, and
// returns the current view.
func (d *Defense) enterHalfOpen(v *view, now time.Time) *view {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.view.Load()
	if cur != v || cur.state != Open {
		return cur
	}
	next := *cur
	next.state, next.halfOpenAt = HalfOpen, now
	d.probes.Store(d.cfg.HalfOpenProbes)
	d.view.Store(&next)
	d.transitioned(Open, &next, CauseProbing, now)
	return &next
}

// jitter draws the random delay added to the recovery time. Callers hold
// d.mu, which also guards d.rand.
func (d *Defense) jitter() time.Duration {
	if d.cfg.MaxJitter <= 0 {
		return 0
	}
	return time.Duration(d.rand.Int64N(int64(d.cfg.MaxJitter) + 1))
}

// transitioned logs a change of state once and sends it to subscribers.
// Callers hold d.mu.
func (d *Defense) transitioned(from State, v *view, cause string, at time.Time) {
	ev := Event{
		From:      from,
		To:        v.state,
		Cause:     cause,
		Count:     v.snap.Count,
		TripCount: v.snap.TripCount,
		Threshold: d.params.threshold,
		Forced:    v.snap.Forced,
		Shared:    v.shared,
		Time:      at,
	}
	if v.snap.TripTime != 0 {
		ev.TripTime = v.toLocal(v.snap.TripTime)
	}
	level := slog.LevelInfo
	if v.state == Open {
		level = slog.LevelWarn
	}
	d.log.Log(context.Background(), level, "circuit "+v.state.String(),
		"component", "defense",
		"from", from.String(),
		"cause", cause,
		"count", ev.Count,
		"trip_count", ev.TripCount,
		"threshold", ev.Threshold,
		"forced", ev.Forced,
		"shared", ev.Shared,
		"mode", d.cfg.Mode.String())
	d.emit(ev)
}
