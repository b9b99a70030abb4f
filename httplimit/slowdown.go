package httplimit

import (
	"fmt"
	"net/http"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// DefaultMaxDelay is the default of SlowDownConfig.MaxDelay.
const DefaultMaxDelay = 5 * time.Second

// maxSlowDownAttempts bounds how often one request is checked again after
// waiting, so that clients racing for a returning budget cannot keep one
// request looping.
const maxSlowDownAttempts = 8

// SlowDownConfig configures Limiter.SlowDown. The zero value of each field
// means the documented default.
type SlowDownConfig struct {
	// MaxDelay is the longest a request waits in total. A request that
	// would have to wait longer is denied at once, as the middleware
	// denies it, and charged nothing. It also bounds the wait in a leaky
	// queue, in place of Config.MaxWait or a route's longer max wait.
	// Default: DefaultMaxDelay.
	MaxDelay time.Duration

	// MaxWaiting bounds how many requests wait at the same time; over the
	// bound, requests that would have to wait are denied at once.
	// Default: DefaultMaxWaiting.
	MaxWaiting int

	// After returns a channel that receives once d has passed. Default:
	// time.After. Tests replace it so that nothing sleeps.
	After func(d time.Duration) <-chan time.Time
}

// SlowDown returns a middleware that delays requests over the limit
// instead of rejecting them. It applies the policy as Middleware does.
//
// A request that a leaky queue admits is held for its turn
// (calm.Result.Wait), as Middleware holds it. One that would wait longer
// than MaxDelay in the queue is denied at once with reason queue_full. A
// denied request whose budget returns within MaxDelay waits for it
// (calm.Result.RetryAfter) and is checked again. Nothing is charged while
// it waits. A request whose
// client goes away stops waiting and gets no response. A request that
// cannot pass within MaxDelay is denied with the usual response. As with
// Middleware, a request that Config.Mux routes to a handler made by Limit
// is left to it.
func (l *Limiter) SlowDown(cfg SlowDownConfig) (func(http.Handler) http.Handler, error) {
	if cfg.MaxDelay < 0 {
		return nil, fmt.Errorf("httplimit: invalid MaxDelay %s: use a positive duration such as 5s, or 0 for %s",
			cfg.MaxDelay, DefaultMaxDelay)
	}
	if cfg.MaxWaiting < 0 {
		return nil, fmt.Errorf("httplimit: invalid MaxWaiting %d: use a positive number, or 0 for %d",
			cfg.MaxWaiting, DefaultMaxWaiting)
	}
	s := &slowDown{l: l, maxDelay: cfg.MaxDelay, holder: newHolder(l, cfg.MaxWaiting, cfg.After)}
	if s.maxDelay == 0 {
		s.maxDelay = DefaultMaxDelay
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, next)
		})
	}, nil
}

type slowDown struct {
	l        *Limiter
	maxDelay time.Duration
	holder   *holder
}

func (s *slowDown) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	h, pattern := s.l.resolve(r)
	if s.l.declares(h) {
		next.ServeHTTP(w, r)
		return
	}
	m := s.l.policy.Match(r, pattern)
	if !m.Limited {
		next.ServeHTTP(w, r)
		return
	}
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		q := queueBound{holder: s.holder, limit: s.maxDelay}
		if waited > 0 {
			// NOTE: after a wait for its budget, a request passes a queue
			// only when it needs no wait there. Bounding the queue by the
			// rest of MaxDelay would hand the store a new bound per request,
			// and the memory store packs its slots per distinct limit.
			q.limit = noWait
		}
		res, client, err := s.l.apply(w, r, m, &q)
		if err != nil {
			q.release()
			if !s.l.respondError(w, r, m, res, err) {
				next.ServeHTTP(w, r)
			}
			return
		}
		if res.Allowed {
			s.l.pass(w, r, next, res, &q)
			return
		}
		q.release()
		if !s.mayWait(res, waited, attempt) {
			s.l.WriteHeaders(w, res)
			s.l.logViolation(m.Endpoint, client, res)
			s.l.writeDenied(w, res)
			return
		}
		outcome := s.holder.wait(r.Context(), res.RetryAfter)
		s.holder.release()
		switch outcome {
		case clientGone:
			return
		case waitStopped:
			s.l.WriteHeaders(w, res)
			s.l.writeDenied(w, res)
			return
		}
		waited += res.RetryAfter
	}
}

// mayWait reports whether a denied request may wait for its budget, and
// takes a waiting slot when it may.
func (s *slowDown) mayWait(res calm.Result, waited time.Duration, attempt int) bool {
	if res.Reason != algorithm.ReasonLimited || res.RetryAfter <= 0 ||
		waited+res.RetryAfter > s.maxDelay || attempt >= maxSlowDownAttempts {
		return false
	}
	return s.holder.acquire()
}
