// Package calm is a rate limiter for Go services.
//
// A Limiter applies groups of stacked rules (Checks) to a store and returns
// one Result per request. All checks of one call are charged together or
// not at all. The net/http middleware lives in package httplimit; the
// stores live in store/memory and store/redis.
package calm

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
)

// Scope is the layer a check belongs to.
type Scope string

// The three layers of defense, reported in X-RateLimit-Scope.
const (
	ScopeUser     Scope = "user"     // one client on one endpoint or route group
	ScopeEndpoint Scope = "endpoint" // one endpoint across all clients
	ScopeGlobal   Scope = "global"   // the whole service
)

// DefaultPolicy is the policy name of the default limits.
const DefaultPolicy = "default"

// Check is a set of stacked rules applied to one subject, such as one
// client on one endpoint. The most restrictive rule decides.
type Check struct {
	Scope  Scope
	Policy string // name of the rule set, reported in headers; "" means "default"
	// Endpoint is the route pattern or route group the rules belong to,
	// such as "GET /users/{id}" or "/api". It must come from configuration
	// or routing, never from the raw request, so that the key space stays
	// bounded.
	Endpoint string
	// Client identifies the client. It is hashed with the limiter's secret
	// before it reaches a store. Empty for endpoint-wide and global checks.
	Client string
	Rules  []Rule
	// BaseRules, when set, size the layers that belong to the endpoint
	// rather than to one client, in place of Rules, which a per-client
	// rewrite such as a tier may have replaced. Every client of an endpoint
	// then meets the same endpoint-wide limit. Allow ignores them.
	BaseRules []Rule
	Algorithm *algorithm.Kind // nil means the limiter's algorithm
	// Burst overrides the bucket capacity for bucket algorithms; 0 means
	// the rule's request count.
	Burst int64
	// Delay applies to the leaky queue only: the number of units beyond
	// the rate that pass without waiting, as nginx limit_req's delay=.
	// Zero delays every unit beyond the rate.
	Delay int64
	// MaxWait applies to the leaky queue only: a request that would wait
	// longer is denied with algorithm.ReasonQueueFull and charged nothing.
	// Zero means that only the queue's capacity bounds the wait. A positive
	// MaxWait below 1µs counts as 1µs, the resolution of the algorithms.
	MaxWait time.Duration
}

// NoDelay returns a leaky-queue Delay at or above the capacity of every
// rule of c, with which the queue never holds a request of c, as nginx
// limit_req's nodelay. Layers that count many clients together use it, so
// that only each client's own check holds requests.
func (c *Check) NoDelay() int64 {
	capacity := c.Burst
	for _, r := range c.Rules {
		capacity = max(capacity, r.Requests)
	}
	return capacity
}

// Quota is the state of one rule after a request, for headers that list
// every policy in force.
type Quota struct {
	Policy     string
	Scope      Scope
	Rule       Rule
	Remaining  int64
	ResetAfter time.Duration
}

// Result is the outcome of a request against every check that applied.
type Result struct {
	Allowed bool
	// Reason is the cause of a denial, or ReasonAllowed.
	Reason algorithm.Reason
	// Limit, Remaining and ResetAfter describe the deciding rule: the denying
	// rule with the longest RetryAfter when denied, and the rule with the
	// least remaining budget otherwise.
	Limit      int64
	Remaining  int64
	ResetAfter time.Duration
	// RetryAfter is when a request of the same cost could pass. Zero when
	// allowed and when the cost can never pass.
	RetryAfter time.Duration
	// Wait is how long an allowed request must be delayed (leaky queue).
	Wait   time.Duration
	Policy string
	Scope  Scope
	Rule   Rule
	// Quotas lists every rule in force, in check order.
	Quotas []Quota
}

// Config configures a Limiter. The zero value of each field means the
// documented default.
type Config struct {
	// Store keeps the state. Required.
	Store store.Store
	// Algorithm is the default algorithm for checks that name none.
	// The zero value is algorithm.SlidingWindow.
	Algorithm algorithm.Kind
	// Environment, KeyPrefix and KeyVersion start every store key.
	// Defaults: "development", "ratelimit", "v1".
	Environment string
	KeyPrefix   string
	KeyVersion  string
	// KeySecret keys the hash that turns a client identity into a store key.
	// Servers that share a Redis store must share the secret. Default: a
	// fixed development secret.
	KeySecret []byte
}

// Errors returned by a Limiter.
var (
	// ErrNoChecks is returned by Allow when no check was given.
	ErrNoChecks = errors.New("calm: no checks")
	// ErrNegativeCost is returned by Allow for a cost below zero; nothing is
	// charged.
	ErrNegativeCost = errors.New("calm: negative cost")
)

// Limiter applies checks to a store. It is safe for concurrent use.
type Limiter struct {
	store       store.Store
	algorithm   algorithm.Kind
	keyStart    string // "environment:prefix:version:"
	secret      []byte
	scratchPool sync.Pool
	macPool     sync.Pool // hash.Hash keyed with secret, reset before use
}

// defaultKeySecret keys client hashes when Config.KeySecret is empty.
var defaultKeySecret = []byte("calm-development-key-secret")

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if cfg.Store == nil {
		return nil, errors.New("calm: Config.Store is nil: pass memory.New(memory.Config{}) or a Redis store")
	}
	env := cmp(cfg.Environment, "development")
	prefix := cmp(cfg.KeyPrefix, "ratelimit")
	version := cmp(cfg.KeyVersion, "v1")
	for name, v := range map[string]string{"Environment": env, "KeyPrefix": prefix, "KeyVersion": version} {
		if strings.ContainsAny(v, ":{} \t\r\n") {
			return nil, fmt.Errorf("calm: invalid %s %q: must not contain ':', braces or spaces", name, v)
		}
	}
	secret := cfg.KeySecret
	if len(secret) == 0 {
		secret = defaultKeySecret
	}
	l := &Limiter{
		store:     cfg.Store,
		algorithm: cfg.Algorithm,
		keyStart:  env + ":" + prefix + ":" + version + ":",
		secret:    secret,
	}
	l.scratchPool.New = func() any { return new(scratch) }
	l.macPool.New = func() any { return hmac.New(sha256.New, secret) }
	return l, nil
}

// KeyStart returns the "environment:prefix:version:" text that starts every
// key this limiter writes.
func (l *Limiter) KeyStart() string { return l.keyStart }

// Algorithm returns the limiter's default algorithm.
func (l *Limiter) Algorithm() algorithm.Kind { return l.algorithm }

type scratch struct {
	checks    []store.Check
	decisions []algorithm.Decision
	owners    []int // index of the Check each store check came from
}

// Allow applies every check to a request of the given cost and charges all
// of them only when every rule allows. A cost of zero reports the budget
// without charging. A store error is returned as is and nothing is charged;
// the caller chooses whether to fail open or closed.
func (l *Limiter) Allow(ctx context.Context, checks []Check, cost int64) (Result, error) {
	if len(checks) == 0 {
		return Result{}, ErrNoChecks
	}
	if cost < 0 {
		return Result{Reason: algorithm.ReasonInvalidCost}, fmt.Errorf("%w: %d", ErrNegativeCost, cost)
	}
	sc := l.scratchPool.Get().(*scratch)
	defer l.scratchPool.Put(sc)
	sc.checks, sc.owners = sc.checks[:0], sc.owners[:0]
	for i, c := range checks {
		kind := l.algorithm
		if c.Algorithm != nil {
			kind = *c.Algorithm
		}
		client := "*"
		if c.Client != "" {
			client = l.HashClient(c.Client)
		}
		for _, r := range c.Rules {
			lim := r.limit()
			lim.Burst, lim.Delay, lim.MaxWait = c.Burst, c.Delay, maxWaitMicros(c.MaxWait)
			sc.checks = append(sc.checks, store.Check{
				Key:       l.key(c, client, r),
				Algorithm: kind,
				Limit:     lim,
			})
			sc.owners = append(sc.owners, i)
		}
	}
	if len(sc.checks) == 0 {
		return Result{}, ErrNoChecks
	}
	if cap(sc.decisions) < len(sc.checks) {
		sc.decisions = make([]algorithm.Decision, len(sc.checks))
	}
	decisions := sc.decisions[:len(sc.checks)]
	allowed, err := l.store.Apply(ctx, sc.checks, cost, decisions)
	if err != nil {
		return Result{}, err
	}
	return l.result(checks, sc.owners, decisions, allowed), nil
}

// result folds the per-rule decisions into one Result.
func (l *Limiter) result(checks []Check, owners []int, decisions []algorithm.Decision, allowed bool) Result {
	res := Result{Allowed: allowed, Quotas: make([]Quota, 0, len(decisions))}
	best := -1
	rule := 0
	lastOwner := -1
	for i, d := range decisions {
		c := checks[owners[i]]
		if owners[i] != lastOwner {
			rule, lastOwner = 0, owners[i]
		}
		r := c.Rules[rule]
		rule++
		res.Quotas = append(res.Quotas, Quota{
			Policy:     policyName(c.Policy),
			Scope:      c.Scope,
			Rule:       r,
			Remaining:  d.Remaining,
			ResetAfter: micros(d.ResetAfter),
		})
		if best < 0 || decides(d, decisions[best], allowed) {
			best = i
			res.Policy, res.Scope, res.Rule = policyName(c.Policy), c.Scope, r
		}
		if d.Wait > 0 && micros(d.Wait) > res.Wait {
			res.Wait = micros(d.Wait)
		}
	}
	d := decisions[best]
	res.Reason = d.Reason
	res.Limit = d.Limit
	res.Remaining = d.Remaining
	res.ResetAfter = micros(d.ResetAfter)
	if !allowed {
		res.RetryAfter = micros(d.RetryAfter)
		res.Wait = 0
	}
	return res
}

// decides reports whether decision a explains the result better than b.
func decides(a, b algorithm.Decision, allowed bool) bool {
	if !allowed {
		if a.Allowed != b.Allowed {
			return !a.Allowed
		}
		if a.Reason == algorithm.ReasonCostTooLarge || b.Reason == algorithm.ReasonCostTooLarge {
			return a.Reason == algorithm.ReasonCostTooLarge && b.Reason != algorithm.ReasonCostTooLarge
		}
		return a.RetryAfter > b.RetryAfter
	}
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.ResetAfter > b.ResetAfter
}

// key builds "environment:prefix:version:scope:{endpoint:client}:window"
// from the hashed client. The braces are a Redis Cluster hash tag, so every
// rule of one check lands in one slot.
func (l *Limiter) key(c Check, client string, r Rule) string {
	var b strings.Builder
	b.Grow(len(l.keyStart) + len(c.Scope) + len(c.Endpoint) + 64)
	b.WriteString(l.keyStart)
	b.WriteString(string(c.Scope))
	b.WriteString(":{")
	writeEndpoint(&b, c.Endpoint)
	b.WriteByte(':')
	b.WriteString(client)
	b.WriteString("}:")
	b.WriteString(strconv.FormatInt(int64(r.Window/time.Second), 10))
	return b.String()
}

// HashClient returns the keyed hash of a client identity that stores and
// logs use in place of the identity: 32 hexadecimal characters.
func (l *Limiter) HashClient(client string) string {
	mac := l.macPool.Get().(hash.Hash)
	mac.Reset()
	_, _ = io.WriteString(mac, client)
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	l.macPool.Put(mac)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// maxEndpointKey bounds the endpoint part of a key; longer endpoints are
// replaced by a hash.
const maxEndpointKey = 96

// writeEndpoint writes an endpoint with every byte that could split a key or
// a hash tag replaced by '_'.
func writeEndpoint(b *strings.Builder, endpoint string) {
	if endpoint == "" {
		b.WriteByte('*')
		return
	}
	if len(endpoint) > maxEndpointKey {
		sum := sha256.Sum256([]byte(endpoint))
		b.WriteString("h-")
		b.WriteString(hex.EncodeToString(sum[:12]))
		return
	}
	for i := 0; i < len(endpoint); i++ {
		ch := endpoint[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			ch == '/', ch == '.', ch == '-', ch == '_', ch == '*':
			b.WriteByte(ch)
		default:
			b.WriteByte('_')
		}
	}
}

func policyName(p string) string {
	if p == "" {
		return DefaultPolicy
	}
	return p
}

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// maxWaitMicros converts Check.MaxWait to the microseconds of
// algorithm.Limit.MaxWait, rounding toward zero but never to zero, because
// zero there means no bound. A negative value stays negative, so that the
// store rejects it as an invalid limit.
func maxWaitMicros(d time.Duration) int64 {
	us := d.Microseconds()
	switch {
	case us == 0 && d > 0:
		return 1
	case us == 0 && d < 0:
		return -1
	}
	return us
}

func cmp(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
