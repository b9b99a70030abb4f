package httplimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/calm-limiter/calm/policy"
)

// TestDeniedKeepsConnection sends requests over one real TCP connection and
// checks what the package documents: the status line of 420 carries Go's
// generic reason phrase, and a denied response keeps the connection open.
func TestDeniedKeepsConnection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	srv := httptest.NewServer(f.lim.Middleware(okHandler))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	reader := bufio.NewReader(conn)

	want := []struct {
		code   int
		status string
	}{
		{http.StatusOK, "200 OK"},
		{StatusEnhanceYourCalm, "420 status code 420"},
		{StatusEnhanceYourCalm, "420 status code 420"},
	}
	for i, w := range want {
		if _, err := io.WriteString(conn, "GET /api/test HTTP/1.1\r\nHost: calm.test\r\n\r\n"); err != nil {
			t.Fatalf("request %d: write: %v (connection closed after a denial?)", i+1, err)
		}
		resp, err := http.ReadResponse(reader, nil)
		if err != nil {
			t.Fatalf("request %d: reading response: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != w.code || resp.Status != w.status {
			t.Errorf("request %d: status %q, want %q", i+1, resp.Status, w.status)
		}
		if resp.Close {
			t.Errorf("request %d: response closes the connection, want keep-alive", i+1)
		}
	}
}
