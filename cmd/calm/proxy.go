package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// parseUpstream validates the --upstream URL.
func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--upstream=%q: invalid: want an absolute http or https URL, "+
			"such as http://127.0.0.1:8080", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--upstream=%q: invalid: want a URL without query or fragment", raw)
	}
	return u, nil
}

// newProxy returns a reverse proxy to upstream. It streams bodies in both
// directions, drops hop-by-hop headers (httputil.ReverseProxy does), sends
// the client address in X-Forwarded-For and responds with 502 when the
// upstream fails. A request body that cannot be read from the client, such
// as a malformed chunk or an upload the client aborted, is the client's
// error: it gets 400, or nothing when the client is gone, and a debug line.
//
// The upstream receives the X-Forwarded-For chain of the request only when
// trustForwarded (which may be nil) reports that the request's peer is a
// trusted proxy; otherwise a client could put any address in front of its
// own.
func newProxy(upstream *url.URL, logger *slog.Logger,
	trustForwarded func(*http.Request) bool) http.Handler {
	errs := &errorLog{logger: logger, every: time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			if trustForwarded != nil && trustForwarded(pr.In) {
				// SetXForwarded appends the peer to the chain in Out.
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			}
			pr.SetXForwarded()
		},
		Transport: newUpstreamTransport(),
		// Flush after every write so streamed responses (server-sent events,
		// long downloads) reach the client as they arrive.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			clientGone := r.Context().Err() != nil
			if bodyErr := clientBodyError(r); bodyErr != nil {
				logger.Debug("reading the client's request body failed",
					"component", "proxy", "method", r.Method, "path", r.URL.Path,
					"client_gone", clientGone, "err", bodyErr)
				if !clientGone {
					writeJSON(w, http.StatusBadRequest, map[string]string{
						"message": "bad request",
						"detail":  "the request body could not be read: it is malformed or ended early",
					})
				}
				return
			}
			if clientGone && errors.Is(err, context.Canceled) {
				// The client went away, so no one reads a response.
				return
			}
			errs.log(r, err)
			writeJSON(w, http.StatusBadGateway, map[string]string{
				"message": "bad gateway",
				"detail":  "the upstream server did not answer; try again later",
			})
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			rp.ServeHTTP(w, r)
			return
		}
		body := &clientBody{ReadCloser: r.Body}
		r = r.WithContext(context.WithValue(r.Context(), clientBodyKey{}, body))
		r.Body = body
		rp.ServeHTTP(w, r)
	})
}

// clientBody is a request body that remembers the first error reading it
// from the client, so that the proxy can tell a client's failure from the
// upstream's. The transport reads it on its own goroutine.
type clientBody struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// clientBodyKey is the context key of a request's *clientBody.
type clientBodyKey struct{}

// clientBodyError returns the error reading r's body from the client, or
// nil.
func clientBodyError(r *http.Request) error {
	b, ok := r.Context().Value(clientBodyKey{}).(*clientBody)
	if !ok {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// newUpstreamTransport returns the transport to the upstream: bounded
// connection set-up, no proxy from the environment.
func newUpstreamTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// NOTE: no ResponseHeaderTimeout, so slow upstreams (long polls) are
		// served; the client's own timeout bounds the wait.
	}
}

// errorLog logs upstream failures at most once per interval, with the
// number of failures left unlogged since the previous line, so a dead
// upstream under load does not flood the log.
type errorLog struct {
	logger *slog.Logger
	every  time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (e *errorLog) log(r *http.Request, err error) {
	now := time.Now()
	e.mu.Lock()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.suppressed++
		e.mu.Unlock()
		return
	}
	suppressed := e.suppressed
	e.last, e.suppressed = now, 0
	e.mu.Unlock()

	e.logger.Warn("upstream request failed",
		"component", "proxy",
		"method", r.Method,
		"path", r.URL.Path,
		"status", http.StatusBadGateway,
		"suppressed", suppressed,
		"err", err)
}
