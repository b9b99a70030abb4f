package httplimit

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/policy"
)

// RouteOption configures a Route.
type RouteOption func(*policy.Route, *string)

// Cost sets how many units each request of the route consumes. Default: 1.
// Zero makes requests free; a negative cost makes NewRoute fail.
func Cost(n int64) RouteOption {
	return func(r *policy.Route, _ *string) { r.Cost = &n }
}

// CostFunc computes each request's cost from the request, such as from the
// number of rows it requests. An error or a negative cost rejects the
// request with 400 and charges nothing.
func CostFunc(f func(*http.Request) (int64, error)) RouteOption {
	return func(r *policy.Route, _ *string) { r.CostFunc = f }
}

// Name sets the policy name reported in headers. Default: the route's
// endpoint.
func Name(name string) RouteOption {
	return func(r *policy.Route, _ *string) { r.Name = name }
}

// Endpoint sets the endpoint used in keys when the request carries no
// ServeMux pattern, for handlers served outside a ServeMux. Default: a name
// unique to the Route, "route-1", "route-2" and so on.
func Endpoint(endpoint string) RouteOption {
	return func(_ *policy.Route, e *string) { *e = endpoint }
}

// Scope sets whether each client has its own budget (calm.ScopeUser, the
// default) or all clients share one (calm.ScopeEndpoint).
func Scope(s calm.Scope) RouteOption {
	return func(r *policy.Route, _ *string) { r.Scope = string(s) }
}

// Algorithm sets the algorithm of the route's rules by its configuration
// name, such as "token_bucket". Default: the calm.Limiter's algorithm.
func Algorithm(name string) RouteOption {
	return func(r *policy.Route, _ *string) { r.Algorithm = name }
}

// Burst sets the capacity of the token_bucket, leaky_bucket, leaky_queue
// and gcra algorithms: the largest cost that may pass at once. Default:
// the rule's request count. NewRoute fails for a window algorithm, which
// ignores it.
func Burst(n int64) RouteOption {
	return func(r *policy.Route, _ *string) { r.Burst = n }
}

// Delay sets how many requests beyond the rate a leaky_queue route passes
// without waiting for their turn, as nginx limit_req's delay=. Default: 0,
// every request beyond the rate waits. NewRoute fails for another
// algorithm, a negative delay or one above the capacity.
func Delay(n int64) RouteOption {
	return func(r *policy.Route, _ *string) { r.Delay = n }
}

// MaxWait sets the longest a request of a leaky_queue route waits for its
// turn, from 1ms to policy.MaxWaitLimit. A request that would wait longer
// is denied and charged nothing. Default: Config.MaxWait. NewRoute fails
// for another algorithm or a wait outside that range.
func MaxWait(d time.Duration) RouteOption {
	return func(r *policy.Route, _ *string) { r.MaxWait = d.String() }
}

// Route is a set of limits declared for one handler, the counterpart of a
// rate_limit("5/minute") decorator. It is safe for concurrent use.
type Route struct {
	l        *Limiter
	declared *policy.Declared
	endpoint string
}

// NewRoute returns a Route with the given rules, such as "5/minute" or
// "3/minute,10/hour". The key endpoint of a request is its ServeMux
// pattern (http.Request.Pattern), or the Endpoint option outside a
// ServeMux. The error names the bad setting and value.
func (l *Limiter) NewRoute(limits string, opts ...RouteOption) (*Route, error) {
	def := policy.Route{Limits: []string{limits}}
	endpoint := ""
	for _, opt := range opts {
		opt(&def, &endpoint)
	}
	if def.Algorithm == "" {
		// The route runs under the limiter's algorithm; naming it lets
		// Declare check a burst, delay or maximum wait against it.
		def.Algorithm = l.limiter.Algorithm().String()
	}
	declared, err := policy.Declare(def)
	if err != nil {
		return nil, fmt.Errorf("httplimit: invalid route %q: %w", limits, err)
	}
	if endpoint == "" {
		endpoint = fmt.Sprintf("route-%d", l.routeSeq.Add(1))
	}
	if strings.TrimSpace(endpoint) == "" {
		return nil, fmt.Errorf("httplimit: invalid route %q: endpoint %q is blank", limits, endpoint)
	}
	return &Route{l: l, declared: declared, endpoint: endpoint}, nil
}

// Limit wraps next with the given limits, as NewRoute and Route.Wrap do.
// It panics on invalid limits or options, as http.ServeMux.Handle does on
// an invalid pattern, so the mistake stops the program at start-up:
//
//	mux.Handle("POST /auth/login", lim.Limit("3/minute,10/hour", login))
func (l *Limiter) Limit(limits string, next http.Handler, opts ...RouteOption) http.Handler {
	rt, err := l.NewRoute(limits, opts...)
	if err != nil {
		panic(err)
	}
	return rt.Wrap(next)
}

// Wrap returns a handler that checks rt before calling next, and responds
// to denied requests as the middleware does.
func (rt *Route) Wrap(next http.Handler) http.Handler {
	return &routeHandler{route: rt, next: next}
}

// routeHandler is the handler Wrap returns; Middleware recognizes it.
type routeHandler struct {
	route *Route
	next  http.Handler
}

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.route.l.serve(w, r, h.next, h.route.match(r))
}

// Check applies rt to r and returns the result without responding, as
// Limiter.Check does.
func (rt *Route) Check(r *http.Request) (calm.Result, error) {
	return rt.l.check(r, rt.match(r))
}

func (rt *Route) match(r *http.Request) policy.Match {
	endpoint := r.Pattern
	if endpoint == "" {
		endpoint = rt.endpoint
	}
	return rt.declared.Match(endpoint)
}
