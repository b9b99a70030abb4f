package defense

// This file is the Go twin of the Lua scripts in lua/: the local breaker runs
// the same state machine on a record kept in memory that the shared breaker
// runs on the Redis state hash. A differential test replays the same
// operations through both and requires identical snapshots. Times are Unix
// milliseconds from the backend's clock; every value stays far below 2^53.

// Causes of a change of the shared state, as stored in the "cause" field and
// reported in events.
const (
	CauseThreshold = "threshold"  // arrivals in the window reached the threshold
	CauseManual    = "manual"     // an operator forced the state
	CauseRecovered = "recovered"  // the arrival rate since the trip fell under the threshold
	CauseReopened  = "reopened"   // the arrival rate since the trip was still at the threshold
	CauseProbing   = "probing"    // the recovery time ended; probes are admitted
	CauseRedisLost = "redis_lost" // the local breaker took over from Redis
)

// snapshot is the shared state as one backend call returns it.
type snapshot struct {
	Open      bool
	Forced    bool  // opened by an operator: no automatic recovery
	Epoch     int64 // incremented on every change of Open
	Gen       int64 // identifies one life of the state hash
	TripTime  int64 // ms when the current open began; 0 while closed
	Count     int64 // arrivals in the sliding window
	TripCount int64 // arrivals in the window when the last open began
	Now       int64 // backend clock, ms
	Cause     string
	Changed   bool // this call changed Open
}

// record is the breaker state held by the local backend. Field names follow
// the Redis hash fields.
type record struct {
	open         bool
	forced       bool
	epoch        int64
	gen          int64
	tripTime     int64
	lastTripTime int64
	winStart     int64
	winCur       int64
	winPrev      int64
	arrivals     int64
	tripArrivals int64
	tripCount    int64
	cause        string
	changedAt    int64
}

// circuitParams are the settings every backend call carries.
type circuitParams struct {
	threshold  int64 // arrivals per window that open the circuit; 0 never opens
	windowMs   int64
	recoveryMs int64 // settle is a no-op before trip time + recovery
}

// roll advances the two-bucket sliding window to now.
func (r *record) roll(now, window int64) {
	switch {
	case r.winStart == 0 || now >= r.winStart+2*window:
		r.winStart, r.winCur, r.winPrev = now, 0, 0
	case now >= r.winStart+window:
		r.winStart, r.winPrev, r.winCur = r.winStart+window, r.winCur, 0
	}
}

// estimate returns the arrivals in the window that ends at now: the current
// bucket plus the part of the previous bucket that still overlaps.
func (r *record) estimate(now, window int64) int64 {
	elapsed := now - r.winStart
	if elapsed < 0 {
		elapsed = 0
	}
	if elapsed > window {
		elapsed = window
	}
	return r.winCur + r.winPrev*(window-elapsed)/window
}

// trip opens the circuit at now.
func (r *record) trip(now, count int64, forced bool, cause string) {
	r.open, r.forced = true, forced
	r.tripTime, r.tripArrivals, r.tripCount = now, r.arrivals, count
	r.cause, r.changedAt = cause, now
	r.epoch++
}

// close closes the circuit at now; the window restarts with prev as the
// previous bucket, so the traffic that tripped the circuit does not trip it
// again at once.
func (r *record) close(now, prev int64, cause string) {
	r.open, r.forced = false, false
	if r.tripTime != 0 {
		r.lastTripTime = r.tripTime
	}
	r.tripTime = 0
	r.winStart, r.winCur, r.winPrev = now, 0, prev
	r.cause, r.changedAt = cause, now
	r.epoch++
}

// begin starts every call: it creates the record when it is new and rolls
// the window.
func (r *record) begin(now int64, p circuitParams) {
	if r.gen == 0 {
		r.gen = now
	}
	r.roll(now, p.windowMs)
}

// sync adds arrivals and opens the circuit when the window reaches the
// threshold. Exactly one call opens it, however many cross at once.
func (r *record) sync(now, add int64, p circuitParams) snapshot {
	r.begin(now, p)
	r.winCur += add
	r.arrivals += add
	count := r.estimate(now, p.windowMs)
	changed := false
	if !r.open && p.threshold > 0 && count >= p.threshold {
		r.trip(now, count, false, CauseThreshold)
		changed = true
	}
	return r.snapshot(now, count, changed)
}

// settle ends the open that began with epoch, once the recovery time has
// passed: it closes the circuit when the arrival rate since the trip,
// scaled to one window, is under the threshold, and reopens it otherwise.
// It does nothing for a forced open, a closed circuit or another epoch.
func (r *record) settle(now, epoch int64, p circuitParams) snapshot {
	r.begin(now, p)
	count := r.estimate(now, p.windowMs)
	if !r.open || r.forced || r.epoch != epoch || now < r.tripTime+p.recoveryMs {
		return r.snapshot(now, count, false)
	}
	elapsed := max(now-r.tripTime, 1)
	rate := (r.arrivals - r.tripArrivals) * p.windowMs / elapsed
	if rate < p.threshold || p.threshold == 0 {
		r.close(now, rate, CauseRecovered)
	} else {
		r.trip(now, count, false, CauseReopened)
	}
	return r.snapshot(now, r.estimate(now, p.windowMs), true)
}

// force opens or closes the circuit as an operator asks. A forced open stays
// until a forced close; a forced close clears the window count.
func (r *record) force(now int64, open bool, p circuitParams) snapshot {
	r.begin(now, p)
	if open {
		tripTime := r.tripTime
		r.trip(now, r.estimate(now, p.windowMs), true, CauseManual)
		if tripTime != 0 {
			r.tripTime = tripTime
		}
	} else {
		r.close(now, 0, CauseManual)
	}
	return r.snapshot(now, r.estimate(now, p.windowMs), true)
}

func (r *record) snapshot(now, count int64, changed bool) snapshot {
	return snapshot{
		Open:      r.open,
		Forced:    r.forced,
		Epoch:     r.epoch,
		Gen:       r.gen,
		TripTime:  r.tripTime,
		Count:     count,
		TripCount: r.tripCount,
		Now:       now,
		Cause:     r.cause,
		Changed:   changed,
	}
}
