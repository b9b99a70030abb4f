package httplimit

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Defaults of SlowDownConfig.
const (
	DefaultMaxDelay   = 5 * time.Second
	DefaultMaxWaiting = 1024
)

// maxSlowDownAttempts bounds how often one request is checked again after
// waiting, so that clients racing for a returning budget cannot keep one
// request looping.
const maxSlowDownAttempts = 8

// SlowDownConfig configures Limiter.SlowDown. The zero value of each field
// means the documented default.
type SlowDownConfig struct {
	// MaxDelay is the longest a request waits in total. A request that
	// would have to wait longer is denied at once, as the middleware
	// denies it. Default: DefaultMaxDelay.
	MaxDelay time.Duration

	// MaxWaiting bounds how many requests wait at the same time; over the
	// bound, requests over the limit are denied at once. Default:
	// DefaultMaxWaiting.
	MaxWaiting int

	// After returns a channel that receives once d has passed. Default:
	// time.After. Tests replace it so that nothing sleeps.
	After func(d time.Duration) <-chan time.Time
}

// SlowDown returns a middleware that delays requests over the limit
// instead of rejecting them. It applies the policy as Middleware does.
//
// An allowed request that a leaky queue admits with a wait
// (calm.Result.Wait) is held for that wait. A denied request whose budget
// returns within MaxDelay waits for it (calm.Result.RetryAfter) and is
// checked again; nothing is charged while it waits. A request whose client
// goes away stops waiting and gets no response. A request that cannot pass
// within MaxDelay is denied with the usual response. As with Middleware, a
// request that Config.Mux routes to a handler made by Limit is left to it.
func (l *Limiter) SlowDown(cfg SlowDownConfig) (func(http.Handler) http.Handler, error) {
	if cfg.MaxDelay < 0 {
		return nil, fmt.Errorf("httplimit: invalid MaxDelay %s: use a positive duration such as 5s, or 0 for %s",
			cfg.MaxDelay, DefaultMaxDelay)
	}
	if cfg.MaxWaiting < 0 {
		return nil, fmt.Errorf("httplimit: invalid MaxWaiting %d: use a positive number, or 0 for %d",
			cfg.MaxWaiting, DefaultMaxWaiting)
	}
	s := &slowDown{l: l, maxDelay: cfg.MaxDelay, maxWaiting: int64(cfg.MaxWaiting), after: cfg.After}
	if s.maxDelay == 0 {
		s.maxDelay = DefaultMaxDelay
	}
	if s.maxWaiting == 0 {
		s.maxWaiting = DefaultMaxWaiting
	}
	if s.after == nil {
		s.after = time.After
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, next)
		})
	}, nil
}

type slowDown struct {
	l          *Limiter
	maxDelay   time.Duration
	maxWaiting int64
	waiting    atomic.Int64
	after      func(time.Duration) <-chan time.Time
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
		res, client, err := s.l.apply(w, r, m)
		if err != nil {
			if !s.l.respondError(w, r, m, res, err) {
				next.ServeHTTP(w, r)
			}
			return
		}
		if res.Allowed {
			// NOTE: a queued wait beyond MaxDelay is cut short, because
			// calm.Check cannot pass MaxDelay on to the leaky queue yet.
			if !s.wait(r.Context(), min(res.Wait, s.maxDelay-waited)) {
				return
			}
			s.l.WriteHeaders(w, res)
			next.ServeHTTP(w, r)
			return
		}
		if !s.mayWait(res, waited, attempt) {
			s.l.WriteHeaders(w, res)
			s.l.logViolation(m.Endpoint, client, res)
			s.l.writeDenied(w, res)
			return
		}
		ok := s.wait(r.Context(), res.RetryAfter)
		s.waiting.Add(-1)
		if !ok {
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
	if s.waiting.Add(1) > s.maxWaiting {
		s.waiting.Add(-1)
		return false
	}
	return true
}

// wait blocks for d, or until ctx is done; it reports whether d passed.
func (s *slowDown) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-s.after(d):
		return true
	case <-ctx.Done():
		return false
	}
}
