package policy

import (
	"slices"
	"testing"
)

// variantConfig has routes whose paths have variants an application may
// serve as the same resource.
func variantConfig(foldCase bool) Config {
	return Config{
		DefaultLimits: []string{"1000/minute"},
		Routes: []Route{
			{Pattern: "GET /api/test", Limits: []string{"2/minute"}},
			{Pattern: "GET /files/", Limits: []string{"50/minute"}},
			{Pattern: "GET /files/{name}", Limits: []string{"10/minute"}},
			{Pattern: "GET /twin", Limits: []string{"5/minute"}},
			{Pattern: "GET /twin/", Limits: []string{"7/minute"}},
			{Pattern: "GET /Mixed/Case", Limits: []string{"3/minute"}},
			{Pattern: "GET /dup/A", Limits: []string{"1/minute"}},
			{Pattern: "GET /dup/a", Limits: []string{"2/minute"}},
		},
		Groups:   []Group{{Prefix: "/admin", Limits: []string{"4/minute"}}},
		FoldCase: foldCase,
	}
}

// checkEndpoints returns the endpoints of the checks of a request.
func checkEndpoints(t *testing.T, p *Policy, target string) []string {
	t.Helper()
	r := readRequest("GET", target, "calm.test")
	if r == nil {
		t.Fatalf("request target %q does not parse", target)
	}
	m := p.Match(r, "")
	if !m.Limited {
		return nil
	}
	var endpoints []string
	for _, c := range m.AppendChecks(nil, "client") {
		endpoints = append(endpoints, c.Endpoint)
	}
	return endpoints
}

func TestMatchPathVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, target string
		foldCase     bool
		want         []string // endpoints of the checks; nil when not limited
	}{
		{"route itself", "/api/test", false, []string{"GET /api/test"}},
		{"encoded slash", "/api%2Ftest", false, []string{"GET /api/test"}},
		{"encoded slash lower case", "/api%2ftest", false, []string{"GET /api/test"}},
		{"encoded backslash", "/api%5Ctest", false, []string{"GET /api/test"}},
		{"backslash", `/api\test`, false, []string{"GET /api/test"}},
		{"trailing slash", "/api/test/", false, []string{"GET /api/test"}},
		{"parameter", "/api/test;x", false, []string{"GET /api/test"}},
		{"parameter inside", "/api;v=1/test", false, []string{"GET /api/test"}},
		{"encoded dot segment", "/api/x/%2e%2e/test", false, []string{"GET /api/test"}},
		{"upper case without folding", "/API/test", false, []string{CatchAllEndpoint}},
		{"upper case folded", "/API/test", true, []string{"GET /api/test"}},
		{"upper case and slash folded", "/API/Test/", true, []string{"GET /api/test"}},
		{"lower case of upper pattern", "/mixed/case", true, []string{"GET /Mixed/Case"}},
		{"patterns differing in case", "/dup/a", true, []string{"GET /dup/a"}},
		{"twin keeps its own limits", "/twin/", false, []string{"GET /twin/"}},
		{"twin with parameter", "/twin;x", false, []string{"GET /twin"}},
		{"prefix route and alias", "/files/a/", false, []string{"GET /files/", "GET /files/{name}"}},
		{"group folded", "/ADMIN/x", true, []string{"/admin/*"}},
		{"group by parameter", "/admin;x/y", false, []string{"/admin/*"}},
		{"excluded path", "/healthz", false, nil},
		{"variant of excluded path", "/healthz/", false, []string{CatchAllEndpoint}},
		{"root", "/", true, []string{CatchAllEndpoint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(variantConfig(tt.foldCase))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := checkEndpoints(t, p, tt.target); !slices.Equal(got, tt.want) {
				t.Errorf("GET %s (fold case %v): check endpoints %q, want %q",
					tt.target, tt.foldCase, got, tt.want)
			}
		})
	}
}

func TestMatchVariantCostAndBudget(t *testing.T) {
	t.Parallel()
	p, err := New(Config{
		Groups: []Group{{Prefix: "/a", Budget: []string{"100/minute"}, Routes: []Route{
			{Pattern: "GET /a/", Limits: []string{"50/minute"}},
			{Pattern: "GET /a/b", Limits: []string{"10/minute"}, Cost: int64p(5)},
		}}},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	m := p.Match(readRequest("GET", "/a/b/", "h"), "")
	if m.Endpoint != "GET /a/" {
		t.Errorf("Endpoint = %q, want the raw path's route GET /a/", m.Endpoint)
	}
	if m.Cost != 5 {
		t.Errorf("Cost = %d, want 5, the larger of the two routes' costs", m.Cost)
	}
	var endpoints []string
	for _, c := range m.AppendChecks(nil, "client") {
		endpoints = append(endpoints, c.Endpoint)
	}
	want := []string{"GET /a/", "budget /a", "GET /a/b"}
	if !slices.Equal(endpoints, want) {
		t.Errorf("check endpoints %q, want %q: the budget charged once", endpoints, want)
	}
}

func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b"},
		{"/a%2Fb%2f", "/a/b"},
		{"/a%5cb", "/a/b"},
		{`/a\b`, "/a/b"},
		{"/a;x=1/b;y", "/a/b"},
		{"/a/b/%2E%2e/c", "/a/c"},
		{"/a%2", "/a%2"},
		{"/%2F", "/"},
		{";x", "/"},
		{"/a%41", "/a%41"},
	}
	for _, tt := range tests {
		if got := canonicalPath(tt.in); got != tt.want {
			t.Errorf("canonicalPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFoldPattern(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"GET /Users/{ID}", "GET /users/{ID}"},
		{"Example.com/A", "Example.com/a"},
		{"/a/{Rest...}", "/a/{Rest...}"},
		{"POST /X/{$}", "POST /x/{$}"},
	}
	for _, tt := range tests {
		if got := foldPattern(tt.in); got != tt.want {
			t.Errorf("foldPattern(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
