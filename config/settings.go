package config

import (
	"math"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/policy"
)

// Header modes for HeaderMode.
const (
	HeadersLegacy = "legacy" // RateLimit-Limit, -Remaining, -Reset, X-RateLimit-Policy, -Scope
	HeadersDraft  = "draft"  // RateLimit-Policy and RateLimit structured fields
	HeadersBoth   = "both"
)

// Log formats for LogFormat.
const (
	LogText = "text"
	LogJSON = "json"
)

// Settings is the limiter and gateway configuration shared by every part of
// calm. The zero value is not useful: start from Defaults or Load.
type Settings struct {
	// Enabled turns rate limiting on. When false, requests pass without
	// checks or headers.
	Enabled bool
	// Algorithm applies to every rule that names none.
	Algorithm algorithm.Kind
	// DefaultLimit is the stack of rules for requests that no policy names.
	DefaultLimit []calm.Rule
	// MaxWait is the maximum time the leaky_queue algorithm holds a
	// request for its turn, for rules without a max wait of their own.
	MaxWait time.Duration
	// FailOpen allows requests when the store fails; otherwise they are
	// denied with 503.
	FailOpen bool
	// Environment, KeyPrefix and KeyVersion start every store key.
	Environment string
	KeyPrefix   string
	KeyVersion  string
	// IncludeHeaders adds rate-limit headers to limited responses.
	IncludeHeaders bool
	// HeaderMode is HeadersLegacy, HeadersDraft or HeadersBoth.
	HeaderMode string
	// LogViolations logs one line per denied request.
	LogViolations bool
	// StatusCode is the status of a denied response: 420 or 429.
	StatusCode int
	// Message and Detail fill the JSON body of a denied response. An empty
	// Message means the reason phrase of StatusCode.
	Message string
	Detail  string
	// MemoryMaxKeys bounds the keys the memory store keeps. A new key in a
	// full shard evicts the key of its two buckets whose state expires
	// soonest.
	MemoryMaxKeys int
	// MemoryCleanupInterval is how often the memory store drops expired
	// state.
	MemoryCleanupInterval time.Duration
	// LogFormat is LogText or LogJSON; LogLevel is debug, info, warn or
	// error.
	LogFormat string
	LogLevel  string
}

// Vars returns the settings as Vars that store into s, in documentation
// order. Load parses every default, so the defaults live here only.
func (s *Settings) Vars() []Var {
	return []Var{
		{Env: "RATELIMIT_ENABLED", Key: "enabled", Default: "true", Parse: Bool(&s.Enabled),
			Usage: "Turns rate limiting on. With false, requests pass without checks or headers."},
		{Env: "RATELIMIT_ALGORITHM", Key: "algorithm", Default: "sliding_window",
			Parse: Algorithm(&s.Algorithm),
			Usage: "Algorithm for rules that name none: " + orList(algorithmNames()) + "."},
		{Env: "RATELIMIT_DEFAULT_LIMIT", Key: "default_limit", Default: "100/minute,1000/hour",
			Parse: Rules(&s.DefaultLimit),
			Usage: "Rules for requests that no policy names, comma separated; the most " +
				"restrictive decides."},
		{Env: "RATELIMIT_MAX_WAIT", Key: "max_wait", Default: "5s",
			Parse: Duration(&s.MaxWait, time.Millisecond, policy.MaxWaitLimit),
			Usage: "Maximum time the leaky_queue algorithm holds a request until its turn, for " +
				"rules without their own max_wait; a request that would wait longer is denied at " +
				"once (reason queue_full) and charged nothing."},
		{Env: "RATELIMIT_FAIL_OPEN", Key: "fail_open", Default: "true", Parse: Bool(&s.FailOpen),
			Usage: "When the store fails, allow requests (true) or deny them with 503 (false)."},
		{Env: "RATELIMIT_KEY_PREFIX", Key: "key_prefix", Default: "ratelimit",
			Parse: KeyPart(&s.KeyPrefix), Usage: "Second part of every store key."},
		{Env: "RATELIMIT_KEY_VERSION", Key: "key_version", Default: "v1",
			Parse: KeyPart(&s.KeyVersion),
			Usage: "Third part of every store key; change it to start from empty state."},
		{Env: "RATELIMIT_INCLUDE_HEADERS", Key: "include_headers", Default: "true",
			Parse: Bool(&s.IncludeHeaders), Usage: "Adds rate-limit headers to limited responses."},
		{Env: "RATELIMIT_HEADER_MODE", Key: "header_mode", Default: HeadersBoth,
			Parse: OneOf(&s.HeaderMode, HeadersLegacy, HeadersDraft, HeadersBoth),
			Usage: "Which rate-limit headers to send: legacy (RateLimit-Limit, -Remaining, " +
				"-Reset), draft (RateLimit-Policy and RateLimit) or both."},
		{Env: "RATELIMIT_LOG_VIOLATIONS", Key: "log_violations", Default: "true",
			Parse: Bool(&s.LogViolations), Usage: "Logs one line per denied request."},
		{Env: "RATELIMIT_ENVIRONMENT", Key: "environment", Default: "development",
			Parse: KeyPart(&s.Environment),
			Usage: "First part of every store key, such as development, staging or production."},
		{Env: "RATELIMIT_STATUS_CODE", Key: "status_code", Default: "420",
			Parse: statusCode(&s.StatusCode),
			Usage: "Status of a denied response: 420 (Enhance Your Calm) or 429 (Too Many Requests)."},
		{Env: "RATELIMIT_HTTP_420_MESSAGE", Key: "http_420_message",
			Parse: Text(&s.Message, 256),
			Usage: "The message field of a denied response's JSON body; empty means the status's " +
				"reason phrase: Enhance Your Calm for 420, Too Many Requests for 429."},
		{Env: "RATELIMIT_HTTP_420_DETAIL", Key: "http_420_detail",
			Default: "Too many requests: retry after the number of seconds in Retry-After.",
			Parse:   Text(&s.Detail, 1024),
			Usage: "The detail field of a denied response's JSON body when the client may retry; " +
				"a request that costs more than the limit allows gets its own detail."},
		{Env: "RATELIMIT_MEMORY_MAX_KEYS", Key: "memory_max_keys", Default: "1000000",
			Parse: Int(&s.MemoryMaxKeys, 1, math.MaxInt32),
			Usage: "Maximum number of keys in the memory store, split evenly over its shards. " +
				"A new key in a full shard evicts the key of its two buckets whose state " +
				"expires soonest, so leave a few percent of headroom."},
		{Env: "RATELIMIT_MEMORY_CLEANUP_INTERVAL", Key: "memory_cleanup_interval", Default: "60s",
			Parse: Duration(&s.MemoryCleanupInterval, time.Second, 24*time.Hour),
			Usage: "How often the memory store drops expired state (a duration or seconds)."},
		{Env: "RATELIMIT_LOG_FORMAT", Key: "log_format", Default: LogText,
			Parse: OneOf(&s.LogFormat, LogText, LogJSON), Usage: "Log format: text or json."},
		{Env: "RATELIMIT_LOG_LEVEL", Key: "log_level", Default: "info",
			Parse: OneOf(&s.LogLevel, "debug", "info", "warn", "error"),
			Usage: "Lowest log level written: debug, info, warn or error."},
	}
}

// statusCode accepts the two statuses a denied response may carry.
func statusCode(dst *int) func(string) error {
	return func(v string) error {
		var code int
		if err := Int(&code, 420, 429)(v); err != nil || code != 420 && code != 429 {
			return errWant420or429
		}
		*dst = code
		return nil
	}
}

// Defaults returns the settings with every default applied.
func Defaults() Settings {
	var s Settings
	for _, v := range s.Vars() {
		if err := v.Parse(v.Default); err != nil {
			panic("config: invalid default for " + v.Env + ": " + err.Error())
		}
	}
	return s
}
