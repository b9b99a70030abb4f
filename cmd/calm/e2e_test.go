package main

// End-to-end tests: they build the real calm binary, start it on a free
// loopback port and talk to it over HTTP.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// calmBinary is the path of the binary built by TestMain.
var calmBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "calm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a temporary directory:", err)
		os.Exit(1)
	}
	calmBinary = filepath.Join(dir, "calm")
	args := []string{"build", "-o", calmBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building calm:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running calm binary.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string // host:port it listens on
	url  string // http://addr

	logs   *lockedBuffer
	exited chan struct{}
	err    error // exit error, valid after exited is closed
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// childEnv returns the environment of this process without RATELIMIT_*
// variables, plus extra, so a developer's settings never leak into a test.
func childEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMIT_") {
			env = append(env, kv)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// startCalm runs `calm serve` on a free loopback port with JSON logs and
// returns once it logged its start-up line. The process is stopped when the
// test ends.
func startCalm(t *testing.T, env map[string]string, args ...string) *process {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	env["RATELIMIT_LOG_FORMAT"] = "json"
	p := &process{t: t, logs: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(calmBinary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = childEnv(env)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting calm: %v", err)
	}
	started := make(chan string, 1)
	go p.readLogs(stderr, started)
	t.Cleanup(p.stop)

	select {
	case addr := <-started:
		p.addr, p.url = addr, "http://"+addr
	case <-p.exited:
		t.Fatalf("calm exited before start-up: %v\nlogs:\n%s", p.err, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("calm did not log its start-up line within 30s\nlogs:\n%s", p.logs)
	}
	return p
}

// readLogs copies the log lines into p.logs, sends the listen address of
// the start-up line on started, and records the exit when stderr closes.
func (p *process) readLogs(r io.Reader, started chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		p.logs.Write(append(line, '\n'))
		if sent {
			continue
		}
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "calm started" {
			started <- rec.Addr
			sent = true
		}
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

// stop sends SIGINT, which skips the drain delay, and waits for the exit;
// it kills the process by its PID if it does not stop within 15 seconds.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("calm did not stop within 15s of SIGINT\nlogs:\n%s", p.logs)
	}
}

// logLines returns the JSON log records whose msg is msg.
func (p *process) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// client is the HTTP client of the tests: no proxy, bounded time.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
	Timeout:   20 * time.Second,
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, url, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response of %s %s: %v", method, url, err)
	}
	return resp, data
}

func TestServeDemoEndpoints(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil)
	tests := []struct {
		name, method, path string
		status             int
	}{
		{"healthz", "GET", "/healthz", 200},
		{"readyz", "GET", "/readyz", 200},
		{"metrics", "GET", "/metrics", 200},
		{"login", "POST", "/auth/login", 200},
		{"register", "POST", "/auth/register", 201},
		{"products", "GET", "/public/products", 200},
		{"search", "GET", "/public/search?q=tea", 200},
		{"test", "GET", "/api/test", 200},
		{"me", "GET", "/api/me", 200},
		{"upload", "POST", "/api/upload", 200},
		{"export", "GET", "/api/export", 200},
		{"unknown", "GET", "/nope", 404},
	}
	for _, tt := range tests {
		resp, _ := do(t, tt.method, p.url+tt.path, nil, nil)
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("calm did not exit within 15s of SIGTERM")
	}
	if p.err != nil {
		t.Errorf("calm exited with %v after SIGTERM, want status 0\nlogs:\n%s", p.err, p.logs)
	}
	if len(p.logLines("calm stopped")) != 1 {
		t.Errorf("logs have no \"calm stopped\" line:\n%s", p.logs)
	}
	if got := stoppingDelay(p); got != "5s" {
		t.Errorf("drain delay after SIGTERM = %q, want the default 5s", got)
	}
}

// stoppingDelay returns the drain_delay of the "calm stopping" line.
func stoppingDelay(p *process) string {
	lines := p.logLines("calm stopping")
	if len(lines) != 1 {
		return fmt.Sprintf("(%d stopping lines)", len(lines))
	}
	delay, _ := lines[0]["drain_delay"].(string)
	return delay
}

func TestServeDrainDelayKeepsServing(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil, "--drain-delay", "1m")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	waitFor(t, func() bool { return len(p.logLines("calm stopping")) == 1 }, "the stopping line", p)

	// During the delay the listener stays open: load balancers see /readyz
	// fail while requests still get answers.
	resp, body := do(t, "GET", p.url+"/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz while draining = %d %s, want 503", resp.StatusCode, body)
	}
	var ready struct{ Status string }
	if err := json.Unmarshal(body, &ready); err != nil || ready.Status != "stopping" {
		t.Errorf("GET /readyz while draining: body %s, want status stopping", body)
	}
	if _, body := do(t, "GET", p.url+"/metrics", nil, nil); !strings.Contains(string(body), "calm_up 0\n") {
		t.Errorf("metrics while draining lack calm_up 0:\n%s", body)
	}
	if resp, body := do(t, "GET", p.url+"/api/test", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/test while draining = %d %s, want 200", resp.StatusCode, body)
	}
	select {
	case <-p.exited:
		t.Fatalf("calm exited during the drain delay\nlogs:\n%s", p.logs)
	default:
	}
	if got := stoppingDelay(p); got != "1m0s" {
		t.Errorf("drain delay = %q, want 1m0s", got)
	}
	// A second signal ends the wait at once; the cleanup's SIGINT does it.
}

func TestServeInterruptSkipsDrainDelay(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil, "--drain-delay", "1m")
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("sending SIGINT: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("calm did not exit within 15s of SIGINT with a 1m drain delay")
	}
	if p.err != nil {
		t.Errorf("calm exited with %v after SIGINT, want status 0\nlogs:\n%s", p.err, p.logs)
	}
	if got := stoppingDelay(p); got != "0s" {
		t.Errorf("drain delay after SIGINT = %q, want 0s", got)
	}
}

// runCalm runs the binary to completion and returns its exit status and
// output streams.
func runCalm(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(calmBinary, args...)
	cmd.Env = childEnv(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting calm: %v", err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("calm %s did not exit within 30s", strings.Join(args, " "))
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("running calm: %v", err)
	return 0, "", ""
}

func TestServeStartupFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte("settings:\n  status_code: 500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(dir, "policy.yaml")
	policyText := "routes:\n  - pattern: GET /x\n    limits: [10/fortnight]\n" +
		"  - pattern: GET /y\n    cost: -1\n"
	if err := os.WriteFile(badPolicy, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the whole stderr, one line; with "...", its start and end
		code int
	}{
		{"policy", nil, []string{"--config", badPolicy},
			`calm serve: ` + badPolicy + `: routes[0].limits: invalid rule "10/fortnight"...` +
				`(and 1 more error: run calm check-config on the file to list them)`, 1},
		{"status code", map[string]string{"RATELIMIT_STATUS_CODE": "abc"}, nil,
			`calm serve: RATELIMIT_STATUS_CODE="abc": invalid: want 420 or 429`, 1},
		{"algorithm", map[string]string{"RATELIMIT_ALGORITHM": "random"}, nil,
			`calm serve: RATELIMIT_ALGORITHM="random": invalid: want sliding_window, ` +
				`fixed_window, token_bucket, leaky_bucket, leaky_queue or gcra`, 1},
		{"default limit flag", nil, []string{"--default-limit", "0/minute"},
			`calm serve: --default-limit="0/minute": invalid: invalid rule "0/minute": ` +
				`request count must be a positive integer`, 1},
		{"file", nil, []string{"--config", badFile},
			`calm serve: ` + badFile + `: settings.status_code="500": invalid: want 420 or 429`, 1},
		{"missing file", nil, []string{"--config", filepath.Join(dir, "missing.yaml")},
			`calm serve: reading config file: open ` + filepath.Join(dir, "missing.yaml") +
				`: no such file or directory`, 1},
		{"upstream", nil, []string{"--upstream", "ftp://x"},
			`calm serve: --upstream="ftp://x": invalid: want an absolute http or https URL, ` +
				`such as http://127.0.0.1:8080`, 1},
		{"drain delay", nil, []string{"--drain-delay", "-1s"},
			`calm serve: --drain-delay=-1s: invalid: want 0 or a positive duration`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--addr", "127.0.0.1:0"}, tt.args...)
			code, stdout, stderr := runCalm(t, tt.env, args...)
			if code != tt.code {
				t.Errorf("exit status = %d, want %d", code, tt.code)
			}
			got := strings.TrimSuffix(stderr, "\n")
			start, end, elided := strings.Cut(tt.want, "...")
			switch {
			case strings.Contains(got, "\n"):
				t.Errorf("stderr has several lines, want one:\n%s", got)
			case !elided && got != tt.want:
				t.Errorf("stderr:\n got %q\nwant %q", got, tt.want)
			case elided && (!strings.HasPrefix(got, start) || !strings.HasSuffix(got, end)):
				t.Errorf("stderr:\n got %q\nwant %q", got, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCalm(t, nil, "frobnicate")
	if code != 2 {
		t.Errorf("exit status = %d, want 2", code)
	}
	if !strings.HasPrefix(stderr, `calm: unknown command "frobnicate"`) {
		t.Errorf("stderr = %q, want the unknown command named", stderr)
	}
}

// newUpstream starts the upstream server of the proxy tests. /stream sends
// one line, waits until release is closed and sends another.
func newUpstream(t *testing.T, release <-chan struct{}) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, "second")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		writeJSON(w, http.StatusOK, map[string]any{
			"method":          r.Method,
			"path":            r.URL.RequestURI(),
			"x_forwarded_for": r.Header.Values("X-Forwarded-For"),
			"x_secret":        r.Header.Get("X-Secret"),
			"custom":          r.Header.Get("X-Custom"),
			"body_bytes":      len(body),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestProxyForwards(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	p := startCalm(t, nil, "--upstream", up.URL)

	header := http.Header{
		"X-Custom":        {"kept"},
		"Connection":      {"X-Secret"},
		"X-Secret":        {"hop-by-hop, must not reach the upstream"},
		"X-Forwarded-For": {"203.0.113.9"},
	}
	body := strings.NewReader(strings.Repeat("x", 300_000))
	resp, data := do(t, "POST", p.url+"/echo?a=1", body, header)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /echo = %d, want 200: %s", resp.StatusCode, data)
	}
	var got struct {
		Method        string   `json:"method"`
		Path          string   `json:"path"`
		XForwardedFor []string `json:"x_forwarded_for"`
		XSecret       string   `json:"x_secret"`
		Custom        string   `json:"custom"`
		BodyBytes     int      `json:"body_bytes"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	if got.Method != "POST" || got.Path != "/echo?a=1" {
		t.Errorf("upstream saw %s %s, want POST /echo?a=1", got.Method, got.Path)
	}
	if len(got.XForwardedFor) != 1 || got.XForwardedFor[0] != "127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q, want [127.0.0.1]", got.XForwardedFor)
	}
	if got.XSecret != "" {
		t.Errorf("upstream saw hop-by-hop header X-Secret = %q, want none", got.XSecret)
	}
	if got.Custom != "kept" {
		t.Errorf("upstream saw X-Custom = %q, want kept", got.Custom)
	}
	if got.BodyBytes != 300_000 {
		t.Errorf("upstream read %d body bytes, want 300000", got.BodyBytes)
	}
}

func TestProxyStreams(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, release)
	p := startCalm(t, nil, "--upstream", up.URL, "--drain-delay", "0")

	resp, err := client.Get(p.url + "/stream")
	if err != nil {
		close(release)
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	// The first line must arrive while the upstream still holds the response
	// open; a buffering proxy would block here until the client timeout.
	first, err := r.ReadString('\n')
	close(release)
	if err != nil || first != "first\n" {
		t.Fatalf("first streamed line = %q, %v; want \"first\\n\"", first, err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("rest of the stream = %q, %v; want \"second\\n\"", rest, err)
	}
}

func TestProxyDeadUpstream(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	p := startCalm(t, nil, "--upstream", dead)

	resp, data := do(t, "GET", p.url+"/anything", nil, nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET /anything with a dead upstream = %d, want 502", resp.StatusCode)
	}
	var body map[string]string
	if err := json.Unmarshal(data, &body); err != nil || body["message"] != "bad gateway" {
		t.Errorf("502 body = %s, want JSON with message \"bad gateway\"", data)
	}
	waitFor(t, func() bool { return len(p.logLines("upstream request failed")) == 1 },
		"one \"upstream request failed\" log line", p)
}

// waitFor polls cond for up to 10 seconds; log lines reach the test through
// a pipe, so they may trail the HTTP response.
func waitFor(t *testing.T, cond func() bool, what string, p *process) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s\nlogs:\n%s", what, p.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDemoLimits(t *testing.T) {
	t.Parallel()
	// RATELIMIT_DEFAULT_LIMIT reaches GET /api/test, the route with the
	// default limits; the other routes have limits of their own.
	p := startCalm(t, map[string]string{"RATELIMIT_DEFAULT_LIMIT": "4/minute,40/hour"})
	tests := []struct {
		method, path string
		allowed      int
		policy       string
		limit        string // RateLimit-Limit of the deciding rule
	}{
		{"POST", "/auth/login", 3, "login", "3"},
		{"POST", "/auth/register", 2, "register", "2"},
		{"GET", "/api/export", 5, "GET /api/export", "5"},
		{"GET", "/api/test", 4, "default", "4"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			for i := 1; i <= tt.allowed; i++ {
				resp, _ := do(t, tt.method, p.url+tt.path, nil, nil)
				if resp.StatusCode >= 400 {
					t.Fatalf("request %d = %d, want success", i, resp.StatusCode)
				}
				wantRemaining := fmt.Sprint(tt.allowed - i)
				if got := resp.Header.Get("RateLimit-Remaining"); got != wantRemaining {
					t.Errorf("request %d: RateLimit-Remaining = %q, want %q", i, got, wantRemaining)
				}
			}
			resp, body := do(t, tt.method, p.url+tt.path, nil, nil)
			checkDenied(t, resp, body, 420, tt.policy, tt.limit)
		})
	}
}

// checkDenied checks the status, headers and JSON body of a denied response.
func checkDenied(t *testing.T, resp *http.Response, body []byte, status int, policy, limit string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	headers := map[string]string{
		"RateLimit-Limit":     limit,
		"RateLimit-Remaining": "0",
		"X-RateLimit-Policy":  policy,
		"X-RateLimit-Scope":   "user",
	}
	for name, want := range headers {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"Retry-After", "RateLimit-Reset"} {
		var secs int
		if _, err := fmt.Sscan(resp.Header.Get(name), &secs); err != nil || secs < 1 {
			t.Errorf("%s = %q, want whole seconds >= 1", name, resp.Header.Get(name))
		}
	}
	for _, name := range []string{"RateLimit-Policy", "RateLimit"} {
		if resp.Header.Get(name) == "" {
			t.Errorf("%s is missing, want the draft structured field", name)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got struct {
		Message   string `json:"message"`
		Detail    string `json:"detail"`
		LimitInfo struct {
			Limit      int64  `json:"limit"`
			Remaining  int64  `json:"remaining"`
			RetryAfter *int64 `json:"retry_after"`
			Policy     string `json:"policy"`
			Scope      string `json:"scope"`
		} `json:"limit_info"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("denied body %s is not JSON: %v", body, err)
	}
	if got.Message == "" || got.Detail == "" {
		t.Errorf("denied body %s lacks message or detail", body)
	}
	if fmt.Sprint(got.LimitInfo.Limit) != limit || got.LimitInfo.Remaining != 0 ||
		got.LimitInfo.Policy != policy || got.LimitInfo.Scope != "user" ||
		got.LimitInfo.RetryAfter == nil || *got.LimitInfo.RetryAfter < 1 {
		t.Errorf("limit_info = %+v, want limit %s, remaining 0, policy %q, scope user, "+
			"retry_after >= 1", got.LimitInfo, limit, policy)
	}
}

func TestDemoViolationLog(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil)
	for range 4 {
		do(t, "POST", p.url+"/auth/login", nil, nil)
	}
	waitFor(t, func() bool { return len(p.logLines("rate limit exceeded")) == 1 },
		"one violation log line", p)
	rec := p.logLines("rate limit exceeded")[0]
	if rec["endpoint"] != "POST /auth/login" || rec["policy"] != "login" {
		t.Errorf("violation line = %v, want endpoint POST /auth/login and policy login", rec)
	}
	if hash, _ := rec["key_hash"].(string); len(hash) != 32 {
		t.Errorf("violation key_hash = %q, want 32 hexadecimal characters", hash)
	}
	if strings.Contains(p.logs.String(), "127.0.0.1\"") {
		t.Errorf("logs contain the raw client address:\n%s", p.logs)
	}
	if n := len(strings.Split(strings.TrimSpace(p.logs.String()), "\n")); n != 2 {
		t.Errorf("logs have %d lines, want 2 (start-up and violation):\n%s", n, p.logs)
	}

	_, metrics := do(t, "GET", p.url+"/metrics", nil, nil)
	for _, want := range []string{
		`calm_responses_total{code="200"} 3`,
		`calm_responses_total{code="420"} 1`,
		"calm_up 1",
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
}

func TestDemoNeverLimitsHealth(t *testing.T) {
	t.Parallel()
	p := startCalm(t, map[string]string{"RATELIMIT_DEFAULT_LIMIT": "1/hour"})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for i := range 5 {
			resp, _ := do(t, "GET", p.url+path, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s #%d = %d, want 200", path, i+1, resp.StatusCode)
			}
			if h := resp.Header.Get("RateLimit-Limit"); h != "" {
				t.Fatalf("GET %s carries RateLimit-Limit %q, want no rate-limit headers", path, h)
			}
		}
	}
}

func TestServeSettings(t *testing.T) {
	t.Parallel()
	t.Run("status 429", func(t *testing.T) {
		t.Parallel()
		p := startCalm(t, map[string]string{"RATELIMIT_STATUS_CODE": "429"})
		for range 2 {
			do(t, "POST", p.url+"/auth/register", nil, nil)
		}
		resp, body := do(t, "POST", p.url+"/auth/register", nil, nil)
		checkDenied(t, resp, body, 429, "register", "2")
		var got struct{ Message string }
		if err := json.Unmarshal(body, &got); err != nil || got.Message != "Too Many Requests" {
			t.Errorf("429 body message = %q (%v), want \"Too Many Requests\"", got.Message, err)
		}
	})
	t.Run("file over environment", func(t *testing.T) {
		t.Parallel()
		cfg := filepath.Join(t.TempDir(), "calm.yaml")
		if err := os.WriteFile(cfg, []byte("settings:\n  status_code: 429\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The file sets only settings, so the demo keeps its own policy.
		p := startCalm(t, map[string]string{"RATELIMIT_STATUS_CODE": "420"}, "--config", cfg)
		for range 2 {
			do(t, "POST", p.url+"/auth/register", nil, nil)
		}
		resp, body := do(t, "POST", p.url+"/auth/register", nil, nil)
		checkDenied(t, resp, body, 429, "register", "2")
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		p := startCalm(t, map[string]string{"RATELIMIT_ENABLED": "false"})
		for i := range 5 {
			resp, _ := do(t, "POST", p.url+"/auth/register", nil, nil)
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("RateLimit-Limit") != "" {
				t.Fatalf("request %d = %d with RateLimit-Limit %q, want 201 without headers",
					i+1, resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
			}
		}
	})
	t.Run("legacy headers", func(t *testing.T) {
		t.Parallel()
		p := startCalm(t, map[string]string{"RATELIMIT_HEADER_MODE": "legacy"})
		resp, _ := do(t, "GET", p.url+"/api/me", nil, nil)
		if resp.Header.Get("RateLimit-Limit") != "60" || resp.Header.Get("RateLimit-Policy") != "" {
			t.Errorf("legacy mode headers = %v, want RateLimit-Limit 60 and no RateLimit-Policy",
				resp.Header)
		}
	})
}

func TestProxyLimits(t *testing.T) {
	t.Parallel()
	var hits atomicCounter
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.add()
		fmt.Fprintln(w, "upstream answer")
	}))
	t.Cleanup(up.Close)
	cfg := filepath.Join(t.TempDir(), "calm.yaml")
	policyFile := "routes:\n  - pattern: POST /orders\n    name: orders\n    limits: [1/minute]\n"
	if err := os.WriteFile(cfg, []byte(policyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCalm(t, nil, "--upstream", up.URL, "--config", cfg, "--default-limit", "2/minute")

	for i := range 2 {
		resp, body := do(t, "GET", p.url+fmt.Sprintf("/items/%d", i), nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != "upstream answer\n" {
			t.Fatalf("GET /items/%d = %d %q, want the upstream's response", i, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "GET", p.url+"/items/9", nil, nil)
	checkDenied(t, resp, body, 420, "default", "2")

	resp, _ = do(t, "POST", p.url+"/orders", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /orders = %d, want 200", resp.StatusCode)
	}
	resp, body = do(t, "POST", p.url+"/orders", nil, nil)
	checkDenied(t, resp, body, 420, "orders", "1")
	if n := hits.load(); n != 3 {
		t.Errorf("upstream got %d requests, want 3 (denied requests must not reach it)", n)
	}
}

// atomicCounter counts requests from server goroutines.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add()        { c.n.Add(1) }
func (c *atomicCounter) load() int64 { return c.n.Load() }

func TestDemoSharedBudget(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil)
	// Five reports of cost 10 spend half of the /api budget of 100 per
	// minute, so 50 cheap requests spend the rest.
	for i := range 5 {
		resp, body := do(t, "POST", p.url+"/api/reports", nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("report %d = %d, want 202: %s", i+1, resp.StatusCode, body)
		}
	}
	for i := range 50 {
		resp, body := do(t, "GET", p.url+"/api/test", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/test #%d after 5 reports = %d, want 200: %s",
				i+1, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "GET", p.url+"/api/test", nil, nil)
	checkDenied(t, resp, body, 420, "api-budget", "100")
}

func TestServeDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, release)
	p := startCalm(t, nil, "--upstream", up.URL)

	resp, err := client.Get(p.url + "/stream")
	if err != nil {
		close(release)
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if first, err := r.ReadString('\n'); err != nil || first != "first\n" {
		close(release)
		t.Fatalf("first streamed line = %q, %v; want \"first\\n\"", first, err)
	}

	// SIGTERM while the request is open: calm must stop accepting, let the
	// request finish, and only then exit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	waitFor(t, func() bool { return len(p.logLines("calm stopping")) == 1 }, "the stopping line", p)
	select {
	case <-p.exited:
		t.Fatalf("calm exited with a request still open\nlogs:\n%s", p.logs)
	default:
	}
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("rest of the open request = %q, %v; want \"second\\n\"", rest, err)
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("calm did not exit within 15s after the last request finished")
	}
	if p.err != nil {
		t.Errorf("calm exited with %v, want status 0\nlogs:\n%s", p.err, p.logs)
	}
}

func TestServeSecondSignalStops(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := newUpstream(t, release)
	p := startCalm(t, nil, "--upstream", up.URL, "--shutdown-timeout", "1m")

	resp, err := client.Get(p.url + "/stream")
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("reading the first streamed line: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	waitFor(t, func() bool { return len(p.logLines("calm stopping")) == 1 }, "the stopping line", p)
	// The drain would wait a minute for the open stream; a second signal
	// must end calm at once. The signal is repeated because calm restores
	// the default handling just after the first one, not atomically with it.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for exited := false; !exited; {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			exited = true
		case <-tick.C:
		case <-deadline:
			t.Fatalf("calm still runs 10s after a second SIGTERM\nlogs:\n%s", p.logs)
		}
	}
	if p.err == nil {
		t.Errorf("calm exited with status 0 after a second SIGTERM, want killed by the signal")
	}
}

func TestDemoConcurrentExactness(t *testing.T) {
	t.Parallel()
	p := startCalm(t, nil)
	// POST /api/upload allows 10 a minute: of 200 concurrent requests from
	// one client exactly 10 pass, whatever the interleaving.
	const requests = 200
	// A client of its own: the connections it dialed but never used would
	// hold calm's graceful shutdown for 5s, so they are closed before the
	// process is stopped (cleanups run last registered first).
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: requests}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	statuses := make(chan int, requests)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range requests {
		wg.Go(func() {
			<-start
			req, err := http.NewRequest("POST", p.url+"/api/upload", strings.NewReader("x"))
			if err != nil {
				statuses <- -1
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				statuses <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for code := range statuses {
		counts[code]++
	}
	if counts[http.StatusOK] != 10 || counts[420] != requests-10 {
		t.Errorf("200 concurrent uploads got statuses %v, want exactly 10 × 200 and 190 × 420", counts)
	}
}
