package policy

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// readRequest parses a request line and Host as a server would, or returns
// nil when a server would reject them.
func readRequest(method, target, host string) *http.Request {
	raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil
	}
	return r
}

func FuzzMatch(f *testing.F) {
	f.Add("GET", "/users/42", "example.com", "")
	f.Add("POST", "/auth/../auth//login", "h", "POST /auth/login")
	f.Add("CONNECT", "/auth", "h:443", "")
	f.Add("GET", "/api/%2e%2e/auth/login", "h", "")
	f.Add("OPTIONS", "*", "h", "")
	f.Add("GET", "http://other/healthz", "h", "")
	f.Add("GET", "/API%2fUsers%5C42;x/", "h", "")
	f.Add("GET", "/auth;a/%2E%2E/api/me/", "h", "")
	cfg := demoConfig()
	cfg.Routes = append(cfg.Routes, Route{Pattern: "GET /Public/{Name}/", Limits: []string{"9/minute"}})
	p, err := New(cfg)
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	cfg.FoldCase = true
	folded, err := New(cfg)
	if err != nil {
		f.Fatalf("New with FoldCase: %v", err)
	}
	allowed := map[string]bool{CatchAllEndpoint: true, "/auth/*": true, "/api/*": true}
	for pattern := range p.byRoute {
		allowed[pattern] = true
	}
	f.Fuzz(func(t *testing.T, method, target, host, appPattern string) {
		r := readRequest(method, target, host)
		if r == nil {
			return
		}
		plain := p.Match(r, appPattern)
		m := folded.Match(r, appPattern)
		if plain.Limited != m.Limited {
			t.Fatalf("Match(%s %q).Limited = %v with FoldCase, %v without", method, target,
				m.Limited, plain.Limited)
		}
		if !m.Limited {
			return
		}
		if !allowed[m.Endpoint] && m.Endpoint != appPattern {
			t.Fatalf("Match(%s %q) endpoint = %q: not a pattern, group or the app pattern", method, target, m.Endpoint)
		}
		checks := m.AppendChecks(nil, "client")
		if len(checks) == 0 {
			t.Fatalf("Match(%s %q) is limited but has no checks", method, target)
		}
		for _, c := range checks {
			if len(c.Rules) == 0 {
				t.Fatalf("check %+v has no rules", c)
			}
		}
	})
}
