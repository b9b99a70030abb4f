// Package defense adds the endpoint-wide and global layers of defense to a
// request's per-client checks and runs the circuit breaker that all servers
// share through Redis.
//
// A request passes three layers, decided together in one calm.Limiter.Allow
// call so that a request denied by any layer consumes no quota in any layer:
//
//   - user: the per-client rules chosen by policy, tier and identity;
//   - endpoint: one endpoint across all clients, the endpoint's rules times a
//     multiplier or explicit endpoint-wide rules;
//   - global: the whole service.
//
// The circuit breaker counts every arrival in a sliding window. When the
// count reaches the threshold it opens for the recovery time plus a random
// jitter. While it is open, the Mode decides who passes. After the recovery
// time it is half-open: it admits a bounded number of probe requests and
// then closes when the arrival rate is back under the threshold, or opens
// again. With Redis the state lives in one hash that every server reads, so
// one trip stops the whole fleet; see docs/DEFENSE.md.
package defense

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm"
)

// Mode is the policy of the open circuit breaker: who passes and with which
// limits. The zero value is Adaptive.
type Mode uint8

// The modes of the circuit breaker.
const (
	// Adaptive shrinks every layer's limits by the reduction factor while
	// the circuit is open. Clients with the bypass permission keep their
	// full limits.
	Adaptive Mode = iota
	// Lockdown denies every request while the circuit is open, except those
	// of clients with the bypass permission and, when enabled, known-good
	// clients.
	Lockdown
	// Challenge denies requests while the circuit is open with a response
	// that requires a challenge, except for clients with the
	// bypass permission and requests that carry a solved challenge.
	Challenge
	// Disabled turns the circuit breaker off. The layers still apply.
	Disabled
)

var modeNames = [...]string{
	Adaptive:  "adaptive",
	Lockdown:  "lockdown",
	Challenge: "challenge",
	Disabled:  "disabled",
}

// String returns the configuration name of m, such as "lockdown".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode returns the Mode whose configuration name is s.
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if strings.EqualFold(strings.TrimSpace(s), name) {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown defense mode %q: use adaptive, lockdown, challenge or disabled", s)
}

// State is the state of the circuit breaker in one server's copy.
type State uint8

// The states of the circuit breaker.
const (
	Closed   State = iota // requests pass; arrivals are counted
	Open                  // the mode decides who passes
	HalfOpen              // a bounded number of probes pass; the rest as Open
)

var stateNames = [...]string{Closed: "closed", Open: "open", HalfOpen: "half_open"}

// String returns "closed", "open" or "half_open".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// BypassPermission is the permission that lets a client through an open
// circuit breaker in every mode.
const BypassPermission = "circuit.bypass"

// Defaults of Config.
const (
	DefaultEndpointMultiplier = 10
	DefaultThreshold          = 10000
	DefaultWindow             = 60 * time.Second
	DefaultRecoveryTime       = 30 * time.Second
	DefaultMaxJitter          = 5 * time.Second
	DefaultHalfOpenProbes     = 10
	DefaultProbeWindow        = time.Second
	DefaultReductionFactor    = 0.5
	DefaultSyncInterval       = 25 * time.Millisecond
	DefaultRedisTimeout       = 250 * time.Millisecond
	DefaultKnownGoodWindow    = time.Hour
)

// DefaultGlobalRules is the global layer when Config.GlobalRules is nil:
// 50000 requests per minute.
var DefaultGlobalRules = []calm.Rule{{Requests: 50000, Window: time.Minute}}

// Config configures a Defense. The zero value of each field means the
// documented default.
type Config struct {
	// Mode is the policy of the open circuit. Default Adaptive.
	Mode Mode

	// EndpointMultiplier sets each endpoint-wide rule to the per-client
	// rule of the same window times this number. Default 10; a negative
	// value turns the endpoint layer off for endpoints without EndpointRules.
	EndpointMultiplier int64
	// EndpointRules are explicit endpoint-wide rules by endpoint, as
	// calm.Check.Endpoint names it. They replace the multiplier.
	EndpointRules map[string][]calm.Rule
	// GlobalRules is the global layer. Nil means DefaultGlobalRules; an
	// empty non-nil slice turns the global layer off.
	GlobalRules []calm.Rule

	// Threshold is the number of arrivals in Window that opens the circuit.
	// Default 10000; a negative value never opens it automatically.
	Threshold int64
	// Window is the length of the sliding window that counts arrivals.
	// Default 60s.
	Window time.Duration
	// RecoveryTime is how long the circuit stays open before it probes.
	// Default 30s.
	RecoveryTime time.Duration
	// MaxJitter bounds the random time each server adds to RecoveryTime, so
	// that servers do not probe in a herd. Default 5s; negative means none.
	MaxJitter time.Duration
	// HalfOpenProbes is how many requests one server admits while half-open.
	// Default 10.
	HalfOpenProbes int64
	// ProbeWindow is how long a server stays half-open when fewer probes
	// than HalfOpenProbes arrive. Default 1s.
	ProbeWindow time.Duration
	// ReductionFactor is the fraction of every limit that remains in
	// Adaptive mode while the circuit is open, in (0, 1]. Default 0.5.
	ReductionFactor float64
	// AllowKnownGood lets known-good clients through in Lockdown mode. A
	// known-good client has a verified identity, made a request that the
	// layers allowed before the circuit opened, and has had no violation for
	// KnownGoodWindow. Default off.
	AllowKnownGood bool
	// KnownGoodWindow is how long a violation keeps a client from being
	// known-good. Default 1h.
	KnownGoodWindow time.Duration
	// KnownGoodMaxClients bounds the clients remembered for known-good
	// decisions. Default 100000; clients beyond it are never known-good.
	KnownGoodMaxClients int

	// Redis shares the circuit breaker between servers, through a client
	// the caller owns (it may be the one the Redis store uses). When Redis
	// and Dial are both nil, the breaker stays local to this process.
	Redis rueidis.Client
	// Dial connects a client of the Defense's own when Redis is nil. It is
	// called from the background loop, again after each failure with
	// backoff, so a server can start while Redis is down. Close closes the
	// client it returned.
	Dial func() (rueidis.Client, error)
	// KeyStart starts the state hash key and the events channel; pass
	// calm.Limiter.KeyStart(). Default "development:ratelimit:v1:".
	KeyStart string
	// SyncInterval is how often the server sends its arrival count to Redis
	// and reads the shared state back. It bounds how long an operator's
	// HSET takes to reach this server. Default 25ms.
	SyncInterval time.Duration
	// RedisTimeout bounds every Redis call of the breaker. Default 250ms.
	RedisTimeout time.Duration

	// Logger receives one line per state change and per change of Redis
	// health. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand draws the recovery jitter. Default a generator seeded at random.
	// The Defense owns it: do not use it elsewhere.
	Rand *rand.Rand
}

// Permissions is the part of a verified identity the breaker consults.
type Permissions interface {
	// HasPermission reports whether the identity was granted perm, such as
	// "circuit.bypass", by a verified credential.
	HasPermission(perm string) bool
}

// Request describes one request to the circuit breaker.
type Request struct {
	// Identity is the verified identity of the client, such as a token
	// subject, or "" when the client is anonymous. It is hashed before it is
	// stored.
	Identity string
	// Permissions of the verified identity; nil means none.
	Permissions Permissions
	// ChallengeSolved reports that the client solved a challenge that the
	// Challenge mode asked for. The challenge itself is outside this
	// package.
	ChallengeSolved bool
}

// Errors returned by New and Start.
var (
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("defense: closed")
)

// Defense adds layers to requests and runs the circuit breaker. It is safe
// for concurrent use. Call Start before serving and Close when done.
type Defense struct {
	cfg      Config
	params   circuitParams
	global   []calm.Rule
	factor   int64 // ReductionFactor in parts per million
	log      *slog.Logger
	now      func() time.Time
	stateKey string
	channel  string

	pending atomic.Int64 // arrivals not yet sent to the backend
	probes  atomic.Int64 // probes left while half-open
	view    atomic.Pointer[view]

	mu        sync.Mutex // guards everything below and transitions of view
	local     record     // the local breaker
	remote    *sharedBackend
	degraded  bool // Redis failed; the local breaker decides
	retryAt   time.Time
	backoff   time.Duration
	rand      *rand.Rand
	subs      map[int]chan Event
	nextSub   int
	dropped   atomic.Int64
	knownGood *knownGood

	stop    chan struct{}
	done    chan struct{}
	started bool
	closed  bool
}

// New returns a Defense for cfg, or an error that names the invalid setting.
func New(cfg Config) (*Defense, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	d := &Defense{
		cfg: cfg,
		params: circuitParams{
			threshold:  max(cfg.Threshold, 0),
			windowMs:   cfg.Window.Milliseconds(),
			recoveryMs: cfg.RecoveryTime.Milliseconds(),
		},
		global:    cfg.GlobalRules,
		factor:    int64(cfg.ReductionFactor*1e6 + 0.5),
		log:       cfg.Logger,
		now:       cfg.Now,
		rand:      cfg.Rand,
		stateKey:  cfg.KeyStart + "circuit:state",
		channel:   cfg.KeyStart + "circuit:events",
		subs:      make(map[int]chan Event),
		knownGood: newKnownGood(cfg.KnownGoodMaxClients, cfg.KnownGoodWindow),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if (cfg.Redis != nil || cfg.Dial != nil) && cfg.Mode != Disabled {
		d.remote = newSharedBackend(d.stateKey, d.channel, d.params, cfg)
	}
	d.view.Store(&view{localGen: true})
	return d, nil
}

func withDefaults(cfg Config) (Config, error) {
	if cfg.Mode > Disabled {
		return cfg, fmt.Errorf("defense: invalid Mode %d: use Adaptive, Lockdown, Challenge or Disabled", cfg.Mode)
	}
	if cfg.EndpointMultiplier == 0 {
		cfg.EndpointMultiplier = DefaultEndpointMultiplier
	}
	if cfg.GlobalRules == nil {
		cfg.GlobalRules = DefaultGlobalRules
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	cfg.Window = orDuration(cfg.Window, DefaultWindow)
	cfg.RecoveryTime = orDuration(cfg.RecoveryTime, DefaultRecoveryTime)
	cfg.MaxJitter = orDuration(cfg.MaxJitter, DefaultMaxJitter)
	cfg.ProbeWindow = orDuration(cfg.ProbeWindow, DefaultProbeWindow)
	cfg.SyncInterval = orDuration(cfg.SyncInterval, DefaultSyncInterval)
	cfg.RedisTimeout = orDuration(cfg.RedisTimeout, DefaultRedisTimeout)
	cfg.KnownGoodWindow = orDuration(cfg.KnownGoodWindow, DefaultKnownGoodWindow)
	if cfg.HalfOpenProbes == 0 {
		cfg.HalfOpenProbes = DefaultHalfOpenProbes
	}
	if cfg.ReductionFactor == 0 {
		cfg.ReductionFactor = DefaultReductionFactor
	}
	if cfg.KnownGoodMaxClients == 0 {
		cfg.KnownGoodMaxClients = 100000
	}
	if cfg.KeyStart == "" {
		cfg.KeyStart = "development:ratelimit:v1:"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return cfg, validate(cfg)
}

func validate(cfg Config) error {
	switch {
	case cfg.Window < time.Second:
		return fmt.Errorf("defense: invalid Window %v: use at least 1s", cfg.Window)
	case cfg.Window > 24*time.Hour:
		return fmt.Errorf("defense: invalid Window %v: use at most 24h", cfg.Window)
	case cfg.RecoveryTime < 0 || cfg.RecoveryTime > 24*time.Hour:
		return fmt.Errorf("defense: invalid RecoveryTime %v: use 0 to 24h", cfg.RecoveryTime)
	case cfg.HalfOpenProbes < 0:
		return fmt.Errorf("defense: invalid HalfOpenProbes %d: must not be negative", cfg.HalfOpenProbes)
	case !(cfg.ReductionFactor > 0 && cfg.ReductionFactor <= 1):
		return fmt.Errorf("defense: invalid ReductionFactor %v: use a fraction in (0, 1], such as 0.5", cfg.ReductionFactor)
	case cfg.Threshold > 1<<40:
		return fmt.Errorf("defense: invalid Threshold %d: use at most 2^40", cfg.Threshold)
	case strings.ContainsAny(cfg.KeyStart, "{} \t\r\n"):
		return fmt.Errorf("defense: invalid KeyStart %q: must not contain braces or spaces", cfg.KeyStart)
	}
	for endpoint, rules := range cfg.EndpointRules {
		if len(rules) == 0 {
			return fmt.Errorf("defense: EndpointRules[%q] is empty: give at least one rule or remove it", endpoint)
		}
	}
	return nil
}

func orDuration(d, fallback time.Duration) time.Duration {
	if d == 0 {
		return fallback
	}
	return d
}

// Mode returns the configured mode.
func (d *Defense) Mode() Mode { return d.cfg.Mode }

// StateKey returns the key of the shared state hash, such as
// "development:ratelimit:v1:circuit:state".
func (d *Defense) StateKey() string { return d.stateKey }

// EventsChannel returns the Redis channel that receives every change of the
// shared state.
func (d *Defense) EventsChannel() string { return d.channel }

// Start reads the shared state from Redis, so that a server starting while
// the circuit is open starts open, and starts the background work that
// keeps the state current. When Redis does not answer within RedisTimeout,
// Start logs one warning and the local breaker decides until Redis returns;
// Start returns an error only after Close. Call it once, before serving.
func (d *Defense) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	if d.started {
		d.mu.Unlock()
		return nil
	}
	d.started = true
	d.mu.Unlock()

	if d.cfg.Mode == Disabled {
		close(d.done)
		return nil
	}
	d.Sync(ctx)
	if d.remote != nil {
		d.remote.subscribe(d.applyEvent, d.cfg.SyncInterval)
	}
	go d.loop()
	return nil
}

// Close stops the background work and the subscription. It does not close
// the Redis client.
func (d *Defense) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	started := d.started
	d.mu.Unlock()

	close(d.stop)
	if started {
		<-d.done
	}
	if d.remote != nil {
		d.remote.close()
	}
	d.closeSubscribers()
	return nil
}

func (d *Defense) loop() {
	defer close(d.done)
	ticker := time.NewTicker(d.cfg.SyncInterval)
	defer ticker.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-ticker.C:
			d.Sync(context.Background())
		}
	}
}
