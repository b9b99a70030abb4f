// Command redis measures calm's Redis store against go-redis/redis_rate and
// ulule/limiter's Redis store on one redis-server that it starts itself on
// a free loopback port, with the same number of goroutines, keys and
// duration for each. It prints checks per second and latency percentiles,
// the ratio of calm to each peer, and the throughput of calm's apply script
// when redis-benchmark sends it (EVALSHA, pipelined), the most one Redis
// core can do with that script. The last lines read
//
//	redis <impl> checks_per_sec=<n> p50_us=<n> p99_us=<n>
//
// Run it with `make bench-redis`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calm-limiter/calm/internal/redistest"
)

func main() {
	var cfg benchConfig
	flag.DurationVar(&cfg.duration, "duration", 4*time.Second, "measured time per implementation")
	flag.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each measurement")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "goroutines sending checks")
	flag.IntVar(&cfg.keys, "keys", 10000, "distinct client keys")
	flag.IntVar(&cfg.ceilingRequests, "ceiling-requests", 400000, "requests redis-benchmark sends")
	flag.StringVar(&cfg.only, "only", "", "comma-separated implementations to run (default all)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured runs to this file")
	flag.BoolVar(&cfg.clients, "clients", false, "compare the go-redis and rueidis clients instead")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench-redis:", err)
		os.Exit(1)
	}
}

type benchConfig struct {
	duration, warmup time.Duration
	concurrency      int
	keys             int
	ceilingRequests  int
	only             string
	cpuProfile       string
	clients          bool
}

// implementation is one rate limiter under test. check decides one request
// for key; close releases its client.
type implementation struct {
	name  string
	check func(ctx context.Context, key string) (bool, error)
	close func()
}

// result is the measurement of one implementation.
type result struct {
	name   string
	checks int64
	// warmupChecks counts the checks of the warm-up, which the Redis CPU
	// figure includes.
	warmupChecks int64
	// redisCPU is the CPU time redis-server spent per check, in µs.
	redisCPU float64
	// callsPerCheck is the number of commands Redis ran per check, and
	// usecPerCheck the time Redis measured running them, in µs.
	callsPerCheck, usecPerCheck float64
	denied                      int64
	perSecond                   float64
	p50, p99                    time.Duration
	description                 string
}

func run(cfg benchConfig) error {
	srv, err := startRedis()
	if err != nil {
		return err
	}
	defer srv.Stop()
	url := "redis://" + srv.Addr + "/0"
	version, _ := exec.Command("redis-server", "--version").Output()
	fmt.Printf("%s", version)
	fmt.Printf("redis-server on %s, GOMAXPROCS=%d, %d goroutines, %d keys, %v per implementation\n\n",
		srv.Addr, runtime.GOMAXPROCS(0), cfg.concurrency, cfg.keys, cfg.duration)

	if cfg.clients {
		return compareClients(url, cfg)
	}
	builders := []func(url string, cfg benchConfig) (implementation, string, error){
		newCalm, newCalmStacked, newRedisRate, newUlule,
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var results []result
	for _, build := range builders {
		if _, err := redistest.Command(srv.Addr, "FLUSHALL"); err != nil {
			return fmt.Errorf("FLUSHALL: %w", err)
		}
		impl, desc, err := build(url, cfg)
		if err != nil {
			return err
		}
		if cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), impl.name) {
			impl.close()
			continue
		}
		cpuBefore, err := redisCPU(srv.Addr)
		if err != nil {
			return err
		}
		if _, err := redistest.Command(srv.Addr, "CONFIG", "RESETSTAT"); err != nil {
			return fmt.Errorf("CONFIG RESETSTAT: %w", err)
		}
		r, err := measure(impl, cfg)
		impl.close()
		if err != nil {
			return fmt.Errorf("%s: %w", impl.name, err)
		}
		cpuAfter, err := redisCPU(srv.Addr)
		if err != nil {
			return err
		}
		r.redisCPU = (cpuAfter - cpuBefore) / float64(r.checks+r.warmupChecks) * 1e6
		calls, usec, err := redisCommandStats(srv.Addr)
		if err != nil {
			return err
		}
		r.callsPerCheck = float64(calls) / float64(r.checks+r.warmupChecks)
		r.usecPerCheck = float64(usec) / float64(r.checks+r.warmupChecks)
		r.description = desc
		results = append(results, r)
		fmt.Printf("%-13s %9.0f checks/s  p50 %5dµs  p99 %6dµs  redis CPU %4.1fµs/check "+
			"(%.2f commands and %.1fµs in commands per check)  denied %d of %d  (%s)\n",
			r.name, r.perSecond, r.p50.Microseconds(), r.p99.Microseconds(), r.redisCPU,
			r.callsPerCheck, r.usecPerCheck, r.denied, r.checks, desc)
	}

	if len(results) == 0 || results[0].name != "calm" {
		return nil
	}
	calm := results[0]
	fmt.Println()
	for _, r := range results[1:] {
		fmt.Printf("ratio %s/%s = %.2fx checks/s\n", calm.name, r.name, calm.perSecond/r.perSecond)
	}

	ceiling, err := evalshaCeiling(srv, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("\nredis-benchmark EVALSHA of calm's apply script (1 check, %d connections, "+
		"pipeline 16): %.0f checks/s; calm reaches %.0f%% of it\n\n",
		cfg.concurrency, ceiling, 100*calm.perSecond/ceiling)

	for _, r := range results {
		if r.name == "calm_stacked" {
			continue
		}
		fmt.Printf("redis %s checks_per_sec=%.0f p50_us=%d p99_us=%d\n",
			r.name, r.perSecond, r.p50.Microseconds(), r.p99.Microseconds())
	}
	return nil
}

// startRedis runs a redis-server without persistence on a free loopback
// port.
func startRedis() (*redistest.Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (run `make deps`): %w", err)
	}
	dir, err := os.MkdirTemp("", "calm-bench-redis-")
	if err != nil {
		return nil, err
	}
	port, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	return redistest.StartOnPort(bin, dir, port)
}

// measure runs impl from cfg.concurrency goroutines, first for the warm-up
// and then for the measured duration.
func measure(impl implementation, cfg benchConfig) (result, error) {
	warm, err := load(impl, cfg, cfg.warmup, nil)
	if err != nil {
		return result{}, err
	}
	lat := make([][]int32, cfg.concurrency)
	r, err := load(impl, cfg, cfg.duration, lat)
	if err != nil {
		return result{}, err
	}
	r.warmupChecks = warm.checks
	var all []int32
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r.name = impl.name
	r.perSecond = float64(r.checks) / cfg.duration.Seconds()
	r.p50 = time.Duration(all[len(all)/2]) * time.Microsecond
	r.p99 = time.Duration(all[len(all)*99/100]) * time.Microsecond
	return r, nil
}

// load sends checks for d and, when lat is not nil, records each latency
// in microseconds per goroutine.
func load(impl implementation, cfg benchConfig, d time.Duration, lat [][]int32) (result, error) {
	var checks, denied atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := time.Now().Add(d)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < cfg.concurrency; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var mine []int32
			if lat != nil {
				mine = make([]int32, 0, 1<<16)
			}
			for i := 0; time.Now().Before(stop); i++ {
				key := strconv.Itoa((g*7919 + i*104729) % cfg.keys)
				start := time.Now()
				ok, err := impl.check(ctx, key)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if lat != nil {
					mine = append(mine, int32(time.Since(start).Microseconds()))
				}
				checks.Add(1)
				if !ok {
					denied.Add(1)
				}
			}
			if lat != nil {
				lat[g] = mine
			}
		}(g)
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return result{}, *p
	}
	return result{checks: checks.Load(), denied: denied.Load()}, nil
}

var cpuField = regexp.MustCompile(`used_cpu_(?:sys|user):([0-9.]+)`)

// redisCPU returns the CPU seconds redis-server has used, user and system.
func redisCPU(addr string) (float64, error) {
	out, err := redistest.Command(addr, "INFO", "cpu")
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var total float64
	for _, m := range cpuField.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

var commandStat = regexp.MustCompile(`cmdstat_[a-z|]+:calls=([0-9]+),usec=([0-9]+)`)

// redisCommandStats returns the commands Redis ran since CONFIG RESETSTAT
// and the microseconds it spent in them, from INFO commandstats.
func redisCommandStats(addr string) (calls, usec int64, err error) {
	out, err := redistest.Command(addr, "INFO", "commandstats")
	if err != nil {
		return 0, 0, fmt.Errorf("INFO commandstats: %w", err)
	}
	for _, m := range commandStat.FindAllStringSubmatch(out, -1) {
		if strings.HasPrefix(m[0], "cmdstat_info") || strings.HasPrefix(m[0], "cmdstat_config") {
			continue
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		u, _ := strconv.ParseInt(m[2], 10, 64)
		calls += n
		usec += u
	}
	return calls, usec, nil
}

var perSecond = regexp.MustCompile(`([0-9.]+) requests per second`)

// evalshaCeiling runs redis-benchmark with EVALSHA of calm's apply script,
// one GCRA check per call on random keys, and returns its requests per
// second.
func evalshaCeiling(srv *redistest.Server, cfg benchConfig) (float64, error) {
	source, sha := calmScript()
	if out, err := redistest.Command(srv.Addr, "SCRIPT", "LOAD", source); err != nil {
		return 0, fmt.Errorf("SCRIPT LOAD: %v: %s", err, out)
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port),
		"-c", strconv.Itoa(cfg.concurrency), "-n", strconv.Itoa(cfg.ceilingRequests),
		"-P", "16", "-r", strconv.Itoa(cfg.keys), "-q"}
	args = append(args, ceilingCommand(sha)...)
	out, err := exec.Command("redis-benchmark", args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %v: %s", err, out)
	}
	// redis-benchmark rewrites its progress line with carriage returns.
	text := string(out)
	if i := strings.LastIndexByte(text, '\r'); i >= 0 {
		text = text[i+1:]
	}
	m := perSecond.FindStringSubmatch(text)
	if m == nil {
		return 0, errors.New("redis-benchmark printed no requests per second: " + string(out))
	}
	return strconv.ParseFloat(m[1], 64)
}
