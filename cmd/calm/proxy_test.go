package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestProxyForwardedChain(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(up.Close)
	target, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		trusted func(*http.Request) bool
		want    string
	}{
		{"no trust", nil, "192.0.2.1"},
		{"untrusted peer", func(*http.Request) bool { return false }, "192.0.2.1"},
		{"trusted peer", func(*http.Request) bool { return true }, "203.0.113.7, 192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proxy := newProxy(target, logger, tt.trusted)
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = "192.0.2.1:4242"
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, req)
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("upstream X-Forwarded-For = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		ok        bool
	}{
		{"http", "http://127.0.0.1:8080", true},
		{"https with path", "https://api.example.test/v1", true},
		{"no scheme", "127.0.0.1:8080", false},
		{"ftp", "ftp://x", false},
		{"no host", "http://", false},
		{"query", "http://x/?a=1", false},
		{"garbage", "%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseUpstream(tt.raw)
			if (err == nil) != tt.ok {
				t.Errorf("parseUpstream(%q) error = %v, want ok=%v", tt.raw, err, tt.ok)
			}
		})
	}
}
