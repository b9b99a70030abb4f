package httplimit

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Defaults of the leaky-queue settings of Config.
const (
	DefaultMaxWait    = 5 * time.Second
	DefaultMaxWaiting = 1024
)

// noWait is the wait bound of a request that may not be held, because no
// waiting slot is free or the Limiter stopped waiting: only a request that
// needs no wait passes (at most 1µs, the resolution of the algorithms).
const noWait = time.Microsecond

// holder holds requests for their turn in a leaky queue, or for their
// budget in SlowDown, with at most maxWaiting of them at a time. It is
// safe for concurrent use.
type holder struct {
	maxWaiting int64
	waiting    atomic.Int64 // slots taken
	after      func(time.Duration) <-chan time.Time
	stop       <-chan struct{} // closed by Limiter.StopWaiting
	held       *atomic.Int64   // requests blocked in wait, shared by a Limiter's holders
}

func newHolder(l *Limiter, maxWaiting int, after func(time.Duration) <-chan time.Time) *holder {
	h := &holder{maxWaiting: int64(maxWaiting), after: after, stop: l.stop, held: &l.heldRequests}
	if h.maxWaiting == 0 {
		h.maxWaiting = DefaultMaxWaiting
	}
	if h.after == nil {
		h.after = time.After
	}
	return h
}

// acquire takes a waiting slot and reports whether one was free. A stopped
// holder has none.
func (h *holder) acquire() bool {
	if h.stopped() {
		return false
	}
	if h.waiting.Add(1) > h.maxWaiting {
		h.waiting.Add(-1)
		return false
	}
	return true
}

// release returns a slot taken by acquire.
func (h *holder) release() { h.waiting.Add(-1) }

func (h *holder) stopped() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// holdOutcome is the outcome of a wait.
type holdOutcome uint8

const (
	waitPassed  holdOutcome = iota // the whole wait passed
	clientGone                     // the request's context ended
	waitStopped                    // Limiter.StopWaiting was called
)

// wait blocks for d, or until ctx ends or the holder stops.
func (h *holder) wait(ctx context.Context, d time.Duration) holdOutcome {
	if ctx.Err() != nil {
		return clientGone
	}
	if d <= 0 {
		return waitPassed
	}
	h.held.Add(1)
	defer h.held.Add(-1)
	select {
	case <-h.after(d):
		return waitPassed
	case <-ctx.Done():
		return clientGone
	case <-h.stop:
		return waitStopped
	}
}

// queueBound is how long one request may wait in a leaky queue.
type queueBound struct {
	// holder holds the request; nil when the caller does, as with Check.
	holder *holder
	// limit is the caller's own bound on the wait, such as SlowDown's
	// MaxDelay; 0 means none.
	limit time.Duration
	// reserved reports whether the request took a waiting slot of holder.
	reserved bool
}

// release returns the request's waiting slot, if it took one.
func (q *queueBound) release() {
	if q.reserved {
		q.holder.release()
		q.reserved = false
	}
}

// boundQueue sets MaxWait on every leaky-queue check of a request, before
// the store applies them, so that a request that would wait too long is
// denied and charged nothing. The bound is the smallest MaxWait that a
// check sets, such as a route's max_wait, else Config.MaxWait, and at most
// q.limit. Every queue of the request gets the same bound, and a request
// waits for the longest of its queues, so it waits at most that bound.
//
// When the request may be held, boundQueue takes a waiting slot for it
// first. Without a free slot, or once the Limiter stopped waiting, only a
// request that needs no wait may pass.
func (l *Limiter) boundQueue(checks []calm.Check, q *queueBound) {
	var bound time.Duration
	queued := false
	for i := range checks {
		if !l.isQueue(checks[i]) {
			continue
		}
		queued = true
		if w := checks[i].MaxWait; w > 0 && (bound == 0 || w < bound) {
			bound = w
		}
	}
	if !queued {
		return
	}
	if bound == 0 {
		bound = l.maxWait
	}
	if q.limit > 0 {
		bound = min(bound, q.limit)
	}
	if q.holder != nil {
		q.reserved = q.holder.acquire()
		if !q.reserved {
			bound = noWait
		}
	}
	for i := range checks {
		if l.isQueue(checks[i]) {
			checks[i].MaxWait = bound
		}
	}
}

// isQueue reports whether c runs under the leaky queue.
func (l *Limiter) isQueue(c calm.Check) bool {
	if c.Algorithm != nil {
		return *c.Algorithm == algorithm.LeakyQueue
	}
	return l.limiter.Algorithm() == algorithm.LeakyQueue
}

// pass holds an allowed request for its turn in the queue (res.Wait),
// then writes the headers of res and calls next. A request whose client
// goes away while it waits gets no response. A request still waiting when
// the Limiter stops waiting gets a 503 response.
//
// Neither gets its charge back: the queue slot it reserved passes unused.
// Giving the slot back would let the next request take a time that a
// request queued after this one already holds, so releases would exceed
// the rate.
func (l *Limiter) pass(
	w http.ResponseWriter, r *http.Request, next http.Handler, res calm.Result, q *queueBound,
) {
	outcome := waitPassed
	if res.Wait > 0 {
		h := q.holder
		if h == nil {
			h = l.holder
		}
		outcome = h.wait(r.Context(), res.Wait)
	}
	q.release()
	switch outcome {
	case clientGone:
		return
	case waitStopped:
		l.writeStopped(w, res)
		return
	}
	l.WriteHeaders(w, res)
	next.ServeHTTP(w, r)
}

// StopWaiting ends the wait of every request that Middleware, a Route's
// handler or SlowDown holds. Each gets a response at once: 503 Service
// Unavailable, Retry-After and "Connection: close", and requests that
// arrive later are not held: those that would have to wait are denied as
// queue_full, charged nothing. Call it before a server's shutdown deadline
// passes, so that held requests get a response instead of a closed
// connection. The charges of the held requests are not refunded. It is safe
// to call more than once and from any goroutine.
func (l *Limiter) StopWaiting() {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.log.Info("stopped holding requests", "held", l.heldRequests.Load())
	})
}

// HeldRequests returns how many requests Middleware, the handlers of
// Routes and SlowDown hold at this moment, for their turn in a leaky queue
// or for their budget.
func (l *Limiter) HeldRequests() int64 { return l.heldRequests.Load() }

// writeStopped responds 503 to a request that was still held when the
// Limiter stopped waiting.
func (l *Limiter) writeStopped(w http.ResponseWriter, res calm.Result) {
	h := w.Header()
	h.Set(headerRetryAfter, strconv.FormatInt(max(ceilSeconds(res.Wait), 1), 10))
	h.Set("Connection", "close")
	writeJSON(w, http.StatusServiceUnavailable, errorBody{
		Message: http.StatusText(http.StatusServiceUnavailable),
		Detail: "The server is shutting down before this request's turn came. " +
			"Retry after the number of seconds in Retry-After.",
		Reason: "shutting_down",
	})
}
