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
