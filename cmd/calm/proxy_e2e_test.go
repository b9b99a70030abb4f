package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
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
