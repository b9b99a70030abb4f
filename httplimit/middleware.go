package httplimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/policy"
)

// Middleware limits every request by the policy before it reaches next.
// Excluded requests pass untouched. Wrap the application's router with it
// and pass the same router as Config.Mux, so that keys use route patterns.
//
// When Config.Mux routes a request straight to a handler made by Limit or
// Route.Wrap of the same Limiter, the middleware leaves the request to that
// handler: limits declared next to a handler replace the policy's.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := l.resolve(r)
		if l.declares(h) {
			next.ServeHTTP(w, r)
			return
		}
		l.serve(w, r, next, l.policy.Match(r, pattern))
	})
}

// Check applies the policy to r as the middleware would and returns the
// result without writing anything; it charges the request when allowed.
// Respond to a denied request with Deny, and call WriteHeaders on allowed ones
// to send the rate-limit headers.
//
// An excluded request returns an allowed Result with no Quotas. When the
// store fails, Check returns an error that wraps ErrStore, with Allowed set
// as Config.FailClosed chooses. When the cost function fails, Check returns
// an error that wraps ErrInvalidCost and a denied Result.
//
// A request that a leaky queue admits has a positive Result.Wait, at most
// Config.MaxWait or the route's max wait: serve it only after that wait,
// or it reaches the handler before its turn and the queue's rate no longer
// holds.
func (l *Limiter) Check(r *http.Request) (calm.Result, error) {
	return l.check(r, l.match(r))
}

// declares reports whether h is a handler of a Route of l, which limits
// its requests itself.
func (l *Limiter) declares(h http.Handler) bool {
	rh, ok := h.(*routeHandler)
	return ok && rh.route.l == l
}

// match returns the policy match of r.
func (l *Limiter) match(r *http.Request) policy.Match {
	_, pattern := l.resolve(r)
	return l.policy.Match(r, pattern)
}

// resolve returns the application's handler and route pattern for r. The
// pattern is "" when there is none or when the bound on endpoints is
// reached; the handler is nil without Config.Mux.
func (l *Limiter) resolve(r *http.Request) (http.Handler, string) {
	var h http.Handler
	pattern := r.Pattern
	if l.mux != nil && r.URL != nil && r.Method != http.MethodConnect {
		// For CONNECT requests ServeMux can return a redirect target built
		// from the request path in place of a pattern, so they are not
		// looked up.
		var muxPattern string
		h, muxPattern = l.mux.Handler(r)
		if pattern == "" {
			pattern = muxPattern
		}
	}
	return h, l.boundPattern(pattern)
}

// boundPattern returns pattern while the number of distinct patterns stays
// within Config.MaxEndpoints, and "" beyond.
func (l *Limiter) boundPattern(pattern string) string {
	if pattern == "" {
		return ""
	}
	if _, ok := l.endpoints.Load(pattern); ok {
		return pattern
	}
	if l.endpointsN.Add(1) > l.maxEndpoints {
		l.endpointsN.Add(-1)
		return ""
	}
	if _, loaded := l.endpoints.LoadOrStore(pattern, struct{}{}); loaded {
		l.endpointsN.Add(-1)
	}
	return pattern
}

// serve runs the check of m and either responds or calls next.
func (l *Limiter) serve(w http.ResponseWriter, r *http.Request, next http.Handler, m policy.Match) {
	if !m.Limited {
		next.ServeHTTP(w, r)
		return
	}
	q := queueBound{holder: l.holder}
	res, client, err := l.apply(w, r, m, &q)
	if err != nil {
		q.release()
		if !l.respondError(w, r, m, res, err) {
			next.ServeHTTP(w, r)
		}
		return
	}
	if !res.Allowed {
		q.release()
		l.WriteHeaders(w, res)
		l.logViolation(m.Endpoint, client, res)
		l.writeDenied(w, res)
		return
	}
	l.pass(w, r, next, res, &q)
}

// respondError responds to a failed check. It returns false when the request
// should pass (fail open).
func (l *Limiter) respondError(
	w http.ResponseWriter, r *http.Request, m policy.Match, res calm.Result, err error,
) bool {
	switch {
	case errors.Is(err, ErrInvalidCost):
		if l.gateLog() {
			l.log.Warn("rejected request with invalid cost", "endpoint", m.Endpoint, "policy", m.Policy(), "err", err)
		}
		l.writeInvalidCost(w, res)
		return true
	case r.Context().Err() != nil:
		// The client is gone, so no response is written.
		return true
	case l.failOpen:
		if l.headers != HeadersNone {
			w.Header().Set(HeaderEnforced, "false")
		}
		return false
	}
	l.writeUnavailable(w)
	return true
}

// check runs the checks of m and turns errors into the Result Check
// documents.
func (l *Limiter) check(r *http.Request, m policy.Match) (calm.Result, error) {
	if !m.Limited {
		return calm.Result{Allowed: true}, nil
	}
	res, client, err := l.apply(nil, r, m, &queueBound{})
	if err != nil && errors.Is(err, ErrStore) {
		res.Allowed = l.failOpen
	}
	if err == nil && !res.Allowed {
		l.logViolation(m.Endpoint, client, res)
	}
	return res, err
}

// checkBuffer holds the checks of one request: the endpoint's limits, a
// group budget and room for the layers a Config.Checks hook adds. Buffers
// are pooled because the checks escape to the heap through the hook.
type checkBuffer struct {
	checks [6]calm.Check
}

var checkBuffers = sync.Pool{New: func() any { return new(checkBuffer) }}

// apply identifies the client, computes the cost and calls the limiter,
// with the wait in leaky queues bounded by q (see boundQueue). It returns
// the client key for the violation log. w, which may be nil, goes to
// Config.Defense. The caller releases q.
func (l *Limiter) apply(
	w http.ResponseWriter, r *http.Request, m policy.Match, q *queueBound,
) (calm.Result, string, error) {
	client := l.clientKey(r)
	cost := m.Cost
	if m.CostFunc != nil {
		c, err := m.CostFunc(r)
		switch {
		case err != nil:
			return deniedInvalid(m), client, fmt.Errorf("%w: %w", ErrInvalidCost, err)
		case c < 0:
			return deniedInvalid(m), client, fmt.Errorf("%w: cost function returned %d", ErrInvalidCost, c)
		}
		cost = c
	}

	buf := checkBuffers.Get().(*checkBuffer)
	defer func() {
		clear(buf.checks[:])
		checkBuffers.Put(buf)
	}()
	checks := m.AppendChecks(buf.checks[:0], client)
	if l.checks != nil {
		checks = l.checks(r, checks)
	}
	if l.defense != nil {
		var denial calm.Result
		var allowed bool
		if checks, denial, allowed = l.defense.Admit(w, r, checks); !allowed {
			return denial, client, nil
		}
	}

	l.boundQueue(checks, q)
	res, err := l.limiter.Allow(r.Context(), checks, cost)
	if err != nil {
		l.noteStoreFailure(r.Context(), err)
		return res, client, fmt.Errorf("%w: %w", ErrStore, err)
	}
	l.noteStoreSuccess()
	if l.defense != nil {
		l.defense.Observe(r, res)
	}
	return res, client, nil
}

func deniedInvalid(m policy.Match) calm.Result {
	return calm.Result{Reason: algorithm.ReasonInvalidCost, Policy: m.Policy(), Scope: calm.ScopeUser}
}

// noteStoreFailure logs the first failure after a success.
func (l *Limiter) noteStoreFailure(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	l.storeFailures.Add(1)
	if l.storeDown.CompareAndSwap(false, true) {
		mode := "failing open"
		if !l.failOpen {
			mode = "failing closed"
		}
		l.log.Warn("rate-limit store failed; "+mode+" until it recovers", "err", err)
	}
}

// noteStoreSuccess logs the recovery after failures.
func (l *Limiter) noteStoreSuccess() {
	if !l.storeDown.Load() {
		return
	}
	if l.storeDown.CompareAndSwap(true, false) {
		l.log.Info("rate-limit store recovered", "failed_requests", l.storeFailures.Swap(0))
	}
}

// logViolation writes one line per denied request, with the client hashed,
// within the bound of Config.MaxViolationLogs.
func (l *Limiter) logViolation(endpoint, client string, res calm.Result) {
	if l.quiet {
		return
	}
	if !l.gateLog() {
		return
	}
	keyHash := ""
	if client != "" {
		keyHash = l.limiter.HashClient(client)
	}
	l.log.Info("rate limit exceeded",
		"key_hash", keyHash,
		"endpoint", endpoint,
		"policy", res.Policy,
		"scope", string(res.Scope),
		"reason", res.Reason.String(),
		"limit", res.Limit,
		"remaining", res.Remaining,
		"retry_after", retryAfterSeconds(res),
	)
}

// gateLog reports whether a line about one request may be written now,
// and first logs how many such lines were suppressed, once per second.
func (l *Limiter) gateLog() bool {
	ok, suppressed := l.logGate.allow()
	if suppressed > 0 {
		l.log.Warn("log lines about requests suppressed", "suppressed", suppressed)
	}
	return ok
}

// logGate admits at most limit log lines per second of its clock and
// counts the rest.
type logGate struct {
	limit      int // negative: no bound
	now        func() time.Time
	mu         sync.Mutex
	second     int64 // Unix second of the current count
	count      int
	suppressed int64
}

func newLogGate(limit int, now func() time.Time) *logGate {
	if limit == 0 {
		limit = DefaultMaxViolationLogs
	}
	return &logGate{limit: limit, now: now}
}

// allow reports whether one more line may be written now, and returns the
// number of lines suppressed before it once, when a new second begins.
func (g *logGate) allow() (ok bool, suppressed int64) {
	if g.limit < 0 {
		return true, 0
	}
	sec := g.now().Unix()
	g.mu.Lock()
	defer g.mu.Unlock()
	if sec != g.second {
		g.second, g.count = sec, 0
		suppressed, g.suppressed = g.suppressed, 0
	}
	if g.count >= g.limit {
		g.suppressed++
		return false, suppressed
	}
	g.count++
	return true, suppressed
}
