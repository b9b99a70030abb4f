package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/httplimit"
)

func init() { addExtension(newProxyPathExtension) }

// proxyPathExtension decides how proxy mode treats path variants that an
// upstream may serve as another path: encoded slashes, and letter case.
// The policy itself limits trailing-slash, parameter and encoded-slash
// variants by the routes they may alias (see package policy).
type proxyPathExtension struct {
	allowEncodedSlashes bool
	foldCase            bool
}

func newProxyPathExtension() *extension {
	e := &proxyPathExtension{}
	return &extension{name: "proxy paths", vars: e.vars, setup: e.setup}
}

func (e *proxyPathExtension) vars() []config.Var {
	return []config.Var{
		{Env: "RATELIMIT_PROXY_ALLOW_ENCODED_SLASHES", Key: "proxy_allow_encoded_slashes",
			Default: "false", Parse: config.Bool(&e.allowEncodedSlashes),
			Usage: "With --upstream, forwards paths that contain %2F or %5C (an encoded slash or " +
				"backslash) or a backslash; by default they get 400. Either way they are " +
				"limited as the path with slashes."},
		{Env: "RATELIMIT_PROXY_FOLD_CASE", Key: "proxy_fold_case", Default: "true",
			Parse: config.Bool(&e.foldCase),
			Usage: "With --upstream, also limits a path by the routes it matches when letter " +
				"case is ignored, so /API/test counts against GET /api/test. Set false for an " +
				"upstream that tells /API/test from /api/test."},
	}
}

func (e *proxyPathExtension) setup(_ context.Context, gw *gateway) error {
	if gw.upstream == nil {
		return nil
	}
	if e.foldCase {
		gw.configure = append(gw.configure, func(c *httplimit.Config) { c.Policy.FoldCase = true })
	}
	if !e.allowEncodedSlashes {
		gw.middleware = append(gw.middleware, rejectEncodedSlashes)
	}
	gw.startAttrs = append(gw.startAttrs, "allow_encoded_slashes", e.allowEncodedSlashes,
		"fold_case", e.foldCase)
	return nil
}

// rejectEncodedSlashes responds 400 to a request whose path contains an
// encoded slash or backslash, or a backslash, before it is limited or
// proxied, because an upstream that decodes them serves a path other than
// the one calm matched. Apache httpd 2.4 rejects them by default too
// (AllowEncodedSlashes Off).
func rejectEncodedSlashes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasEncodedSlash(r) {
			next.ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"message": "bad request",
			"detail": "the path contains an encoded slash or backslash (%2F or %5C) or a " +
				"backslash, which this gateway does not forward; send the path with plain slashes",
		})
	})
}

// hasEncodedSlash reports whether r's path contains %2F or %5C in either
// case, or a backslash. The decoded path turns %5C into a backslash, and
// only the escaped path still shows %2F.
func hasEncodedSlash(r *http.Request) bool {
	if r.URL == nil || r.Method == http.MethodConnect {
		return false
	}
	if strings.ContainsRune(r.URL.Path, '\\') {
		return true
	}
	escaped := r.URL.EscapedPath()
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] == '%' && escaped[i+1] == '2' && (escaped[i+2] == 'F' || escaped[i+2] == 'f') {
			return true
		}
	}
	return false
}
