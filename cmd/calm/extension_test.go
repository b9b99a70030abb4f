package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/calm-limiter/calm/config"
)

// testExtension returns an extension with one setting that sets a
// response header through the middleware hook and records its closing.
func testExtension(closed *[]string, setupErr error) *extension {
	var greeting string
	return &extension{
		name: "test",
		vars: func() []config.Var {
			return []config.Var{{Env: "RATELIMIT_TEST_GREETING", Key: "test_greeting",
				Default: "hello", Parse: config.Text(&greeting, 32), Usage: "A test setting."}}
		},
		setup: func(ctx context.Context, gw *gateway) error {
			if setupErr != nil {
				return setupErr
			}
			gw.middleware = append(gw.middleware, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Greeting", greeting)
					next.ServeHTTP(w, r)
				})
			})
			gw.closers = append(gw.closers, func() error {
				*closed = append(*closed, "test")
				return nil
			})
			gw.startAttrs = append(gw.startAttrs, "greeting", greeting)
			return nil
		},
	}
}

func TestExtensionHooks(t *testing.T) {
	t.Parallel()
	var closed []string
	lookup := func(name string) (string, bool) {
		if name == "RATELIMIT_TEST_GREETING" {
			return "bonjour", true
		}
		return "", false
	}
	var stderr bytes.Buffer
	c := &cli{stderr: &stderr, lookupEnv: lookup}
	flags := serveFlags{extensions: []*extension{testExtension(&closed, nil)}}
	gw, err := newGateway(context.Background(), c, flags)
	if err != nil {
		t.Fatalf("newGateway: %v", err)
	}

	rec := httptest.NewRecorder()
	gw.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/api/test", nil))
	if got := rec.Header().Get("X-Greeting"); got != "bonjour" {
		t.Errorf("X-Greeting = %q, want bonjour from the environment", got)
	}
	if rec.Header().Get("RateLimit-Limit") == "" {
		t.Errorf("GET /api/test has no RateLimit-Limit, want the limiter behind the middleware")
	}
	rec = httptest.NewRecorder()
	gw.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if got := rec.Header().Get("X-Greeting"); got != "" {
		t.Errorf("/healthz has X-Greeting %q, want health endpoints outside extension middleware", got)
	}
	if err := gw.close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if len(closed) != 1 {
		t.Errorf("closers ran %d times, want 1", len(closed))
	}
}

func TestExtensionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		setup  error
		want   string
		closed int
	}{
		{"bad setting", map[string]string{"RATELIMIT_TEST_GREETING": "a\nb"}, nil,
			`RATELIMIT_TEST_GREETING="a\nb": invalid: want text without control characters`, 0},
		{"setup fails", nil, errors.New(`RATELIMIT_TEST_GREETING="x": invalid: too short`),
			`RATELIMIT_TEST_GREETING="x": invalid: too short`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var closed []string
			lookup := func(name string) (string, bool) {
				v, ok := tt.env[name]
				return v, ok
			}
			c := &cli{stderr: &bytes.Buffer{}, lookupEnv: lookup}
			flags := serveFlags{extensions: []*extension{testExtension(&closed, tt.setup)}}
			_, err := newGateway(context.Background(), c, flags)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newGateway error = %v, want %q", err, tt.want)
			}
			if len(closed) != tt.closed {
				t.Errorf("closers ran %d times, want %d", len(closed), tt.closed)
			}
		})
	}
}
