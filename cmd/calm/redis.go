package main

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/store/fallback"
	"github.com/calm-limiter/calm/store/memory"
	redisstore "github.com/calm-limiter/calm/store/redis"
)

func init() { addExtension(newRedisExtension) }

// redisExtension opens the Redis store when RATELIMIT_REDIS_URL is set,
// with the memory store taking over while Redis is unreachable.
type redisExtension struct {
	url string
}

func newRedisExtension() *extension { return (&redisExtension{}).extension() }

func (e *redisExtension) extension() *extension {
	return &extension{
		name: "redis",
		vars: func() []config.Var {
			return []config.Var{{
				Env: "RATELIMIT_REDIS_URL", Key: "redis_url", Secret: true,
				Usage: "Redis URL, such as redis://127.0.0.1:6379/0; empty keeps the state in memory.",
				Parse: config.Text(&e.url, 2048),
			}}
		},
		setup: e.setup,
	}
}

func (e *redisExtension) setup(ctx context.Context, gw *gateway) error {
	if e.url == "" {
		return nil
	}
	primary, err := redisstore.New(redisstore.Config{URL: e.url})
	if err != nil {
		return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
	}
	secondary := memory.New(memory.Config{
		MaxKeys:         gw.settings.MemoryMaxKeys,
		CleanupInterval: gw.settings.MemoryCleanupInterval,
	})
	st, err := fallback.New(fallback.Config{
		Primary: primary, Secondary: secondary, Name: "redis", Logger: gw.logger,
	})
	if err != nil {
		primary.Close()
		secondary.Close()
		return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
	}
	gw.store, gw.storeName = st, "redis"
	opt, err := rueidis.ParseURL(e.url)
	if err != nil {
		return fmt.Errorf("RATELIMIT_REDIS_URL: %w", err)
	}
	opt.DisableCache = true
	gw.redisDial = func() (rueidis.Client, error) { return rueidis.NewClient(opt) }
	return nil
}
