package identity

import (
	"net/http"
	"strings"

	"github.com/calm-limiter/calm/identity/jwtverify"
)

// Bounds on credentials read from a request. Longer values are ignored, as
// if absent, so they cost no parsing or hashing.
const (
	maxAPIKeyLength  = 256
	maxSessionLength = 4096
)

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "" when there is none or it is malformed: several
// Authorization lines, another scheme, a token longer than
// jwtverify.MaxTokenLength, or characters outside the RFC 6750 token68
// alphabet.
func BearerToken(r *http.Request) string {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return ""
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > jwtverify.MaxTokenLength || !isToken68(token) {
		return ""
	}
	return token
}

// isToken68 reports whether s matches RFC 7235 token68: ALPHA, DIGIT and
// "-._~+/", followed by optional "=" padding.
func isToken68(s string) bool {
	end := len(strings.TrimRight(s, "="))
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		c := s[i]
		if !isAlnumByte(c) && strings.IndexByte("-._~+/", c) < 0 {
			return false
		}
	}
	return true
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// apiKey returns the API key from the header (one line only) or, when
// query is set, from the query parameter. Keys must be printable ASCII
// without spaces and at most 256 bytes.
func apiKey(r *http.Request, header, query string) string {
	if header != "" {
		if values := r.Header.Values(header); len(values) == 1 && printableKey(values[0], maxAPIKeyLength) {
			return values[0]
		}
	}
	if query != "" && r.URL != nil {
		if values := r.URL.Query()[query]; len(values) == 1 && printableKey(values[0], maxAPIKeyLength) {
			return values[0]
		}
	}
	return ""
}

// sessionValue returns the value of the named cookie, or "".
func sessionValue(r *http.Request, name string) string {
	if name == "" {
		return ""
	}
	c, err := r.Cookie(name)
	if err != nil || !printableKey(c.Value, maxSessionLength) {
		return ""
	}
	return c.Value
}

func printableKey(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
