package httplimit

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/calm-limiter/calm/policy"
)

// discardWriter is a ResponseWriter that keeps headers and drops the body,
// so that the benchmarks measure the limiter, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

var noContent = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// benchmarkMiddleware sends requests from many clients through the
// middleware; limits are high enough that nearly all are allowed.
func benchmarkMiddleware(b *testing.B, mode HeaderMode) {
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", noContent)
	f := newFixture(b, Config{
		Mux: mux, Headers: mode, QuietViolations: true,
		Policy: policy.Config{DefaultLimits: []string{"1000000/minute", "2000000/hour"}},
	})
	h := f.lim.Middleware(mux)
	var clients atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/users/42", nil)
		r.RemoteAddr = "10.0." + strconv.Itoa(int(clients.Add(1))%250) + ".1:999"
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
}

func BenchmarkMiddlewareBothHeaders(b *testing.B)   { benchmarkMiddleware(b, HeadersBoth) }
func BenchmarkMiddlewareLegacyHeaders(b *testing.B) { benchmarkMiddleware(b, HeadersLegacy) }
func BenchmarkMiddlewareNoHeaders(b *testing.B)     { benchmarkMiddleware(b, HeadersNone) }

func BenchmarkPolicyMatch(b *testing.B) {
	p, err := policy.New(policy.Config{
		Groups: []policy.Group{{Prefix: "/auth", Routes: []policy.Route{{Pattern: "POST /auth/login", Limits: []string{"3/minute"}}}}},
		Routes: []policy.Route{{Pattern: "GET /users/{id}", Limits: []string{"10/second"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/users/42", nil)
		for pb.Next() {
			p.Match(r, "")
		}
	})
}
