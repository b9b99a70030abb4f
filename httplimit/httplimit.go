// Package httplimit protects net/http services with a calm.Limiter.
//
// It offers three integration styles that share one Limiter:
//
//   - Limiter.Middleware, a global func(http.Handler) http.Handler that
//     limits every request by the policy in Config.Policy: excluded and
//     included paths, per-route limits, route groups with shared budgets.
//   - Limiter.Limit and Limiter.NewRoute, per-route wrappers that declare
//     limits next to the handler, with an optional cost or cost function.
//   - Limiter.Check, for code that decides itself, with WriteHeaders and
//     Deny to respond as the middleware does.
//
// Limiter.SlowDown delays requests over the limit instead of rejecting
// them, up to a maximum delay.
//
// # Leaky queue
//
// A rule under the leaky_queue algorithm admits a request with a wait, its
// turn in the queue. Middleware, the handlers of a Route and SlowDown hold
// the request for that wait before they call the next handler, so that
// requests reach it at the rule's rate, as nginx limit_req with burst
// does. A request that would wait longer than its bound (the route's max
// wait, else Config.MaxWait) is denied at once with reason queue_full and
// charged nothing. Limiter.StopWaiting responds to the held requests when
// the server shuts down.
//
// # Responses and headers
//
// A denied request gets status 420 (or Config.StatusCode, such as 429) and
// a JSON body with "message", "detail" and "limit_info". Every limited
// response, allowed or denied, carries RateLimit-Limit, RateLimit-Remaining
// and RateLimit-Reset, which counts the seconds until the deciding rule's
// budget is back, rounded up. It also carries X-RateLimit-Policy,
// X-RateLimit-Scope, and the structured fields RateLimit-Policy and
// RateLimit of draft-ietf-httpapi-ratelimit-headers (revision -08 and
// later), with one list item per rule in force. Config.Headers chooses the
// legacy trio, the draft fields, both (the default) or none. A denied
// request also gets Retry-After in whole seconds, rounded up and at least
// 1, unless its cost exceeds the capacity of a rule, because such a request
// can never pass.
//
// # The reason phrase of 420
//
// net/http writes the status line itself and has no reason phrase for
// 420, so HTTP/1.1 clients see "420 status code 420" where the original
// service sent "420 Enhance Your Calm". A handler cannot change the phrase
// through http.ResponseWriter. Writing the status line by hand after
// http.Hijacker.Hijack would work, but the server then stops managing the
// connection: keep-alive, request body draining, timeouts and graceful
// shutdown all end, so every denied client would have to reconnect,
// which is the opposite of what a rate limiter wants under load. HTTP/2 and
// HTTP/3 carry no reason phrase at all, and RFC 9110 section 15.1 tells
// clients to ignore it. httplimit therefore keeps the connection and
// puts "Enhance Your Calm" in the JSON body's "message" instead.
//
// # Store failures
//
// When the store fails, the middleware fails open by default: the request
// passes with the header "X-RateLimit-Enforced: false" and no other
// rate-limit headers. With Config.FailClosed it responds 503 instead.
// Either way the first failure is logged at warning level and the recovery
// at info level, with no line per request in between.
package httplimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/policy"
)

// StatusEnhanceYourCalm is calm's default status for denied requests.
const StatusEnhanceYourCalm = 420

// Defaults of the denied response's body. The message follows the status:
// DefaultMessage with 420 and MessageTooManyRequests with 429.
const (
	DefaultMessage         = "Enhance Your Calm"
	MessageTooManyRequests = "Too Many Requests"
	DefaultDetail          = "Too many requests: retry after the number of seconds in Retry-After."
	// DetailCostExceedsCapacity is the detail of a request denied with
	// reason cost_exceeds_capacity, which carries no Retry-After.
	DetailCostExceedsCapacity = "This request costs more than the limit allows, so it can " +
		"never pass: retrying will not help; send a smaller request, such as fewer items."
	// DetailInvalidLimit is the detail of a request denied with reason
	// invalid_limit: the service's own limit is misconfigured.
	DetailInvalidLimit = "The rate limit of this endpoint is misconfigured, so no request " +
		"can pass: retrying will not help; contact the operator of this service."
)

// HeaderEnforced is X-RateLimit-Enforced in canonical form. It is set to
// "false" on requests that passed without a check because the store failed
// and the limiter fails open.
const HeaderEnforced = "X-Ratelimit-Enforced"

// HeaderMode chooses which rate-limit header fields responses carry.
type HeaderMode uint8

// Header modes. The zero value is HeadersBoth.
const (
	// HeadersBoth sends the legacy fields and the draft's structured fields.
	HeadersBoth HeaderMode = iota
	// HeadersLegacy sends RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset, as the drafts up to -06 and most limiters do.
	HeadersLegacy
	// HeadersDraft sends the structured RateLimit-Policy and RateLimit
	// fields of draft-ietf-httpapi-ratelimit-headers -08 and later.
	HeadersDraft
	// HeadersNone sends no rate-limit fields. Denied responses keep
	// Retry-After, which is standard HTTP.
	HeadersNone
)

var headerModeNames = [...]string{"both", "legacy", "draft", "none"}

// String returns the configuration name of m, such as "both".
func (m HeaderMode) String() string {
	if int(m) < len(headerModeNames) {
		return headerModeNames[m]
	}
	return fmt.Sprintf("HeaderMode(%d)", uint8(m))
}

// ParseHeaderMode parses "both", "legacy", "draft" or "none".
func ParseHeaderMode(s string) (HeaderMode, error) {
	for i, name := range headerModeNames {
		if s == name {
			return HeaderMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown header mode %q: use both, legacy, draft or none", s)
}

// Config configures a Limiter. The zero value of each field except Limiter
// means the documented default.
type Config struct {
	// Limiter applies the checks. Required.
	Limiter *calm.Limiter

	// Policy chooses the limits of each request in the global middleware,
	// the slow-down middleware and Check. The zero value limits every path
	// except /healthz, /readyz and /metrics with 100/minute and 1000/hour
	// per client and endpoint.
	Policy policy.Config

	// Mux, when set, is the application's router. The middleware looks up
	// the route pattern of each request in it, so that /users/1 and
	// /users/2 share the limits of "GET /users/{id}". Without it, requests
	// that no configured route matches share their group's endpoint or one
	// catch-all endpoint.
	Mux *http.ServeMux

	// MaxEndpoints bounds how many distinct application patterns become
	// key endpoints; requests beyond it use the catch-all endpoint.
	// Default: 10000.
	MaxEndpoints int

	// KeyFunc identifies the client. Default: PeerIP. A request whose key
	// cannot be derived is limited as the shared client UnknownClient.
	KeyFunc KeyFunc

	// Checks, when set, receives the checks the policy chose for a request
	// (client keys filled in) and returns the checks to apply, so that the
	// client's identity can change them: tier rules in place of a route's,
	// or an extra budget for anonymous clients, as
	// identity.Resolver.RewriteChecks does. It may modify and extend the
	// slice it is given, but must not keep it after returning. Nil applies
	// the policy's checks as they are.
	Checks func(r *http.Request, checks []calm.Check) []calm.Check
	// Defense, when set, sees the checks of every limited request after
	// Checks: it may add layers to them or deny the request before the
	// store is asked, as package defense does. Nil adds nothing.
	Defense Defense

	// StatusCode is the status of denied responses: 420 (default) or 429.
	StatusCode int

	// Message fills the denied response's body. Default: DefaultMessage
	// with status 420 and MessageTooManyRequests with 429.
	Message string
	// Detail fills the body of denials that the client may retry (reasons
	// limited and queue_full). Default: DefaultDetail. A request that can
	// never pass gets DetailCostExceedsCapacity or DetailInvalidLimit
	// instead, because it has no Retry-After to point to.
	Detail string

	// Headers chooses the rate-limit header fields. Default: HeadersBoth.
	Headers HeaderMode

	// FailClosed responds 503 when the store fails. The default fails open:
	// requests pass with "X-RateLimit-Enforced: false".
	FailClosed bool

	// Logger receives one line per denied request and store state changes.
	// Nil discards them.
	Logger *slog.Logger

	// QuietViolations turns off the line per denied request.
	QuietViolations bool

	// MaxWait bounds how long a request that a leaky-queue rule admits
	// waits for its turn, for rules without a max wait of their own
	// (policy.Route.MaxWait): a request that would wait longer is denied
	// with reason queue_full and charged nothing. Middleware, the handlers
	// of a Route and SlowDown hold an admitted request for its wait
	// (calm.Result.Wait) before they call the next handler; Check leaves
	// the wait to the caller. Default: DefaultMaxWait.
	MaxWait time.Duration

	// MaxWaiting bounds how many requests Middleware and the handlers of
	// Routes hold at the same time. Beyond it, a request that would have
	// to wait is denied as queue_full and charged nothing. Default:
	// DefaultMaxWaiting.
	MaxWaiting int

	// After returns a channel that receives once d has passed; requests
	// are held with it. Default: time.After. Tests replace it so that
	// nothing sleeps.
	After func(d time.Duration) <-chan time.Time

	// MaxViolationLogs bounds the lines per second about denied requests
	// and invalid costs, so that an attack cannot flood the log. Lines over the bound are
	// counted and reported in one line when logging resumes. Zero means
	// DefaultMaxViolationLogs; a negative value means no bound.
	MaxViolationLogs int
}

// DefaultMaxViolationLogs is the default of Config.MaxViolationLogs: 100
// lines per second.
const DefaultMaxViolationLogs = 100

// Defense is a layer of protection around the store, such as the layers
// and circuit breaker of package defense. Its methods must be safe for
// concurrent use.
type Defense interface {
	// Admit returns the checks to apply to r, which may extend checks (and
	// reuse its array), or allowed false with the denial to answer. It must
	// not block on the network. w is nil when the caller has no response
	// yet, as in Limiter.Check; otherwise Admit may set header fields.
	Admit(w http.ResponseWriter, r *http.Request, checks []calm.Check) (
		out []calm.Check, denial calm.Result, allowed bool)
	// Observe receives the result of the checks that Admit let through.
	Observe(r *http.Request, res calm.Result)
}

// Errors returned by Check and NewRoute.
var (
	// ErrInvalidCost reports a cost function that failed or returned a
	// negative cost; the request was rejected and nothing was charged.
	ErrInvalidCost = errors.New("httplimit: invalid request cost")
	// ErrStore wraps a store failure; nothing was charged.
	ErrStore = errors.New("httplimit: rate-limit store failed")
)

// defaultMaxEndpoints is the default of Config.MaxEndpoints.
const defaultMaxEndpoints = 10000

// Limiter limits HTTP requests. It is safe for concurrent use.
type Limiter struct {
	limiter  *calm.Limiter
	policy   *policy.Policy
	mux      *http.ServeMux
	keyFunc  KeyFunc
	checks   func(*http.Request, []calm.Check) []calm.Check
	defense  Defense
	status   int
	message  string
	detail   string
	headers  HeaderMode
	failOpen bool
	log      *slog.Logger
	quiet    bool
	logGate  *logGate

	endpoints    sync.Map // application pattern → struct{}
	endpointsN   atomic.Int64
	maxEndpoints int64

	storeDown     atomic.Bool
	storeFailures atomic.Int64
	routeSeq      atomic.Int64

	// maxWait is Config.MaxWait with its default; holder holds the
	// requests of Middleware and Routes.
	maxWait      time.Duration
	holder       *holder
	heldRequests atomic.Int64  // requests that the holders of l hold
	stop         chan struct{} // closed by StopWaiting
	stopOnce     sync.Once
}

// New validates cfg and returns a Limiter. The error names the setting,
// the bad value and the fix.
func New(cfg Config) (*Limiter, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if cfg.Policy.DefaultAlgorithm == nil {
		// Rules that name no algorithm run under the limiter's, so policy
		// checks their burst, delay and maximum wait against it.
		kind := cfg.Limiter.Algorithm()
		cfg.Policy.DefaultAlgorithm = &kind
	}
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("httplimit: invalid policy:\n%w", err)
	}

	l := &Limiter{
		limiter:      cfg.Limiter,
		policy:       pol,
		mux:          cfg.Mux,
		keyFunc:      cfg.KeyFunc,
		checks:       cfg.Checks,
		defense:      cfg.Defense,
		status:       cfg.StatusCode,
		message:      cfg.Message,
		detail:       cmp(cfg.Detail, DefaultDetail),
		headers:      cfg.Headers,
		failOpen:     !cfg.FailClosed,
		log:          cfg.Logger,
		quiet:        cfg.QuietViolations,
		logGate:      newLogGate(cfg.MaxViolationLogs, time.Now),
		maxEndpoints: int64(cfg.MaxEndpoints),
		maxWait:      cfg.MaxWait,
		stop:         make(chan struct{}),
	}
	if l.maxWait == 0 {
		l.maxWait = DefaultMaxWait
	}
	l.holder = newHolder(l, cfg.MaxWaiting, cfg.After)
	if l.keyFunc == nil {
		l.keyFunc = PeerIP
	}
	if l.status == 0 {
		l.status = StatusEnhanceYourCalm
	}
	if l.message == "" {
		l.message = DefaultMessage
		if l.status == http.StatusTooManyRequests {
			l.message = MessageTooManyRequests
		}
	}
	if l.maxEndpoints == 0 {
		l.maxEndpoints = defaultMaxEndpoints
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("component", "httplimit")
	return l, nil
}

// validate checks the fields of cfg that have no policy of their own.
func validate(cfg Config) error {
	switch {
	case cfg.Limiter == nil:
		return errors.New("httplimit: Config.Limiter is nil: pass the result of calm.New")
	case cfg.StatusCode != 0 && cfg.StatusCode != StatusEnhanceYourCalm &&
		cfg.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("httplimit: invalid StatusCode %d: use 420 or 429", cfg.StatusCode)
	case cfg.Headers > HeadersNone:
		return fmt.Errorf("httplimit: invalid Headers %d: use HeadersBoth, HeadersLegacy, HeadersDraft or HeadersNone",
			cfg.Headers)
	case cfg.MaxEndpoints < 0:
		return fmt.Errorf("httplimit: invalid MaxEndpoints %d: use a positive number, or 0 for %d",
			cfg.MaxEndpoints, defaultMaxEndpoints)
	case cfg.MaxWait < 0:
		return fmt.Errorf("httplimit: invalid MaxWait %s: use a positive duration such as 5s, "+
			"or 0 for %s", cfg.MaxWait, DefaultMaxWait)
	case cfg.MaxWaiting < 0:
		return fmt.Errorf("httplimit: invalid MaxWaiting %d: use a positive number, or 0 for %d",
			cfg.MaxWaiting, DefaultMaxWaiting)
	}
	return nil
}

func cmp(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
