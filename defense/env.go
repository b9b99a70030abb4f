package defense

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
)

// Environment variables of the defense settings.
const (
	EnvMode               = "RATELIMIT_DEFENSE_MODE"
	EnvEndpointMultiplier = "RATELIMIT_DEFENSE_ENDPOINT_LIMIT_MULTIPLIER"
	EnvGlobalLimit        = "RATELIMIT_DEFENSE_GLOBAL_LIMIT"
	EnvThreshold          = "RATELIMIT_DEFENSE_CIRCUIT_THRESHOLD"
	EnvThresholdAlias     = "RATELIMIT_CIRCUIT_THRESHOLD"
	EnvWindow             = "RATELIMIT_DEFENSE_CIRCUIT_WINDOW"
	EnvRecoveryTime       = "RATELIMIT_DEFENSE_CIRCUIT_RECOVERY_TIME"
	EnvMaxJitter          = "RATELIMIT_DEFENSE_CIRCUIT_MAX_JITTER"
	EnvHalfOpenProbes     = "RATELIMIT_DEFENSE_CIRCUIT_HALF_OPEN_PROBES"
	EnvSyncInterval       = "RATELIMIT_DEFENSE_CIRCUIT_SYNC_INTERVAL"
	EnvReductionFactor    = "RATELIMIT_DEFENSE_ADAPTIVE_REDUCTION_FACTOR"
	EnvAllowKnownGood     = "RATELIMIT_DEFENSE_LOCKDOWN_ALLOW_KNOWN_GOOD"
)

// Setting is one defense setting as the gateway's configuration reads it.
type Setting struct {
	Env string // environment variable
	Key string // key in the config file's settings section
	// Usage is one sentence for the docs, with the default.
	Usage string
	// Default is the default as a user would write it, or "" where Parse
	// of "" keeps the Config default (the threshold, whose alias must not
	// be overridden by a default).
	Default string
	// Parse stores value into cfg. An empty value leaves cfg unchanged, so
	// that the Config default applies. The error says what is expected,
	// such as "use true or false".
	Parse func(cfg *Config, value string) error
}

// Settings returns every defense setting. The alias of the threshold comes
// before its long name, so that the long name wins when both are set.
func Settings() []Setting {
	duration := func(field func(*Config) *time.Duration, least time.Duration) func(*Config, string) error {
		return durationSetting(field, least)
	}
	return []Setting{{
		Env: EnvMode, Key: "defense_mode", Default: "adaptive", Parse: parseMode,
		Usage: "What the open circuit breaker does: adaptive, lockdown, challenge or disabled.",
	}, {
		Env: EnvEndpointMultiplier, Key: "defense_endpoint_limit_multiplier", Default: "10",
		Parse: parseMultiplier,
		Usage: "Endpoint-wide limit as a multiple of the per-client rules; 0 turns the endpoint layer off.",
	}, {
		Env: EnvGlobalLimit, Key: "defense_global_limit", Default: "50000/minute",
		Parse: parseGlobalSetting,
		Usage: "Global limit over all clients: rules, a number of requests per minute, or off.",
	}, {
		Env: EnvThresholdAlias, Parse: parseThreshold,
		Usage: "Short name of " + EnvThreshold + ", which wins when both are set.",
	}, {
		Env: EnvThreshold, Key: "defense_circuit_threshold", Parse: parseThreshold,
		Usage: "Arrivals per circuit window that open the circuit breaker (empty means 10000; " +
			"0 never opens it automatically).",
	}, {
		Env: EnvWindow, Key: "defense_circuit_window", Default: "60s",
		Parse: duration(func(c *Config) *time.Duration { return &c.Window }, time.Second),
		Usage: "Window in which the circuit breaker counts arrivals.",
	}, {
		Env: EnvRecoveryTime, Key: "defense_circuit_recovery_time", Default: "30s",
		Parse: duration(func(c *Config) *time.Duration { return &c.RecoveryTime }, time.Millisecond),
		Usage: "How long the circuit stays open before it probes.",
	}, {
		Env: EnvMaxJitter, Key: "defense_circuit_max_jitter", Default: "5s",
		Parse: duration(func(c *Config) *time.Duration { return &c.MaxJitter }, 0),
		Usage: "Maximum random delay each server adds to the recovery time; 0 for none.",
	}, {
		Env: EnvHalfOpenProbes, Key: "defense_circuit_half_open_probes", Default: "10",
		Parse: parseProbes,
		Usage: "Requests one server admits while the circuit is half-open.",
	}, {
		Env: EnvSyncInterval, Key: "defense_circuit_sync_interval", Default: "25ms",
		Parse: duration(func(c *Config) *time.Duration { return &c.SyncInterval }, time.Millisecond),
		Usage: "How often a server syncs the circuit state with Redis, which bounds how long " +
			"an operator's HSET takes to reach it.",
	}, {
		Env: EnvReductionFactor, Key: "defense_adaptive_reduction_factor", Default: "0.5",
		Parse: parseFactor,
		Usage: "Fraction of every limit that remains in adaptive mode while the circuit is open.",
	}, {
		Env: EnvAllowKnownGood, Key: "defense_lockdown_allow_known_good", Default: "false",
		Parse: parseKnownGood,
		Usage: "Let known-good clients (verified, allowed before the trip, no violation for an " +
			"hour) through in lockdown mode.",
	}}
}

// ConfigFromEnv returns the Config that the RATELIMIT_DEFENSE_* variables
// describe, reading them through lookup (such as os.LookupEnv). Unset
// variables keep their defaults. Durations are seconds ("30") or Go
// durations ("30s", "1m"). The error names the variable, its value and the
// fix. Redis, KeyStart, Logger and EndpointRules are left for the caller.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	for _, s := range Settings() {
		v, _ := lookup(s.Env)
		if err := s.Parse(&cfg, v); err != nil {
			return cfg, fmt.Errorf("invalid %s=%q: %w", s.Env, v, err)
		}
	}
	return cfg, nil
}

func parseMode(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	m, err := ParseMode(v)
	if err != nil {
		return errors.New("use adaptive, lockdown, challenge or disabled")
	}
	cfg.Mode = m
	return nil
}

func parseMultiplier(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1000000 {
		return errors.New("use a whole number from 1 to 1000000, or 0 to turn the endpoint layer off")
	}
	cfg.EndpointMultiplier = n
	if n == 0 {
		cfg.EndpointMultiplier = -1
	}
	return nil
}

// parseGlobalSetting parses the global limit: "off", a number of requests
// per minute, or a list of rules.
func parseGlobalSetting(cfg *Config, v string) error {
	v = strings.TrimSpace(v)
	fix := errors.New("use rules such as 50000/minute, a number of requests per minute, or off")
	switch strings.ToLower(v) {
	case "":
		return nil
	case "off", "none", "0":
		cfg.GlobalRules = []calm.Rule{}
		return nil
	}
	text := v
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return fix
		}
		text = fmt.Sprintf("%d/minute", n)
	}
	rules, err := calm.ParseRules(text)
	if err != nil {
		return fix
	}
	cfg.GlobalRules = rules
	return nil
}

func parseThreshold(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return errors.New("use a whole number of requests per window, or 0 to never open automatically")
	}
	cfg.Threshold = n
	if n == 0 {
		cfg.Threshold = -1
	}
	return nil
}

// durationSetting returns a parser for the duration field that field
// selects, from least to 24h. Zero, where allowed, is stored as -1, since
// zero means the default in Config.
func durationSetting(field func(*Config) *time.Duration, least time.Duration) func(*Config, string) error {
	return func(cfg *Config, v string) error {
		if v = strings.TrimSpace(v); v == "" {
			return nil
		}
		d, err := parseSeconds(v)
		if err != nil || d < least || d > 24*time.Hour {
			return fmt.Errorf("use a duration from %v to 24h, such as 30 (seconds) or 30s", least)
		}
		if d == 0 {
			d = -1
		}
		*field(cfg) = d
		return nil
	}
}

func parseProbes(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > 1000000 {
		return errors.New("use a whole number from 1 to 1000000")
	}
	cfg.HalfOpenProbes = n
	return nil
}

func parseFactor(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0 && f <= 1) {
		return errors.New("use a fraction greater than 0 and at most 1, such as 0.5")
	}
	cfg.ReductionFactor = f
	return nil
}

func parseKnownGood(cfg *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("use true or false")
	}
	cfg.AllowKnownGood = b
	return nil
}

// parseSeconds parses "30" as seconds, or a Go duration such as "30s".
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 366*24*3600 {
			return 0, errors.New("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}
