package main

// Process-level test of the shared circuit breaker: several calm serve
// processes on one real redis-server. Each server logs its transitions
// with a nanosecond timestamp, so propagation is read from the logs and
// confirmed with requests.

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calm-limiter/calm/internal/redistest"
)

var circuitRounds = flag.Int("circuit-rounds", 1,
	"trips and manual opens that TestCircuitAcrossProcesses measures; make bench-circuit raises it")

const (
	circuitInstances = 5
	// circuitDeadline is the longest a server may take to follow a change.
	circuitDeadline = 500 * time.Millisecond
	circuitState    = "development:ratelimit:v1:circuit:state"
)

// circuitFleet is the servers and Redis of one test.
type circuitFleet struct {
	t       *testing.T
	redis   *redistest.Server
	env     map[string]string
	config  string
	servers []*process
}

func startCircuitFleet(t *testing.T) *circuitFleet {
	srv := redistest.Start(t)
	config := filepath.Join(t.TempDir(), "calm.yaml")
	if err := os.WriteFile(config, []byte("default_limits: [1000000/minute]\n"+
		"routes:\n  - pattern: GET /api/test\n    limits: [1000000/minute]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &circuitFleet{t: t, redis: srv, config: config, env: map[string]string{
		"RATELIMIT_REDIS_URL":                     "redis://" + srv.Addr + "/0",
		"RATELIMIT_DEFENSE_MODE":                  "lockdown",
		"RATELIMIT_DEFENSE_GLOBAL_LIMIT":          "off",
		"RATELIMIT_DEFENSE_CIRCUIT_THRESHOLD":     "300",
		"RATELIMIT_DEFENSE_CIRCUIT_WINDOW":        "10s",
		"RATELIMIT_DEFENSE_CIRCUIT_RECOVERY_TIME": "10m",
	}}
	f.servers = make([]*process, circuitInstances)
	var wg sync.WaitGroup
	for i := range f.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.servers[i] = f.start()
		}()
	}
	wg.Wait()
	return f
}

func (f *circuitFleet) start() *process {
	env := map[string]string{}
	for k, v := range f.env {
		env[k] = v
	}
	return startCalm(f.t, env, "--config", f.config)
}

func (f *circuitFleet) redisCommand(args ...string) string {
	f.t.Helper()
	out, err := redistest.Command(f.redis.Addr, args...)
	if err != nil {
		f.t.Fatalf("redis-cli %v: %v", args, err)
	}
	return strings.TrimSpace(out)
}

// transitions returns the times server p logged msg ("circuit open" or
// "circuit closed").
func transitions(p *process, msg string) []time.Time {
	var out []time.Time
	for _, rec := range p.logLines(msg) {
		s, _ := rec["time"].(string)
		if at, err := time.Parse(time.RFC3339Nano, s); err == nil {
			out = append(out, at)
		}
	}
	return out
}

// awaitTransition waits until every server logged msg more than before[i]
// times and returns each server's delay after since.
func (f *circuitFleet) awaitTransition(msg string, before []int, since time.Time) []time.Duration {
	f.t.Helper()
	delays := make([]time.Duration, len(f.servers))
	deadline := time.Now().Add(5 * time.Second)
	for i, p := range f.servers {
		for {
			if got := transitions(p, msg); len(got) > before[i] {
				delays[i] = got[before[i]].Sub(since)
				break
			}
			if time.Now().After(deadline) {
				f.t.Fatalf("server %d never logged %q; logs:\n%s", i, msg, p.logs)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return delays
}

func (f *circuitFleet) counts(msg string) []int {
	n := make([]int, len(f.servers))
	for i, p := range f.servers {
		n[i] = len(transitions(p, msg))
	}
	return n
}

// expectStatus checks that every server answers GET /api/test with code,
// and with the global scope when denied.
func (f *circuitFleet) expectStatus(code int) {
	f.t.Helper()
	for i, p := range f.servers {
		resp, body := do(f.t, "GET", p.url+"/api/test", nil, nil)
		if resp.StatusCode != code {
			f.t.Fatalf("server %d: status %d, want %d; body %s", i, resp.StatusCode, code, body)
		}
		if code == 420 && resp.Header.Get("X-RateLimit-Scope") != "global" {
			f.t.Errorf("server %d: X-RateLimit-Scope %q, want global", i, resp.Header.Get("X-RateLimit-Scope"))
		}
	}
}

// trip sends requests spread over every server until Redis records a trip,
// and returns the trip time from Redis.
func (f *circuitFleet) trip() time.Time {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 * circuitInstances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := f.servers[w%len(f.servers)].url + "/api/test"
			for ctx.Err() == nil && sent.Add(1) <= 5000 {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	for f.redisCommand("HGET", circuitState, "is_open") != "1" {
		if ctx.Err() != nil {
			f.t.Fatalf("no trip after %d requests", sent.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	ms, err := strconv.ParseInt(f.redisCommand("HGET", circuitState, "trip_time"), 10, 64)
	if err != nil {
		f.t.Fatalf("trip_time: %v", err)
	}
	return time.UnixMilli(ms)
}

// hset sets is_open like an operator and returns when it did.
func (f *circuitFleet) hset(value string) time.Time {
	at := time.Now()
	f.redisCommand("HSET", circuitState, "is_open", value)
	return at
}

func checkDelays(t *testing.T, what string, delays []time.Duration) {
	t.Helper()
	for i, d := range delays {
		if d > circuitDeadline {
			t.Errorf("%s: server %d followed after %v, want within %v", what, i, d, circuitDeadline)
		}
	}
}

func TestCircuitAcrossProcesses(t *testing.T) {
	f := startCircuitFleet(t)
	var tripDelays, manualDelays []time.Duration
	for round := range *circuitRounds {
		// Load spread over the servers trips the breaker; every server
		// follows.
		opens := f.counts("circuit open")
		tripAt := f.trip()
		delays := f.awaitTransition("circuit open", opens, tripAt)
		checkDelays(t, fmt.Sprintf("round %d: trip", round), delays)
		tripDelays = append(tripDelays, delays...)
		f.expectStatus(420)

		// An operator's HSET closes it and opens it again.
		closes := f.counts("circuit closed")
		delays = f.awaitTransition("circuit closed", closes, f.hset("0"))
		checkDelays(t, fmt.Sprintf("round %d: HSET is_open 0", round), delays)
		manualDelays = append(manualDelays, delays...)
		f.expectStatus(200)
		// Requests of the trip still in flight may count after the close,
		// but far from the 300 that tripped it.
		if got, _ := strconv.Atoi(f.redisCommand("HGET", circuitState, "win_cur")); got >= 100 {
			t.Errorf("win_cur after a manual close = %d, want it cleared", got)
		}

		opens = f.counts("circuit open")
		delays = f.awaitTransition("circuit open", opens, f.hset("1"))
		checkDelays(t, fmt.Sprintf("round %d: HSET is_open 1", round), delays)
		manualDelays = append(manualDelays, delays...)
		f.expectStatus(420)
		closes = f.counts("circuit closed")
		f.awaitTransition("circuit closed", closes, f.hset("0"))
	}
	reportPropagation(t, tripDelays, manualDelays)

	// A server restarted while the circuit is open starts open.
	opens := f.counts("circuit open")
	f.awaitTransition("circuit open", opens, f.hset("1"))
	f.servers[0].stop()
	f.servers[0] = f.start()
	f.expectStatus(420)

	// Redis stops and restarts mid-run: no 5xx, and the servers converge on
	// the shared state afterwards.
	f.redis.Stop()
	for range 20 {
		for i, p := range f.servers {
			resp, body := do(t, "GET", p.url+"/api/test", nil, nil)
			if resp.StatusCode >= 500 {
				t.Fatalf("server %d during the Redis outage: status %d, body %s", i, resp.StatusCode, body)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The restarted Redis holds no state: closed, which every server adopts.
	closes := f.counts("circuit closed")
	f.redis.Restart(t)
	f.awaitTransition("circuit closed", closes, time.Now())
	f.expectStatus(200)
	opens = f.counts("circuit open")
	delays := f.awaitTransition("circuit open", opens, f.hset("1"))
	checkDelays(t, "HSET is_open 1 after the Redis restart", delays)
	f.expectStatus(420)
}

// reportPropagation logs the figures and prints the line that make
// bench-circuit ends with.
func reportPropagation(t *testing.T, trip, manual []time.Duration) {
	all := slices.Concat(trip, manual)
	slices.Sort(trip)
	slices.Sort(manual)
	slices.Sort(all)
	t.Logf("trip propagation: %d samples, p50 %v, p99 %v, max %v",
		len(trip), percentile(trip, 50), percentile(trip, 99), trip[len(trip)-1])
	t.Logf("manual HSET propagation: %d samples, p50 %v, p99 %v, max %v",
		len(manual), percentile(manual, 50), percentile(manual, 99), manual[len(manual)-1])
	fmt.Printf("circuit trip_p50_ms=%d trip_p99_ms=%d manual_p50_ms=%d manual_p99_ms=%d samples=%d\n",
		percentile(trip, 50).Milliseconds(), percentile(trip, 99).Milliseconds(),
		percentile(manual, 50).Milliseconds(), percentile(manual, 99).Milliseconds(), len(all))
	fmt.Printf("circuit propagation_p50_ms=%d propagation_p99_ms=%d instances=%d\n",
		percentile(all, 50).Milliseconds(), percentile(all, 99).Milliseconds(), circuitInstances)
}

// percentile returns the p-th percentile of sorted by the nearest-rank
// method.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank-1, 0)]
}

func TestCircuitCommand(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := map[string]string{
		"RATELIMIT_REDIS_URL":   "redis://" + srv.Addr + "/0",
		"RATELIMIT_ENVIRONMENT": "staging",
	}
	key := "staging:ratelimit:v1:circuit:state"
	steps := []struct {
		args   []string
		state  string
		isOpen string
	}{
		{args: []string{"circuit", "status"}, state: "closed (no server has written the state yet)"},
		{args: []string{"circuit", "open"}, state: "open", isOpen: "1"},
		{args: []string{"circuit", "status"}, state: "open", isOpen: "1"},
		{args: []string{"circuit", "close"}, state: "closed", isOpen: "0"},
	}
	for _, step := range steps {
		code, stdout, stderr := runCalm(t, env, step.args...)
		if code != 0 {
			t.Fatalf("calm %v: exit %d, stderr %s", step.args, code, stderr)
		}
		if !strings.Contains(stdout, "key            "+key+"\n") {
			t.Errorf("calm %v: output lacks key %s:\n%s", step.args, key, stdout)
		}
		if !strings.Contains(stdout, "state          "+step.state+"\n") {
			t.Errorf("calm %v: output lacks state %q:\n%s", step.args, step.state, stdout)
		}
		got, err := redistest.Command(srv.Addr, "HGET", key, "is_open")
		if err != nil || strings.TrimSpace(got) != step.isOpen {
			t.Errorf("calm %v: is_open = %q (%v), want %q", step.args, got, err, step.isOpen)
		}
	}

	code, _, stderr := runCalm(t, map[string]string{}, "circuit", "open")
	if code != 1 || !strings.Contains(stderr, "RATELIMIT_REDIS_URL") {
		t.Errorf("calm circuit open without Redis: exit %d, stderr %q; want 1 naming RATELIMIT_REDIS_URL",
			code, stderr)
	}
	code, _, stderr = runCalm(t, env, "circuit", "toggle")
	if code != 2 || !strings.Contains(stderr, "open, close or status") {
		t.Errorf("calm circuit toggle: exit %d, stderr %q; want 2 with the actions", code, stderr)
	}
}
