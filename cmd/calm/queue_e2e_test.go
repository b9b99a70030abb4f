package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// timedResponse is the outcome of one request of a burst.
type timedResponse struct {
	status  int
	elapsed time.Duration // from the start of the burst to the end of the body
	retry   string        // Retry-After
	reason  string        // limit_info.reason of a denial
}

// getTimed sends GET url and returns its outcome, with the time from start
// to the end of the body.
func getTimed(url string, start time.Time) (timedResponse, error) {
	resp, err := client.Get(url)
	if err != nil {
		return timedResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return timedResponse{}, err
	}
	r := timedResponse{status: resp.StatusCode, elapsed: time.Since(start),
		retry: resp.Header.Get("Retry-After")}
	var denied struct {
		LimitInfo struct {
			Reason string `json:"reason"`
		} `json:"limit_info"`
	}
	if resp.StatusCode != http.StatusOK && json.Unmarshal(body, &denied) == nil {
		r.reason = denied.LimitInfo.Reason
	}
	return r, nil
}

// burst sends n concurrent GET requests to url and returns their outcomes.
func burst(t *testing.T, url string, n int) []timedResponse {
	t.Helper()
	out := make([]timedResponse, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i], errs[i] = getTimed(url, start) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("burst of %d requests: %v", n, err)
	}
	return out
}

func TestLeakyQueueSpreadsBurst(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	// Turns are 500ms apart, so the first 5 requests of a burst are served
	// at 0, 0.5, 1, 1.5 and 2s. The next would wait 2.5s, beyond 2s.
	p := startCalm(t, map[string]string{
		"RATELIMIT_ALGORITHM": "leaky_queue",
		"RATELIMIT_MAX_WAIT":  "2s",
	}, "--upstream", up.URL, "--default-limit", "10/5s", "--drain-delay", "0")

	var served []time.Duration
	for _, r := range burst(t, p.url+"/echo", 7) {
		switch r.status {
		case http.StatusOK:
			served = append(served, r.elapsed)
		case 420:
			if r.reason != "queue_full" || r.retry == "" {
				t.Errorf("denied request: reason %q, Retry-After %q; want queue_full and a "+
					"Retry-After", r.reason, r.retry)
			}
			if r.elapsed > time.Second {
				t.Errorf("denied request answered after %v, want at once (under 1s)", r.elapsed)
			}
		default:
			t.Errorf("status %d, want 200 or 420", r.status)
		}
	}
	if len(served) != 5 {
		t.Fatalf("served %d of 7 requests, want 5 (served at %v)", len(served), served)
	}
	slices.Sort(served)
	for k, at := range served {
		// The burst's first request arrives after its start, so the k-th
		// release is at least k turns after the start.
		if turn := time.Duration(k) * 500 * time.Millisecond; at < turn {
			t.Errorf("request %d served after %v, want at least %v (one turn each 500ms)",
				k+1, at, turn)
		}
	}
	if last := served[len(served)-1]; last > 5*time.Second {
		t.Errorf("last request served after %v, want about 2s", last)
	}
}

// waitHeld polls /metrics until calm_held_requests reaches want, for
// at most 5s.
func waitHeld(t *testing.T, p *process, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(metricsText(t, p), "calm_held_requests "+want+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("calm_held_requests did not reach %s within 5s:\n%s", want, metricsText(t, p))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLeakyQueueShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   string // the second request waits one turn
		timeout string // --shutdown-timeout
		status  int    // of the held request
	}{
		{"turn before the deadline", "2/2s", "5s", http.StatusOK},
		{"turn after the deadline", "2/6s", "1s", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, nil)
			p := startCalm(t, map[string]string{
				"RATELIMIT_ALGORITHM": "leaky_queue",
				"RATELIMIT_MAX_WAIT":  "5s",
			}, "--upstream", up.URL, "--default-limit", tt.limit, "--drain-delay", "0",
				"--shutdown-timeout", tt.timeout)

			if resp, _ := do(t, http.MethodGet, p.url+"/echo", nil, nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("first request: status %d, want 200", resp.StatusCode)
			}
			held := make(chan timedResponse, 1)
			heldErr := make(chan error, 1)
			go func() {
				r, err := getTimed(p.url+"/echo", time.Now())
				held <- r
				heldErr <- err
			}()
			waitHeld(t, p, "1")
			signaled := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("sending SIGTERM: %v", err)
			}

			r := <-held
			if err := <-heldErr; err != nil {
				t.Fatalf("held request: %v, want status %d", err, tt.status)
			}
			if r.status != tt.status {
				t.Errorf("held request: status %d, want %d", r.status, tt.status)
			}
			if tt.status == http.StatusServiceUnavailable && r.retry == "" {
				t.Errorf("held request answered 503 without Retry-After")
			}
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				t.Fatalf("calm did not exit within 10s of SIGTERM\nlogs:\n%s", p.logs)
			}
			if p.err != nil {
				t.Errorf("calm exited with %v, want status 0\nlogs:\n%s", p.err, p.logs)
			}
			if took := time.Since(signaled); tt.status != http.StatusOK && took > 3*time.Second {
				t.Errorf("calm took %v to stop with --shutdown-timeout %s", took, tt.timeout)
			}
		})
	}
}

// TestLeakyQueueRouteSettings checks a route's burst, delay and max_wait
// from a config file: at 10/5s turns are 500ms apart, the first 2
// requests beyond the rate pass at once, and the next waits 500ms, then
// 1s. The sixth would wait 1.5s, beyond the route's 1s.
func TestLeakyQueueRouteSettings(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	path := writeConfig(t, "routes:\n  - pattern: GET /echo\n    limits: [10/5s]\n"+
		"    algorithm: leaky_queue\n    burst: 8\n    delay: 2\n    max_wait: 1s\n")
	p := startCalm(t, nil, "--upstream", up.URL, "--config", path, "--drain-delay", "0")

	var served []time.Duration
	denied := 0
	for _, r := range burst(t, p.url+"/echo", 6) {
		switch {
		case r.status == http.StatusOK:
			served = append(served, r.elapsed)
		case r.status == 420 && r.reason == "queue_full":
			denied++
		default:
			t.Errorf("status %d reason %q, want 200, or 420 with queue_full", r.status, r.reason)
		}
	}
	if len(served) != 5 || denied != 1 {
		t.Fatalf("served %d and denied %d of 6, want 5 and 1 (served at %v)",
			len(served), denied, served)
	}
	slices.Sort(served)
	if served[2] >= 500*time.Millisecond {
		t.Errorf("third request served after %v, want at once: delay 2 lets it pass", served[2])
	}
	for k, turn := range []time.Duration{3: 500 * time.Millisecond, 4: time.Second} {
		if served[k] < turn {
			t.Errorf("request %d served after %v, want at least %v", k+1, served[k], turn)
		}
	}
}

// TestLeakyQueueConfigErrors checks that check-config and serve stop on a
// bad queue setting with one line naming the setting, the value and the
// fix.
func TestLeakyQueueConfigErrors(t *testing.T) {
	t.Parallel()
	const route = "routes:\n  - pattern: GET /x\n    limits: [10/minute]\n"
	tests := []struct {
		name string
		text string
		env  map[string]string
		want string // the message after "calm COMMAND: FILE: "
	}{
		{"delay on default algorithm", route + "    delay: 2\n", nil,
			"routes[0].delay: delay 2 has no effect with the default algorithm sliding_window " +
				"(RATELIMIT_ALGORITHM), which does not queue requests: remove delay, or set " +
				"the route's algorithm to leaky_queue"},
		{"max wait on algorithm from env", route + "    max_wait: 2s\n",
			map[string]string{"RATELIMIT_ALGORITHM": "gcra"},
			`routes[0].max_wait: max_wait "2s" has no effect with the default algorithm gcra ` +
				"(RATELIMIT_ALGORITHM), which does not queue requests: remove max_wait, or set " +
				"the route's algorithm to leaky_queue"},
		{"delay above capacity", route + "    algorithm: leaky_queue\n    delay: 11\n", nil,
			"routes[0].delay: delay 11 exceeds the capacity 10 of rule 10/minute in " +
				"routes[0].limits: lower delay to at most 10 (10 lets every request within the " +
				"capacity pass without waiting, as nginx's nodelay), or raise burst"},
		{"negative delay", route + "    algorithm: leaky_queue\n    delay: -1\n", nil,
			"routes[0].delay: delay -1 is negative: set how many requests beyond the rate " +
				"pass without waiting, or remove delay to hold every one of them"},
		{"negative max wait", route + "    algorithm: leaky_queue\n    max_wait: -1s\n", nil,
			`routes[0].max_wait: max wait "-1s" is outside 1ms to 1h: set a wait in that ` +
				"range, or remove it to use the default maximum wait"},
		{"max wait not a duration", route + "    algorithm: leaky_queue\n    max_wait: soon\n", nil,
			`routes[0].max_wait: max wait "soon" is not a duration: write one such as 2s or ` +
				"500ms, or a whole number of seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tt.text)
			want := path + ": " + tt.want
			code, _, stderr := runWithEnv(t, tt.env, "check-config", path)
			if code != 1 || stderr != "calm check-config: "+want+"\n" {
				t.Errorf("check-config = %d, stderr:\n%s\nwant 1 and one line:\ncalm check-config: %s",
					code, stderr, want)
			}
			code, stdout, stderr := runCalm(t, tt.env, "serve", "--addr", "127.0.0.1:0", "--config", path)
			if code != 1 || stderr != "calm serve: "+want+"\n" || stdout != "" {
				t.Errorf("serve = %d, stderr:\n%s\nwant 1 and one line:\ncalm serve: %s", code, stderr, want)
			}
		})
	}
}
