package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/fallback"
	"github.com/calm-limiter/calm/store/memory"
	"github.com/calm-limiter/calm/store/nearcache"
	redisstore "github.com/calm-limiter/calm/store/redis"
)

func init() { addExtension(newRedisExtension) }

// redisExtension opens the Redis store when RATELIMIT_REDIS_URL is set,
// with the memory store taking over while Redis is unreachable unless
// RATELIMIT_FALLBACK_TO_MEMORY is false.
type redisExtension struct {
	url            string
	maxConns       int
	socketTimeout  time.Duration
	timeout        time.Duration
	fallback       bool
	fallbackChosen bool // RATELIMIT_FALLBACK_TO_MEMORY was set, not defaulted
	nearCache      bool
}

func newRedisExtension() *extension { return (&redisExtension{}).extension() }

func (e *redisExtension) extension() *extension {
	return &extension{
		name:  "redis",
		vars:  e.vars,
		setup: e.setup,
	}
}

func (e *redisExtension) vars() []config.Var {
	return []config.Var{{
		Env: "RATELIMIT_REDIS_URL", Key: "redis_url", Secret: true,
		Usage: "Redis URL, such as redis://127.0.0.1:6379/0 or rediss:// for TLS, with " +
			"?master_set=NAME for Sentinel; a Cluster is detected. Empty keeps the state in memory.",
		Parse: config.Text(&e.url, 2048),
	}, {
		Env: "RATELIMIT_REDIS_MAX_CONNECTIONS", Key: "redis_max_connections", Default: "0",
		Usage: "TCP connections per Redis node, rounded down to a power of two (at most 256); " +
			"0 keeps the client's default of 4, or 1 per Cluster node.",
		Parse: config.Int(&e.maxConns, 0, 1<<16),
	}, {
		Env: "RATELIMIT_REDIS_SOCKET_TIMEOUT", Key: "redis_socket_timeout", Default: "5s",
		Usage: "How long to wait for Redis to accept a connection or answer on it before " +
			"the connection is closed.",
		Parse: config.Duration(&e.socketTimeout, 10*time.Millisecond, 10*time.Minute),
	}, {
		Env: "RATELIMIT_REDIS_TIMEOUT", Key: "redis_timeout", Default: "50ms",
		Usage: "Longest time a request waits for Redis before the fallback or " +
			"RATELIMIT_FAIL_OPEN decides.",
		Parse: config.Duration(&e.timeout, time.Millisecond, time.Minute),
	}, {
		Env: "RATELIMIT_REDIS_NEAR_CACHE", Key: "redis_near_cache", Default: "false",
		Usage: "Lease budget from Redis for hot keys and answer from the lease, and cache " +
			"denials until Retry-After: fewer round trips, never more admitted, some " +
			"headers approximate (see docs/REDIS.md).",
		Parse: config.Bool(&e.nearCache),
	}, {
		Env: "RATELIMIT_FALLBACK_TO_MEMORY", Key: "fallback_to_memory",
		Usage: "Check limits in memory while Redis is unreachable (default true). In " +
			"production without a Redis URL, true must be set to run on memory alone.",
		Parse: e.parseFallback,
	}}
}

// parseFallback parses RATELIMIT_FALLBACK_TO_MEMORY and records whether it
// was set at all: the empty default means true, but not chosen.
func (e *redisExtension) parseFallback(v string) error {
	if strings.TrimSpace(v) == "" {
		e.fallback, e.fallbackChosen = true, false
		return nil
	}
	e.fallbackChosen = true
	return config.Bool(&e.fallback)(v)
}

func (e *redisExtension) setup(ctx context.Context, gw *gateway) error {
	if e.url == "" {
		gw.memoryChosen = e.fallbackChosen && e.fallback
		return redisstore.CheckProduction(gw.settings.Environment, e.url, gw.memoryChosen)
	}
	primary, err := redisstore.New(redisstore.Config{
		URL:            e.url,
		MaxConnections: e.maxConns,
		SocketTimeout:  e.socketTimeout,
		Timeout:        e.timeout,
	})
	if err != nil {
		return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
	}
	var st store.Store = primary
	if e.nearCache {
		if st, err = nearcache.New(nearcache.Config{Store: primary}); err != nil {
			primary.Close()
			return fmt.Errorf("RATELIMIT_REDIS_NEAR_CACHE: %w", err)
		}
	}
	if e.fallback {
		secondary := memory.New(memory.Config{
			MaxKeys:         gw.settings.MemoryMaxKeys,
			CleanupInterval: gw.settings.MemoryCleanupInterval,
		})
		st, err = fallback.New(fallback.Config{
			Primary: st, Secondary: secondary, Name: "redis", Logger: gw.logger,
			Probe: primary.Ping,
		})
		if err != nil {
			primary.Close()
			secondary.Close()
			return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
		}
	}
	gw.store, gw.storeName = st, "redis"
	gw.startAttrs = append(gw.startAttrs, "redis_fallback", e.fallback,
		"redis_timeout", e.timeout.String(), "redis_near_cache", e.nearCache)
	opt, err := rueidis.ParseURL(e.url)
	if err != nil {
		return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
	}
	opt.DisableCache = true
	gw.redisDial = func() (rueidis.Client, error) { return rueidis.NewClient(opt) }
	return nil
}
