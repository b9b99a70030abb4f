package defense

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
)

// Environment variables read by ConfigFromEnv.
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

// ConfigFromEnv returns the Config that the RATELIMIT_DEFENSE_* variables
// describe, reading them through lookup (such as os.LookupEnv). Unset
// variables keep their defaults. Durations are seconds ("30") or Go
// durations ("30s", "1m"). The error names the variable, its value and the
// fix. Redis, KeyStart, Logger and EndpointRules are left for the caller.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	var err error
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	if v, ok := get(EnvMode); ok {
		if cfg.Mode, err = ParseMode(v); err != nil {
			return cfg, envError(EnvMode, v, "use adaptive, lockdown, challenge or disabled")
		}
	}
	if v, ok := get(EnvEndpointMultiplier); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1000000 {
			return cfg, envError(EnvEndpointMultiplier, v, "use a whole number from 1 to 1000000, or 0 to turn the endpoint layer off")
		}
		cfg.EndpointMultiplier = n
		if n == 0 {
			cfg.EndpointMultiplier = -1
		}
	}
	if v, ok := get(EnvGlobalLimit); ok {
		if cfg.GlobalRules, err = parseGlobal(v); err != nil {
			return cfg, envError(EnvGlobalLimit, v, "use rules such as 50000/minute, a number of requests per minute, or off")
		}
	}
	if err := thresholdFromEnv(get, &cfg); err != nil {
		return cfg, err
	}
	durations := []struct {
		name string
		dst  *time.Duration
		min  time.Duration
	}{
		{EnvWindow, &cfg.Window, time.Second},
		{EnvRecoveryTime, &cfg.RecoveryTime, time.Millisecond},
		{EnvMaxJitter, &cfg.MaxJitter, 0},
		{EnvSyncInterval, &cfg.SyncInterval, time.Millisecond},
	}
	for _, d := range durations {
		v, ok := get(d.name)
		if !ok {
			continue
		}
		dur, err := parseSeconds(v)
		if err != nil || dur < d.min || dur > 24*time.Hour {
			return cfg, envError(d.name, v, fmt.Sprintf("use a duration from %v to 24h, such as 30 (seconds) or 30s", d.min))
		}
		*d.dst = dur
		if dur == 0 {
			*d.dst = -1 // zero means the default in Config
		}
	}
	if v, ok := get(EnvHalfOpenProbes); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 1000000 {
			return cfg, envError(EnvHalfOpenProbes, v, "use a whole number from 1 to 1000000")
		}
		cfg.HalfOpenProbes = n
	}
	if v, ok := get(EnvReductionFactor); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return cfg, envError(EnvReductionFactor, v, "use a fraction greater than 0 and at most 1, such as 0.5")
		}
		cfg.ReductionFactor = f
	}
	if v, ok := get(EnvAllowKnownGood); ok {
		if cfg.AllowKnownGood, err = strconv.ParseBool(v); err != nil {
			return cfg, envError(EnvAllowKnownGood, v, "use true or false")
		}
	}
	return cfg, nil
}

func thresholdFromEnv(get func(string) (string, bool), cfg *Config) error {
	name := EnvThreshold
	v, ok := get(name)
	if !ok {
		name = EnvThresholdAlias
		v, ok = get(name)
	}
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return envError(name, v, "use a whole number of requests per window, or 0 to never open automatically")
	}
	cfg.Threshold = n
	if n == 0 {
		cfg.Threshold = -1
	}
	return nil
}

func envError(name, value, fix string) error {
	return fmt.Errorf("invalid %s=%q: %s", name, value, fix)
}

// parseGlobal parses the global limit: "off", a number of requests per
// minute, or a list of rules.
func parseGlobal(v string) ([]calm.Rule, error) {
	switch strings.ToLower(v) {
	case "off", "none", "0":
		return []calm.Rule{}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return nil, fmt.Errorf("invalid global limit %d", n)
		}
		return calm.ParseRules(fmt.Sprintf("%d/minute", n))
	}
	return calm.ParseRules(v)
}

// parseSeconds parses "30" as seconds, or a Go duration such as "30s".
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 366*24*3600 {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}
