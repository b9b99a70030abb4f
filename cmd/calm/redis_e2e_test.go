package main

// End-to-end tests of calm serve on a shared Redis: several real processes,
// one real redis-server or Redis Cluster, concurrent requests spread over
// the processes.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calm-limiter/calm/internal/redistest"
)

// e2eAlgorithms lists every algorithm: a 10/minute limit admits exactly 10
// requests of a burst under each but the leaky queue, which admits what it
// can release within the maximum wait.
var e2eAlgorithms = []string{"sliding_window", "fixed_window", "token_bucket", "leaky_bucket", "leaky_queue", "gcra"}

// startCalms starts n calm serve processes with the same environment.
func startCalms(t *testing.T, n int, env map[string]string) []*process {
	t.Helper()
	procs := make([]*process, n)
	for i := range procs {
		own := make(map[string]string, len(env))
		for k, v := range env {
			own[k] = v
		}
		procs[i] = startCalm(t, own)
	}
	return procs
}

// statusCounts sends count requests of method to path, spread round robin
// over procs from workers goroutines, and returns how many got each status.
// Transport errors count under status 0.
func statusCounts(procs []*process, method, path string, count, workers int) map[int]int {
	return statusCountsAs(procs, method, path, "", count, workers)
}

// statusCountsAs is statusCounts with the given User-Agent, which the
// default fingerprint level makes part of the client key: each agent is a
// client with a budget of its own.
func statusCountsAs(procs []*process, method, path, agent string, count, workers int) map[int]int {
	var mu sync.Mutex
	counts := map[int]int{}
	next := make(chan int, count)
	for i := 0; i < count; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				code := sendAs(method, procs[i%len(procs)].url+path, agent)
				mu.Lock()
				counts[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts
}

// send sends one request and returns its status, or 0 on a transport error.
func send(method, url string) int { return sendAs(method, url, "") }

// sendAs is send with a User-Agent, or Go's default when agent is "".
func sendAs(method, url, agent string) int {
	req, err := http.NewRequest(method, url, strings.NewReader("payload"))
	if err != nil {
		return 0
	}
	if agent != "" {
		req.Header.Set("User-Agent", agent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// checkExactly requires want admitted, the rest denied with 420, and
// nothing else.
func checkExactly(t *testing.T, counts map[int]int, total, want int) {
	t.Helper()
	if counts[http.StatusOK] != want {
		t.Errorf("admitted %d of %d requests over 3 servers, want exactly %d (statuses %v)",
			counts[http.StatusOK], total, want, counts)
	}
	if counts[420] != total-want {
		t.Errorf("denied %d with 420, want %d (statuses %v)", counts[420], total-want, counts)
	}
}

func TestRedisSharedLimitEndToEnd(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, alg := range e2eAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			burstOverThree(t, alg, "redis://"+srv.Addr+"/0", srv.Addr)
		})
	}
}

func TestRedisClusterSharedLimitEndToEnd(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	addrs := cl.Addrs()
	url := "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	for _, alg := range e2eAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			burstOverThree(t, alg, url, addrs[0])
		})
	}
}

// burstOverThree starts 3 servers with algorithm alg on the Redis at url
// and sends 60 concurrent uploads (10/minute) spread over them: exactly 10
// must pass, or 1 under the leaky queue. A fixed window restarts at each minute of the Redis clock, so
// a burst that straddles a minute may pass 20; it is run again on fresh
// keys.
func burstOverThree(t *testing.T, alg, url, timeAddr string) {
	for attempt := 1; ; attempt++ {
		procs := startCalms(t, 3, map[string]string{
			"RATELIMIT_REDIS_URL":   url,
			"RATELIMIT_ALGORITHM":   alg,
			"RATELIMIT_ENVIRONMENT": fmt.Sprintf("e2e-%s-%d", alg, attempt),
			// Under the race detector a Redis call can take longer than the
			// 50ms default, and the fallback would count per server.
			"RATELIMIT_REDIS_TIMEOUT": "10s",
			// The queue admits a request only when its turn comes within
			// 1s, and at 10/minute turns are 6s apart: of a burst that
			// takes less than 5s, only the first request passes.
			"RATELIMIT_MAX_WAIT": "1s",
		})
		before := redisMinute(t, timeAddr)
		counts := statusCounts(procs, http.MethodPost, "/api/upload", 60, 12)
		if alg == "fixed_window" && redisMinute(t, timeAddr) != before && attempt < 3 {
			t.Logf("the burst straddled a minute of the Redis clock (statuses %v); again", counts)
			continue
		}
		want := 10
		if alg == "leaky_queue" {
			want = 1
		}
		checkExactly(t, counts, 60, want)
		return
	}
}

// redisMinute returns the current minute of the Redis clock at addr.
func redisMinute(t *testing.T, addr string) int64 {
	t.Helper()
	out, err := redistest.Command(addr, "TIME")
	if err != nil {
		t.Fatalf("TIME on %s: %v", addr, err)
	}
	var secs int64
	if _, err := fmt.Sscan(out, &secs); err != nil {
		t.Fatalf("TIME on %s = %q: %v", addr, out, err)
	}
	return secs / 60
}

// TestRedisOutageEndToEnd kills redis-server while three servers take
// traffic, then starts it again: no request may fail with a 5xx, and the
// servers must share one limit again on their own.
func TestRedisOutageEndToEnd(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	procs := startCalms(t, 3, map[string]string{
		"RATELIMIT_REDIS_URL":   "redis://" + srv.Addr + "/0",
		"RATELIMIT_ENVIRONMENT": "e2e-outage",
		// Long enough for the race detector, short against a dead server:
		// a killed redis-server refuses connections at once.
		"RATELIMIT_REDIS_TIMEOUT": "5s",
	})

	load := newLoad(procs, "/public/products")
	load.waitRequests(100)
	srv.Stop()
	load.waitRequests(400)
	srv.Restart(t)
	for _, p := range procs {
		waitFor(t, func() bool { return strings.Contains(p.logs.String(), "store recovered") },
			"the Redis store to recover", p)
	}
	load.waitRequests(700)
	counts := load.stop()

	for code, n := range counts {
		if code == 0 || code >= 500 {
			t.Errorf("%d requests got status %d during the outage (all statuses %v)", n, code, counts)
		}
	}
	for _, p := range procs {
		if n := strings.Count(p.logs.String(), "using the in-memory fallback"); n != 1 {
			t.Errorf("a server logged the fallback %d times, want once:\n%s", n, p.logs)
		}
	}

	// Back on Redis, the three servers share one 5/minute limit again.
	got := statusCounts(procs, http.MethodGet, "/api/export", 30, 6)
	if got[http.StatusOK] != 5 {
		t.Errorf("after recovery, admitted %d of 30 requests on a shared 5/minute route, want 5 (%v)",
			got[http.StatusOK], got)
	}
}

// TestRedisClusterOutageEndToEnd stops one master of a 3-master Redis
// Cluster while three servers take traffic, then starts it again: no
// request may fail with a 5xx, and the servers must share one limit again
// on their own.
func TestRedisClusterOutageEndToEnd(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	addrs := cl.Addrs()
	procs := startCalms(t, 3, map[string]string{
		"RATELIMIT_REDIS_URL":     "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2],
		"RATELIMIT_ENVIRONMENT":   "e2e-cluster-outage",
		"RATELIMIT_REDIS_TIMEOUT": "5s",
		// Each burst below is a new client (a new User-Agent), so neither
		// the per-network budget nor the endpoint layer may cap the bursts.
		"RATELIMIT_FP_NETWORK_MULTIPLIER":             "1000",
		"RATELIMIT_DEFENSE_ENDPOINT_LIMIT_MULTIPLIER": "1000",
	})

	load := newLoad(procs, "/public/products")
	load.waitRequests(100)
	cl.Servers[1].Stop()
	load.waitRequests(400)
	cl.RestartNode(t, 1)
	for _, p := range procs {
		waitFor(t, func() bool { return strings.Contains(p.logs.String(), "store recovered") },
			"the Redis store to recover", p)
	}
	load.waitRequests(700)
	counts := load.stop()
	for code, n := range counts {
		if code == 0 || code >= 500 {
			t.Errorf("%d requests got status %d during the outage (all statuses %v)", n, code, counts)
		}
	}

	// Back on the Cluster, the three servers share one 5/minute limit again.
	// A server whose probe succeeded before every slot was served again may
	// fall back once more, so this waits until one burst shows the shared
	// limit. Each burst is a new client, because a burst that ran while a
	// server was still on its fallback may have spent the last one's budget.
	deadline := time.Now().Add(30 * time.Second)
	for burst := 0; ; burst++ {
		for _, p := range procs {
			waitFor(t, func() bool { return onRedis(p) }, "the server to use Redis again", p)
		}
		got := statusCountsAs(procs, http.MethodGet, "/api/export", fmt.Sprintf("burst-%d", burst), 30, 6)
		if got[http.StatusOK] == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after recovery, admitted %d of 30 requests on a shared 5/minute route, want 5 (%v)",
				got[http.StatusOK], got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// onRedis reports whether the server's last store transition in its log
// is a recovery: it logged the fallback as often as the recovery.
func onRedis(p *process) bool {
	logs := p.logs.String()
	return strings.Count(logs, "store recovered") == strings.Count(logs, "using the in-memory fallback")
}

// load sends GET requests to path from 6 goroutines, round robin over the
// servers, until stop.
type load struct {
	mu     sync.Mutex
	counts map[int]int
	done   chan struct{}
	wg     sync.WaitGroup
}

func newLoad(procs []*process, path string) *load {
	l := &load{counts: map[int]int{}, done: make(chan struct{})}
	for w := 0; w < 6; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				code := send(http.MethodGet, procs[(w+i)%len(procs)].url+path)
				l.mu.Lock()
				l.counts[code]++
				l.mu.Unlock()
			}
		}(w)
	}
	return l
}

// waitRequests waits, at most 20 seconds, until n requests got a status.
func (l *load) waitRequests(n int) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		l.mu.Lock()
		total := 0
		for _, c := range l.counts {
			total += c
		}
		l.mu.Unlock()
		if total >= n || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the load and returns how many requests got each status.
func (l *load) stop() map[int]int {
	close(l.done)
	l.wg.Wait()
	return l.counts
}

// TestRedisProductionFallbackChoice starts production without Redis: it
// must refuse by default and start when the memory store is chosen.
func TestRedisProductionFallbackChoice(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCalm(t, map[string]string{"RATELIMIT_ENVIRONMENT": "production"},
		"serve", "--addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "RATELIMIT_FALLBACK_TO_MEMORY=true") {
		t.Errorf("production without Redis: exit %d, stderr %q; want exit 1 naming RATELIMIT_FALLBACK_TO_MEMORY=true",
			code, stderr)
	}
	p := startCalm(t, map[string]string{
		"RATELIMIT_ENVIRONMENT":        "production",
		"RATELIMIT_FALLBACK_TO_MEMORY": "true",
		"RATELIMIT_FP_SECRET":          e2eJWTSecret,
		"RATELIMIT_AUTH_JWT_SECRET":    e2eJWTSecret,
	})
	if got := send(http.MethodGet, p.url+"/public/products"); got != http.StatusOK {
		t.Errorf("production on memory by choice: GET /public/products = %d, want 200", got)
	}
}
