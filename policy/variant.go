package policy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Path variants.
//
// ServeMux matches paths exactly, but the application behind a proxy may
// not: it may decode %2F to a slash, ignore a trailing slash, drop
// ";name=value" parameters from path segments or ignore letter case. A
// request for such a variant of a route's path would then reach the route
// under the limits of some other route, a group or the default limits.
//
// Match therefore also matches the canonical form of the path (see
// canonicalPath) and, with Config.FoldCase, its lower-case form. The
// request is limited by every route that its raw path or one of these forms
// matches, so a variant is limited at least as strictly as the route it
// may alias. The one exception is a route whose pattern is the trailing
// slash form of another route's, such as "GET /a/" next to "GET /a": it was
// written for that form, so a request for "/a/" gets its limits alone.

// canonicalPath returns the form of the escaped path p that an application
// which normalizes paths would serve. "%2F", "%5C" and backslashes become
// slashes and "%2E" a dot. The ";" parameters of every segment, dot
// segments, repeated slashes and a trailing slash are removed. It returns p
// itself when p has none of these.
func canonicalPath(p string) string {
	if !hasVariantSyntax(p) {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	inParams := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			switch decoded := decodedSeparator(p[i+1], p[i+2]); decoded {
			case '/', '.':
				c = decoded
				i += 2
			}
		}
		if c == '\\' {
			c = '/'
		}
		switch {
		case c == '/':
			inParams = false
		case c == ';':
			inParams = true
		}
		if !inParams {
			b.WriteByte(c)
		}
	}
	s := cleanPath(b.String())
	if len(s) > 1 && strings.HasSuffix(s, "/") {
		s = s[:len(s)-1]
	}
	return s
}

// hasVariantSyntax reports whether canonicalPath would change p.
func hasVariantSyntax(p string) bool {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return true
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ';', '\\':
			return true
		case '%':
			if i+2 < len(p) && decodedSeparator(p[i+1], p[i+2]) != 0 {
				return true
			}
		}
	}
	return false
}

// decodedSeparator returns the byte that the escape %XY stands for when it
// is a slash, a backslash (returned as a slash) or a dot, and 0 otherwise.
func decodedSeparator(x, y byte) byte {
	switch {
	case x != '2' && x != '5':
		return 0
	case x == '2' && (y == 'f' || y == 'F'):
		return '/'
	case x == '5' && (y == 'c' || y == 'C'):
		return '/'
	case x == '2' && (y == 'e' || y == 'E'):
		return '.'
	}
	return 0
}

// lowerASCII returns s with the ASCII letters A to Z in lower case. An
// escaped path holds only ASCII bytes.
func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// foldPattern returns pattern with the literal parts of its path in lower
// case; the method, the host and wildcard names keep their case.
func foldPattern(pattern string) string {
	start := strings.IndexByte(pattern, '/')
	if start < 0 {
		return pattern
	}
	b := []byte(pattern)
	inWildcard := false
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '{':
			inWildcard = true
		case c == '}':
			inWildcard = false
		case !inWildcard && 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// withPath returns a shallow copy of r whose URL has the escaped path
// escaped, or nil when escaped does not decode.
func withPath(r *http.Request, escaped string) *http.Request {
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		return nil
	}
	u := *r.URL
	u.Path, u.RawPath = decoded, escaped
	v := new(http.Request)
	*v = *r
	v.URL = &u
	return v
}

// variants are the forms of one request that Match matches besides the
// request itself. Either may be nil.
type variants struct {
	// canonical has the canonical path; nil when it equals the raw path.
	canonical *http.Request
	// folded has the canonical path in lower case, to match against the
	// folded patterns; nil without Config.FoldCase.
	folded *http.Request
}

// variantsOf returns the variants of r.
func (p *Policy) variantsOf(r *http.Request) variants {
	var v variants
	if r.Method == http.MethodConnect {
		// The path of a CONNECT request is an authority, not a path.
		return v
	}
	raw := r.URL.EscapedPath()
	canonical := canonicalPath(raw)
	if canonical != raw {
		v.canonical = withPath(r, canonical)
	}
	if p.foldCase {
		lower := lowerASCII(canonical)
		switch {
		case p.foldedPatterns:
			v.folded = withPath(r, lower)
		case lower != canonical:
			// No pattern has an upper-case letter, so the exact sets
			// match the lower-case path as the folded ones would.
			v.folded = withPath(r, lower)
		}
	}
	return v
}

// buildFolded adds to s a ServeMux of its patterns with their paths in
// lower case. Patterns that differ only in case stay out of it, because a
// lower-case path cannot choose between them. It reports whether any
// pattern changed.
func (s *patternSet) buildFolded() bool {
	if s == nil {
		return false
	}
	sorted := make([]string, 0, len(s.patterns))
	counts := make(map[string]int, len(s.patterns))
	changed := false
	for pattern := range s.patterns {
		sorted = append(sorted, pattern)
		folded := foldPattern(pattern)
		counts[folded]++
		changed = changed || folded != pattern
	}
	if !changed {
		return false
	}
	slices.Sort(sorted)
	s.folded = &patternSet{mux: http.NewServeMux(), patterns: make(map[string]bool)}
	s.original = make(map[string]string, len(sorted))
	for _, pattern := range sorted {
		folded := foldPattern(pattern)
		if counts[folded] > 1 || register(s.folded.mux, folded) != nil {
			continue
		}
		s.folded.patterns[folded] = true
		s.original[folded] = pattern
	}
	s.folded.addCatchAll()
	return true
}

// matchFolded returns the pattern of s that the lower-case request r
// matches case-insensitively, or "".
func (s *patternSet) matchFolded(r *http.Request) string {
	if s == nil {
		return ""
	}
	if s.folded == nil {
		return s.match(r)
	}
	return s.original[s.folded.match(r)]
}

// isTrailingSlashTwin reports whether twin's pattern path is route's
// pattern path with a trailing slash, such as "GET /a/" or "GET /a/{$}"
// for "GET /a".
func isTrailingSlashTwin(twin, route *route, foldCase bool) bool {
	twinPath, routePath := patternPath(twin.pattern), patternPath(route.pattern)
	equal := func(a, b string) bool { return a == b }
	if foldCase {
		equal = strings.EqualFold
	}
	return equal(twinPath, routePath+"/") || equal(twinPath, routePath+"/{$}")
}

// maxRoutes bounds the routes of one match: those of the raw path, the
// canonical path and the lower-case path.
const maxRoutes = 3

// routeList holds the routes of one match, first ones first, followed by
// nils. An array, unlike a slice, stays off the heap.
type routeList [maxRoutes]*route

// add appends rt unless it is already in l.
func (l *routeList) add(rt *route) {
	for i, have := range l {
		switch have {
		case nil:
			l[i] = rt
			return
		case rt:
			return
		}
	}
}

// matchRoutes returns the routes that r or its variants match, the raw
// path's first, without duplicates or trailing-slash twins.
func (p *Policy) matchRoutes(r *http.Request, v variants) routeList {
	var routes routeList
	raw := p.byRoute[p.routes.match(r)]
	if raw != nil {
		routes.add(raw)
	}
	var aliases [2]*route
	if v.canonical != nil {
		aliases[0] = p.byRoute[p.routes.match(v.canonical)]
	}
	if v.folded != nil {
		aliases[1] = p.byRoute[p.routes.matchFolded(v.folded)]
	}
	for _, alias := range aliases {
		if alias == nil || raw != nil && isTrailingSlashTwin(raw, alias, p.foldCase) {
			continue
		}
		routes.add(alias)
	}
	return routes
}

// groupOf returns the group that r's path or, failing that, one of its
// variants lies in.
func (p *Policy) groupOf(r *http.Request, v variants) *group {
	if g := p.group(r.URL.Path, false); g != nil {
		return g
	}
	if v.canonical != nil {
		if g := p.group(v.canonical.URL.Path, false); g != nil {
			return g
		}
	}
	if v.folded != nil {
		return p.group(v.folded.URL.Path, true)
	}
	return nil
}

// included reports whether r or one of its variants matches Include.
func (p *Policy) included(r *http.Request, v variants) bool {
	switch {
	case p.include.match(r) != "":
		return true
	case v.canonical != nil && p.include.match(v.canonical) != "":
		return true
	case v.folded != nil && p.include.matchFolded(v.folded) != "":
		return true
	}
	return false
}
