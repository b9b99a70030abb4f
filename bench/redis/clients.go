package main

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// clientScript stands for a rate-limit script: read a hash, count in the
// current window, write it back with an expiry.
const clientScript = `
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local v = redis.call('HMGET', KEYS[1], 'a', 'b')
local w = tonumber(ARGV[2])
local start = now - now % w
local n = 0
if tonumber(v[1]) == start then n = tonumber(v[2]) end
if n + 1 > tonumber(ARGV[1]) then return {0, n} end
redis.call('HSET', KEYS[1], 'a', string.format('%.0f', start), 'b', n + 1)
redis.call('PEXPIRE', KEYS[1], math.floor(w / 1000))
return {1, n + 1}
`

// compareClients measures the same EVALSHA through go-redis (a pool of one
// connection per goroutine) and rueidis (auto-pipelining) at several
// concurrencies: the measurement behind the choice of rueidis.
func compareClients(url string, cfg benchConfig) error {
	fmt.Println("client comparison: EVALSHA of one small script per call")
	for _, conc := range []int{1, 16, 64, 256} {
		c := cfg
		c.concurrency = conc

		opt, err := goredis.ParseURL(url)
		if err != nil {
			return err
		}
		opt.PoolSize = conc
		gr := goredis.NewClient(opt)
		script := goredis.NewScript(clientScript)
		if err := script.Load(context.Background(), gr).Err(); err != nil {
			return err
		}
		goRedis := implementation{name: "go-redis", close: func() { gr.Close() },
			check: func(ctx context.Context, key string) (bool, error) {
				return true, script.EvalSha(ctx, gr, []string{"cmp:gr:" + key}, 1000000, 60000000).Err()
			}}

		ropt, err := rueidis.ParseURL(url)
		if err != nil {
			return err
		}
		ropt.DisableCache = true
		rc, err := rueidis.NewClient(ropt)
		if err != nil {
			return err
		}
		lua := rueidis.NewLuaScript(clientScript)
		rueidisImpl := implementation{name: "rueidis", close: rc.Close,
			check: func(ctx context.Context, key string) (bool, error) {
				return true, lua.Exec(ctx, rc, []string{"cmp:ru:" + key}, []string{"1000000", "60000000"}).Error()
			}}

		for _, impl := range []implementation{goRedis, rueidisImpl} {
			r, err := measure(impl, c)
			impl.close()
			if err != nil {
				return fmt.Errorf("%s: %w", impl.name, err)
			}
			fmt.Printf("%-9s goroutines=%-4d %8.0f calls/s  p50 %5dµs  p99 %6dµs\n",
				impl.name, conc, r.perSecond, r.p50.Microseconds(), r.p99.Microseconds())
		}
	}
	return nil
}
