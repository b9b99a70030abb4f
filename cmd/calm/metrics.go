package main

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/calm-limiter/calm/store/memory"
)

// statusCounter counts the responses of a handler by status code.
// It is safe for concurrent use.
type statusCounter struct {
	counts [600]atomic.Int64 // by status code; 100 to 599 are used
}

// wrap returns next with every response counted.
func (sc *statusCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 && r.Context().Err() != nil {
			// The client went away and the handler wrote nothing, so no
			// response was sent.
			return
		}
		if code == 0 {
			// The handler wrote nothing, so net/http sends 200.
			code = http.StatusOK
		}
		if code >= 100 && code < len(sc.counts) {
			sc.counts[code].Add(1)
		}
	})
}

// write writes the counters in the Prometheus text format.
func (sc *statusCounter) write(w io.Writer) {
	fmt.Fprintln(w, "# HELP calm_responses_total Responses of limited paths by status code; "+
		"denied requests have the configured status (420 or 429).")
	fmt.Fprintln(w, "# TYPE calm_responses_total counter")
	for code := range sc.counts {
		if n := sc.counts[code].Load(); n > 0 {
			fmt.Fprintf(w, "calm_responses_total{code=\"%d\"} %d\n", code, n)
		}
	}
}

// statusRecorder remembers the first status a handler writes. Unwrap lets
// http.ResponseController reach the connection's Flush and deadlines, so
// streamed responses keep streaming.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// serveMetrics writes the gateway's metrics in the Prometheus text format.
func (gw *gateway) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintln(w, "# HELP calm_up Whether the gateway serves requests (1) or is stopping (0).")
	fmt.Fprintln(w, "# TYPE calm_up gauge")
	up := 0
	if gw.ready.Load() {
		up = 1
	}
	fmt.Fprintf(w, "calm_up %d\n", up)
	gw.responses.write(w)
	if gw.limits != nil {
		fmt.Fprintln(w, "# HELP calm_held_requests Requests held until their turn in a leaky queue.")
		fmt.Fprintln(w, "# TYPE calm_held_requests gauge")
		fmt.Fprintf(w, "calm_held_requests %d\n", gw.limits.HeldRequests())
	}
	if m, ok := gw.store.(*memory.Store); ok {
		fmt.Fprintln(w, "# HELP calm_memory_keys Keys held by the memory store.")
		fmt.Fprintln(w, "# TYPE calm_memory_keys gauge")
		fmt.Fprintf(w, "calm_memory_keys %d\n", m.Len())
	}
}
