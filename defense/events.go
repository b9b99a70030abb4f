package defense

import "time"

// Event is one change of the circuit breaker state on this server.
type Event struct {
	From, To State
	// Cause is why the state changed: CauseThreshold, CauseManual,
	// CauseRecovered, CauseReopened, CauseProbing or CauseRedisLost.
	Cause string
	// Count is the number of arrivals in the sliding window, as the backend
	// last counted them.
	Count int64
	// TripCount is the number of arrivals in the window when the current or
	// last open began.
	TripCount int64
	// Threshold is the configured threshold.
	Threshold int64
	// Forced reports that an operator forced the open.
	Forced bool
	// Shared reports that the state came from Redis rather than the local
	// breaker.
	Shared bool
	// Time is the local time of the change; TripTime is the local time the
	// current open began, zero while closed.
	Time     time.Time
	TripTime time.Time
}

// Subscribe returns a channel that receives every Event from now on, and a
// function that ends the subscription and closes the channel. The channel
// holds up to buffer events (at least 1); events that do not fit are
// dropped and counted in DroppedEvents, so a slow subscriber never delays
// a request. Close ends every subscription.
func (d *Defense) Subscribe(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, max(buffer, 1))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		close(ch)
		return ch, func() {}
	}
	id := d.nextSub
	d.nextSub++
	d.subs[id] = ch
	return ch, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if c, ok := d.subs[id]; ok {
			delete(d.subs, id)
			close(c)
		}
	}
}

// DroppedEvents returns how many events did not fit a subscriber's buffer.
func (d *Defense) DroppedEvents() int64 { return d.dropped.Load() }

// emit sends ev to every subscriber without blocking. Callers hold d.mu.
func (d *Defense) emit(ev Event) {
	for _, ch := range d.subs {
		select {
		case ch <- ev:
		default:
			d.dropped.Add(1)
		}
	}
}

func (d *Defense) closeSubscribers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, ch := range d.subs {
		delete(d.subs, id)
		close(ch)
	}
}
