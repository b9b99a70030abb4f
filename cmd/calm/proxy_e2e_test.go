package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawRequest writes text to a new connection to p and returns the
// response, or nil when the connection closes without one.
func rawRequest(t *testing.T, p *process, text string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing calm: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// metricsText returns the body of GET /metrics.
func metricsText(t *testing.T, p *process) string {
	t.Helper()
	_, body := do(t, "GET", p.url+"/metrics", nil, nil)
	return string(body)
}

func TestProxyClientBodyErrors(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	p := startCalm(t, map[string]string{"RATELIMIT_LOG_LEVEL": "debug"}, "--upstream", up.URL)

	// A chunk size that is not hexadecimal: the client's error, so 400.
	resp := rawRequest(t, p, "POST /echo HTTP/1.1\r\nHost: calm.test\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
	switch {
	case resp == nil:
		t.Errorf("POST /echo with a malformed chunk got no response, want 400")
	case resp.StatusCode != http.StatusBadRequest:
		t.Errorf("POST /echo with a malformed chunk = %d, want 400", resp.StatusCode)
	}

	// A client that sends 10 of 1000 bytes and then closes the connection.
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing calm: %v", err)
	}
	_, err = io.WriteString(conn, "POST /echo HTTP/1.1\r\nHost: calm.test\r\n"+
		"Content-Length: 1000\r\n\r\n0123456789")
	conn.Close()
	if err != nil {
		t.Fatalf("writing the partial upload: %v", err)
	}

	const line = "reading the client's request body failed"
	waitFor(t, func() bool { return len(p.logLines(line)) == 2 }, "two client body lines", p)
	gone := map[bool]int{}
	for _, rec := range p.logLines(line) {
		if rec["level"] != "DEBUG" {
			t.Errorf("client body line at level %v, want DEBUG: %v", rec["level"], rec)
		}
		clientGone, _ := rec["client_gone"].(bool)
		gone[clientGone]++
	}
	if gone[false] != 1 || gone[true] != 1 {
		t.Errorf("client body lines by client_gone = %v, want one malformed chunk and one abort",
			gone)
	}
	if n := len(p.logLines("upstream request failed")); n != 0 {
		t.Errorf("%d \"upstream request failed\" lines for client errors, want none\nlogs:\n%s",
			n, p.logs)
	}
	metrics := metricsText(t, p)
	if strings.Contains(metrics, `calm_responses_total{code="502"}`) {
		t.Errorf("metrics count a 502 for client errors:\n%s", metrics)
	}
	if !strings.Contains(metrics, `calm_responses_total{code="400"} 1`+"\n") {
		t.Errorf("metrics lack one 400 for the malformed chunk:\n%s", metrics)
	}
}

// pathUpstream starts an upstream that records the escaped path of every
// request it receives.
func pathUpstream(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var paths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		mu.Unlock()
		io.WriteString(w, "upstream answer\n")
	}))
	t.Cleanup(up.Close)
	return up, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(paths)
	}
}

// writeConfig writes text to a config file in a temporary directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "calm.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const variantPolicy = "routes:\n  - pattern: GET /api/test\n    limits: [2/minute]\n"

func TestProxyPathVariantsDefault(t *testing.T) {
	t.Parallel()
	up, seen := pathUpstream(t)
	p := startCalm(t, nil, "--upstream", up.URL, "--config", writeConfig(t, variantPolicy),
		"--default-limit", "1000/minute")

	// Encoded slashes and backslashes never reach the upstream.
	for _, path := range []string{"/api%2Ftest", "/api%2ftest", "/api%5Ctest", "/api%5ctest"} {
		resp, body := do(t, "GET", p.url+path, nil, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s = %d %s, want 400", path, resp.StatusCode, body)
		}
	}
	switch resp := rawRequest(t, p, "GET /api\\test HTTP/1.1\r\nHost: calm.test\r\n\r\n"); {
	case resp == nil:
		t.Errorf("GET /api\\test got no response, want 400")
	case resp.StatusCode != http.StatusBadRequest:
		t.Errorf("GET /api\\test = %d, want 400", resp.StatusCode)
	}

	// The other variants spend the budget of GET /api/test: 2 a minute.
	steps := []struct {
		path   string
		status int
	}{
		{"/api/test", http.StatusOK},
		{"/api/test/", http.StatusOK},
		{"/API/test", 420},
		{"/api/test;x", 420},
		{"/Api/Test/", 420},
		{"/api/test", 420},
	}
	for _, step := range steps {
		resp, body := do(t, "GET", p.url+step.path, nil, nil)
		if resp.StatusCode != step.status {
			t.Errorf("GET %s = %d %s, want %d", step.path, resp.StatusCode, body, step.status)
		}
		if got := resp.Header.Get("X-RateLimit-Policy"); got != "GET /api/test" {
			t.Errorf("GET %s: X-RateLimit-Policy = %q, want the route's policy GET /api/test",
				step.path, got)
		}
	}
	want := []string{"/api/test", "/api/test/"}
	if got := seen(); !slices.Equal(got, want) {
		t.Errorf("upstream received %q, want %q", got, want)
	}
}

func TestProxyPathVariantsSettings(t *testing.T) {
	t.Parallel()
	up, seen := pathUpstream(t)
	p := startCalm(t, map[string]string{
		"RATELIMIT_PROXY_ALLOW_ENCODED_SLASHES": "true",
		"RATELIMIT_PROXY_FOLD_CASE":             "false",
	}, "--upstream", up.URL, "--config", writeConfig(t, variantPolicy),
		"--default-limit", "1000/minute")

	// An allowed encoded slash is forwarded as it came, and still limited
	// as the path with a slash.
	for i, path := range []string{"/api%2Ftest", "/api%5Ctest", "/api%2Ftest"} {
		resp, body := do(t, "GET", p.url+path, nil, nil)
		want := http.StatusOK
		if i == 2 {
			want = 420
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d %s, want %d", path, resp.StatusCode, body, want)
		}
		if got := resp.Header.Get("X-RateLimit-Policy"); got != "GET /api/test" {
			t.Errorf("GET %s: X-RateLimit-Policy = %q, want GET /api/test", path, got)
		}
	}
	// Without case folding, another case is another path.
	resp, body := do(t, "GET", p.url+"/API/test", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Policy") != "default" {
		t.Errorf("GET /API/test without folding = %d with policy %q %s, want 200 with default",
			resp.StatusCode, resp.Header.Get("X-RateLimit-Policy"), body)
	}
	want := []string{"/api%2Ftest", "/api%5Ctest", "/API/test"}
	if got := seen(); !slices.Equal(got, want) {
		t.Errorf("upstream received %q, want %q", got, want)
	}
}
