package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store"
	redisstore "github.com/calm-limiter/calm/store/redis"
)

// benchQuota is the limit of every implementation, per key and minute:
// high enough that most checks pass, so that each measures its full path.
const benchQuota = 1000

// newCalm returns calm's Redis store deciding one GCRA rule per check, the
// algorithm redis_rate runs.
func newCalm(url string, _ benchConfig) (implementation, string, error) {
	s, err := redisstore.New(redisstore.Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		return implementation{}, "", err
	}
	limit := algorithm.Limit{Quota: benchQuota, Window: time.Minute.Microseconds()}
	check := func(ctx context.Context, key string) (bool, error) {
		checks := [1]store.Check{{Key: "bench:calm:{" + key + "}:60", Algorithm: algorithm.GCRA, Limit: limit}}
		var out [1]algorithm.Decision
		return s.Apply(ctx, checks[:], 1, out[:])
	}
	return implementation{name: "calm", check: check, close: func() { s.Close() }},
		"store/redis on rueidis, one GCRA rule, Redis TIME", nil
}

// newCalmStacked returns calm's Redis store deciding three stacked sliding
// window rules per check, all in one script call.
func newCalmStacked(url string, _ benchConfig) (implementation, string, error) {
	s, err := redisstore.New(redisstore.Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		return implementation{}, "", err
	}
	rules := []struct {
		quota  int64
		window time.Duration
	}{{100, time.Second}, {benchQuota, time.Minute}, {20 * benchQuota, time.Hour}}
	check := func(ctx context.Context, key string) (bool, error) {
		var checks [3]store.Check
		for i, r := range rules {
			checks[i] = store.Check{
				Key:       "bench:stacked:{" + key + "}:" + strconv.Itoa(int(r.window.Seconds())),
				Algorithm: algorithm.SlidingWindow,
				Limit:     algorithm.Limit{Quota: r.quota, Window: r.window.Microseconds()},
			}
		}
		var out [3]algorithm.Decision
		return s.Apply(ctx, checks[:], 1, out[:])
	}
	return implementation{name: "calm_stacked", check: check, close: func() { s.Close() }},
		"3 stacked sliding window rules in one script call", nil
}

// goRedisClient returns a go-redis client with one pooled connection per
// goroutine, the best case for a client that sends one command per
// connection at a time.
func goRedisClient(url string, cfg benchConfig) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.PoolSize = cfg.concurrency
	return goredis.NewClient(opt), nil
}

// newRedisRate returns go-redis/redis_rate: GCRA in one Lua script per
// check, on go-redis.
func newRedisRate(url string, cfg benchConfig) (implementation, string, error) {
	rdb, err := goRedisClient(url, cfg)
	if err != nil {
		return implementation{}, "", err
	}
	lim := redis_rate.NewLimiter(rdb)
	rate := redis_rate.PerMinute(benchQuota)
	check := func(ctx context.Context, key string) (bool, error) {
		res, err := lim.Allow(ctx, "bench:rr:"+key, rate)
		if err != nil {
			return false, err
		}
		return res.Allowed > 0, nil
	}
	return implementation{name: "redis_rate", check: check, close: func() { rdb.Close() }},
		fmt.Sprintf("redis_rate v10 on go-redis v9, pool of %d", cfg.concurrency), nil
}

// newUlule returns ulule/limiter with its Redis store: a fixed window
// counted by a Lua script per check, on go-redis.
func newUlule(url string, cfg benchConfig) (implementation, string, error) {
	rdb, err := goRedisClient(url, cfg)
	if err != nil {
		return implementation{}, "", err
	}
	st, err := ulredis.NewStoreWithOptions(rdb, limiter.StoreOptions{Prefix: "bench:ulule", MaxRetry: 3})
	if err != nil {
		return implementation{}, "", err
	}
	lim := limiter.New(st, limiter.Rate{Period: time.Minute, Limit: benchQuota})
	check := func(ctx context.Context, key string) (bool, error) {
		res, err := lim.Get(ctx, key)
		if err != nil {
			return false, err
		}
		return !res.Reached, nil
	}
	return implementation{name: "ulule", check: check, close: func() { rdb.Close() }},
		fmt.Sprintf("ulule/limiter v3 Redis store on go-redis v9, pool of %d", cfg.concurrency), nil
}

// calmScript returns the source and SHA1 of calm's apply script for GCRA.
func calmScript() (source, sha string) { return redisstore.Script(algorithm.GCRA) }

// ceilingCommand returns the redis-benchmark command line of one GCRA check
// through calm's apply script, with ARGV as that script documents: now
// (empty: Redis TIME), mode, one limit (kind, quota, window, burst, delay,
// max wait, key horizon in milliseconds), then one request of cost 1 with
// one check of limit 1.
func ceilingCommand(sha string) []string {
	window := time.Minute.Microseconds()
	horizon := window/1000 + 2
	return []string{"EVALSHA", sha, "1", "bench:rb:{__rand_int__}:60",
		"", "0", "1",
		strconv.Itoa(int(algorithm.GCRA)), strconv.Itoa(benchQuota), strconv.FormatInt(window, 10),
		"0", "0", "0", strconv.FormatInt(horizon, 10),
		"1", "1", "1", "1"}
}
