package policy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

func int64p(n int64) *int64 { return &n }

// demoConfig resembles the gateway's demo API.
func demoConfig() Config {
	return Config{
		DefaultLimits: []string{"100/minute", "1000/hour"},
		Routes: []Route{
			{Pattern: "GET /public/products", Limits: []string{"100/minute"}},
			{Pattern: "GET /users/{id}", Limits: []string{"20/minute"}, Name: "users"},
		},
		Groups: []Group{
			{
				Prefix: "/auth",
				Limits: []string{"5/minute"},
				Routes: []Route{
					{Pattern: "POST /auth/login", Limits: []string{"3/minute,10/hour"}},
				},
			},
			{
				Prefix: "/api",
				Budget: []string{"100/minute"},
				Routes: []Route{
					{Pattern: "POST /api/reports", Cost: int64p(10)},
					{Pattern: "GET /api/test", Name: "test"},
					{Pattern: "GET /api/me", Limits: []string{"60/minute", "500/hour"}},
				},
			},
		},
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	p, err := New(demoConfig())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name, method, target, appPattern string
		limited                          bool
		endpoint, policy                 string
		cost                             int64
		checks                           int
	}{
		{"excluded healthz", "GET", "/healthz", "", false, "", "", 0, 0},
		{"excluded metrics", "GET", "/metrics", "", false, "", "", 0, 0},
		{"route", "GET", "/public/products", "", true, "GET /public/products", "GET /public/products", 1, 1},
		{"HEAD matches GET route", "HEAD", "/public/products", "", true, "GET /public/products", "GET /public/products", 1, 1},
		{"wildcard route", "GET", "/users/42", "", true, "GET /users/{id}", "users", 1, 1},
		{"group override", "POST", "/auth/login", "", true, "POST /auth/login", "POST /auth/login", 1, 1},
		{"group other method", "GET", "/auth/login", "", true, "/auth/*", "/auth", 1, 1},
		{"group unknown path", "POST", "/auth/reset/abc", "", true, "/auth/*", "/auth", 1, 1},
		{"group app pattern", "POST", "/auth/logout", "POST /auth/logout", true, "POST /auth/logout", "/auth", 1, 1},
		{"group prefix itself", "GET", "/auth", "", true, "/auth/*", "/auth", 1, 1},
		{"not a group", "GET", "/authors", "", true, "*", "default", 1, 1},
		{"budget route with cost", "POST", "/api/reports", "", true, "POST /api/reports", "default", 10, 2},
		{"budget route with limits", "GET", "/api/me", "", true, "GET /api/me", "GET /api/me", 1, 2},
		{"budget unknown path", "GET", "/api/other", "", true, "/api/*", "default", 1, 2},
		{"renamed inherited limits", "GET", "/api/test", "", true, "GET /api/test", "test", 1, 2},
		{"unclean path", "POST", "/auth/../auth//login", "", true, "POST /auth/login", "POST /auth/login", 1, 1},
		{"catch-all", "GET", "/random/1234", "", true, "*", "default", 1, 1},
		{"app pattern", "GET", "/items/7", "GET /items/{id}", true, "GET /items/{id}", "default", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tt.method, tt.target, nil)
			m := p.Match(r, tt.appPattern)
			if m.Limited != tt.limited {
				t.Fatalf("Match(%s %s).Limited = %v, want %v", tt.method, tt.target, m.Limited, tt.limited)
			}
			if !tt.limited {
				return
			}
			if m.Endpoint != tt.endpoint {
				t.Errorf("Endpoint = %q, want %q", m.Endpoint, tt.endpoint)
			}
			if m.Policy() != tt.policy {
				t.Errorf("Policy() = %q, want %q", m.Policy(), tt.policy)
			}
			if m.Cost != tt.cost {
				t.Errorf("Cost = %d, want %d", m.Cost, tt.cost)
			}
			checks := m.AppendChecks(nil, "client")
			if len(checks) != tt.checks {
				t.Fatalf("AppendChecks gave %d checks, want %d", len(checks), tt.checks)
			}
			for _, c := range checks {
				if c.Client != "client" || c.Scope != calm.ScopeUser {
					t.Errorf("check %+v: want client %q in scope user", c, "client")
				}
			}
		})
	}
}

func TestMatchBudgetSharesOneEndpoint(t *testing.T) {
	t.Parallel()
	p, err := New(demoConfig())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a := p.Match(httptest.NewRequest("POST", "/api/reports", nil), "").AppendChecks(nil, "c")
	b := p.Match(httptest.NewRequest("GET", "/api/me", nil), "").AppendChecks(nil, "c")
	if a[1].Endpoint != b[1].Endpoint || a[1].Policy != "/api-budget" {
		t.Errorf("budget checks %+v and %+v: want one shared endpoint with policy /api-budget", a[1], b[1])
	}
	if a[0].Endpoint == b[0].Endpoint {
		t.Errorf("endpoint checks share endpoint %q, want distinct", a[0].Endpoint)
	}
}

func TestMatchIncludeExclude(t *testing.T) {
	t.Parallel()
	p, err := New(Config{
		Exclude: []string{"/static/", "GET /api/status"},
		Include: []string{"/api/", "/static/"},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name, method, target string
		limited              bool
	}{
		{"included", "GET", "/api/users", true},
		{"outside include", "GET", "/home", false},
		{"default exclude replaced", "GET", "/healthz", false},
		{"exclude beats include", "GET", "/static/app.js", false},
		{"excluded method only", "GET", "/api/status", false},
		{"other method limited", "POST", "/api/status", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := p.Match(httptest.NewRequest(tt.method, tt.target, nil), "")
			if m.Limited != tt.limited {
				t.Errorf("Match(%s %s).Limited = %v, want %v", tt.method, tt.target, m.Limited, tt.limited)
			}
		})
	}
}

func TestMatchEmptyExcludeLimitsHealthz(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Exclude: []string{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if m := p.Match(httptest.NewRequest("GET", "/healthz", nil), ""); !m.Limited {
		t.Errorf("Match(/healthz).Limited = false with an empty exclude list, want true")
	}
}

func TestMatchEndpointScope(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Routes: []Route{{Pattern: "GET /search", Limits: []string{"50/second"}, Scope: "endpoint"}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	checks := p.Match(httptest.NewRequest("GET", "/search", nil), "").AppendChecks(nil, "client")
	if len(checks) != 1 || checks[0].Scope != calm.ScopeEndpoint || checks[0].Client != "" {
		t.Errorf("checks = %+v, want one endpoint-scope check without a client", checks)
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string // every fragment must appear in the error
	}{
		{"bad default", Config{DefaultLimits: []string{"10/fortnight"}}, []string{"default_limits", `"10/fortnight"`}},
		{"zero rule", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"0/minute"}}}},
			[]string{"routes[0].limits", `"0/minute"`}},
		{"missing pattern", Config{Routes: []Route{{Limits: []string{"1/minute"}}}}, []string{"routes[0].pattern", "missing"}},
		{"bad pattern", Config{Routes: []Route{{Pattern: "GET  users"}}}, []string{"routes[0].pattern", `"GET  users"`}},
		{"duplicate pattern", Config{Routes: []Route{{Pattern: "/a"}, {Pattern: "/a"}}},
			[]string{"routes[1].pattern", "routes[0]"}},
		{"conflicting patterns", Config{Routes: []Route{{Pattern: "/a/{x}"}, {Pattern: "/{y}/b"}}},
			[]string{"routes[1].pattern", "conflicts"}},
		{"negative cost", Config{Routes: []Route{{Pattern: "/a", Cost: int64p(-1)}}},
			[]string{"routes[0].cost", "-1", "0 for free"}},
		{"bad scope", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"1/s"}, Scope: "planet"}}},
			[]string{"routes[0].scope", `"planet"`, "user or endpoint"}},
		{"bad algorithm", Config{Groups: []Group{{Prefix: "/a", Algorithm: "magic"}}},
			[]string{"groups[0].algorithm", `"magic"`}},
		{"bad name", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"1/s"}, Name: `say "hi"`}}},
			[]string{"routes[0].name", "quotes"}},
		{"relative prefix", Config{Groups: []Group{{Prefix: "auth"}}}, []string{"groups[0].prefix", "must start with /"}},
		{"root prefix", Config{Groups: []Group{{Prefix: "/"}}}, []string{"groups[0].prefix", "default_limits"}},
		{"wildcard prefix", Config{Groups: []Group{{Prefix: "/a/{id}"}}}, []string{"groups[0].prefix", "wildcards"}},
		{"duplicate prefix", Config{Groups: []Group{{Prefix: "/a"}, {Prefix: "/a/"}}}, []string{"groups[1].prefix", "groups[0]"}},
		{"route outside group", Config{Groups: []Group{{Prefix: "/auth", Routes: []Route{{Pattern: "POST /login"}}}}},
			[]string{"groups[0].routes[0].pattern", "outside", `"/auth"`}},
		{"bad exclude", Config{Exclude: []string{"healthz"}}, []string{"exclude[0]", `"healthz"`}},
		{"bad include", Config{Include: []string{"GET"}}, []string{"include[0]"}},
		{"negative burst", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"1/s"}, Burst: -2}}},
			[]string{"routes[0].burst", "-2"}},
		{"cost above route capacity", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"5/minute"},
			Cost: int64p(10)}}},
			[]string{"routes[0].cost", "cost 10", "capacity 5", "5/minute", "routes[0].limits", "at most 5"}},
		{"cost above default capacity", Config{DefaultLimits: []string{"100/minute,3/second"},
			Routes: []Route{{Pattern: "/a", Cost: int64p(4)}}},
			[]string{"routes[0].cost", "cost 4", "3/second", "default_limits"}},
		{"cost above burst of bucket", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"100/minute"},
			Algorithm: "token_bucket", Burst: 5, Cost: int64p(6)}}},
			[]string{"routes[0].cost", "capacity 5", "or burst"}},
		{"cost above default bucket capacity", Config{DefaultAlgorithm: kindp(algorithm.GCRA),
			Routes: []Route{{Pattern: "/a", Limits: []string{"10/minute"}, Cost: int64p(30)}}},
			[]string{"routes[0].cost", "capacity 10", "raise the rule's request count or burst"}},
		{"group cost above group limits", Config{Groups: []Group{{Prefix: "/a", Limits: []string{"2/second"},
			Cost: int64p(3)}}},
			[]string{"groups[0].cost", "cost 3", "groups[0].limits"}},
		{"route cost above group budget", Config{Groups: []Group{{Prefix: "/a", Budget: []string{"50/minute"},
			Routes: []Route{{Pattern: "POST /a/b", Cost: int64p(60)}}}}},
			[]string{"groups[0].routes[0].cost", "cost 60", "groups[0].budget"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, frag := range tt.want {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("Validate() = %q, want it to contain %q", err, frag)
				}
			}
		})
	}
}

func kindp(k algorithm.Kind) *algorithm.Kind { return &k }

// TestNewBurstOneError checks that a burst the algorithm ignores, or a
// negative one, gives one error about the burst and none about the cost.
func TestNewBurstOneError(t *testing.T) {
	t.Parallel()
	const buckets = "token_bucket, leaky_bucket, leaky_queue or gcra"
	tests := []struct {
		name string
		cfg  Config
		want []string // every fragment must appear in the one error line
	}{
		{"window route with burst and cost", Config{Routes: []Route{{Pattern: "/a",
			Algorithm: "sliding_window", Limits: []string{"10/minute"}, Burst: 50, Cost: int64p(30)}}},
			[]string{"routes[0].burst: ", "burst 50", "algorithm sliding_window", buckets}},
		{"fixed window route with burst", Config{Routes: []Route{{Pattern: "/a",
			Algorithm: "fixed_window", Limits: []string{"10/minute"}, Burst: 50}}},
			[]string{"routes[0].burst: ", "algorithm fixed_window", buckets}},
		{"default window algorithm", Config{DefaultAlgorithm: kindp(algorithm.SlidingWindow),
			Routes: []Route{{Pattern: "/a", Limits: []string{"10/minute"}, Burst: 50, Cost: int64p(30)}}},
			[]string{"routes[0].burst: ", "default algorithm sliding_window", "RATELIMIT_ALGORITHM",
				buckets}},
		{"inherited limits", Config{DefaultAlgorithm: kindp(algorithm.FixedWindow),
			Routes: []Route{{Pattern: "/a", Burst: 7}}},
			[]string{"routes[0].burst: ", "default algorithm fixed_window"}},
		{"group window algorithm", Config{DefaultAlgorithm: kindp(algorithm.TokenBucket),
			Groups: []Group{{Prefix: "/g", Algorithm: "fixed_window",
				Routes: []Route{{Pattern: "GET /g/x", Limits: []string{"10/minute"}, Burst: 20}}}}},
			[]string{"groups[0].routes[0].burst: ", "groups[0].algorithm fixed_window", buckets}},
		{"negative burst of bucket", Config{Routes: []Route{{Pattern: "/a", Algorithm: "token_bucket",
			Limits: []string{"10/minute"}, Burst: -3}}},
			[]string{"routes[0].burst: ", "burst -3 is negative"}},
		{"negative burst inherited limits", Config{Routes: []Route{{Pattern: "/a",
			Algorithm: "gcra", Burst: -3, Cost: int64p(2)}}},
			[]string{"routes[0].burst: ", "burst -3 is negative"}},
		{"negative burst default bucket", Config{DefaultAlgorithm: kindp(algorithm.LeakyBucket),
			Routes: []Route{{Pattern: "/a", Limits: []string{"10/minute"}, Burst: -3}}},
			[]string{"routes[0].burst: ", "burst -3 is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want a burst error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("Validate() = %q, want one line", msg)
			}
			if strings.Contains(msg, "cost") {
				t.Errorf("Validate() = %q, want no word about the cost", msg)
			}
			for _, frag := range tt.want {
				if !strings.Contains(msg, frag) {
					t.Errorf("Validate() = %q, want it to contain %q", msg, frag)
				}
			}
		})
	}
}

// TestNewWindowCostFix checks that the message for a cost above the
// capacity of a window algorithm does not suggest a burst, which that
// algorithm ignores.
func TestNewWindowCostFix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"route algorithm", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"5/minute"},
			Algorithm: "fixed_window", Cost: int64p(6)}}}},
		{"default algorithm", Config{DefaultAlgorithm: kindp(algorithm.SlidingWindow),
			Routes: []Route{{Pattern: "/a", Limits: []string{"5/minute"}, Cost: int64p(6)}}}},
		{"group algorithm", Config{DefaultAlgorithm: kindp(algorithm.GCRA),
			Groups: []Group{{Prefix: "/g", Algorithm: "sliding_window",
				Routes: []Route{{Pattern: "GET /g/x", Limits: []string{"5/minute"}, Cost: int64p(6)}}}}}},
	}
	const want = "lower the cost to at most 5 or raise the rule's request count"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Validate() = %v, want an error that ends in %q", err, want)
			}
		})
	}
}

// TestRouteRunsGroupAlgorithm checks that a route with rules of its own
// inside a group runs the group's algorithm, as Route.Algorithm documents.
func TestRouteRunsGroupAlgorithm(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Groups: []Group{{Prefix: "/g", Algorithm: "token_bucket",
		Routes: []Route{{Pattern: "GET /g/x", Limits: []string{"5/minute"}, Burst: 9}}}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	checks := p.Match(httptest.NewRequest("GET", "/g/x", nil), "").AppendChecks(nil, "c")
	if len(checks) != 1 {
		t.Fatalf("AppendChecks = %+v, want one check", checks)
	}
	if got := checks[0].Algorithm; got == nil || *got != algorithm.TokenBucket {
		t.Errorf("check algorithm = %v, want token_bucket", got)
	}
	if checks[0].Burst != 9 {
		t.Errorf("check burst = %d, want 9", checks[0].Burst)
	}
}

func TestNewAcceptsCostWithinCapacity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"cost equals capacity", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"5/minute"},
			Cost: int64p(5)}}}},
		{"burst without algorithm", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"5/minute"},
			Burst: 20, Cost: int64p(10)}}}},
		{"burst of default bucket", Config{DefaultAlgorithm: kindp(algorithm.TokenBucket),
			Routes: []Route{{Pattern: "/a", Limits: []string{"10/minute"}, Burst: 50, Cost: int64p(30)}}}},
		{"bucket route under window default", Config{DefaultAlgorithm: kindp(algorithm.SlidingWindow),
			Routes: []Route{{Pattern: "/a", Algorithm: "gcra", Limits: []string{"10/minute"},
				Burst: 50, Cost: int64p(30)}}}},
		{"group bucket under window default", Config{DefaultAlgorithm: kindp(algorithm.FixedWindow),
			Groups: []Group{{Prefix: "/g", Algorithm: "leaky_queue",
				Routes: []Route{{Pattern: "GET /g/x", Burst: 20, Cost: int64p(15)}}}}}},
		{"free request", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"1/minute"},
			Cost: int64p(0)}}}},
		{"cost function", Config{Routes: []Route{{Pattern: "/a", Limits: []string{"1/minute"},
			Cost: int64p(5), CostFunc: func(*http.Request) (int64, error) { return 1, nil }}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.cfg.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestNewReportsEveryError(t *testing.T) {
	t.Parallel()
	err := Config{
		DefaultLimits: []string{"x"},
		Routes:        []Route{{Pattern: "/a", Cost: int64p(-5)}},
	}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want two errors")
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != 2 {
		t.Errorf("Validate() reported %d lines, want 2: %q", lines, err)
	}
}

func TestNewReportsGroupAlgorithmOnce(t *testing.T) {
	t.Parallel()
	err := Config{Groups: []Group{{Prefix: "/g", Algorithm: "magic",
		Budget: []string{"50/minute"}}}}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want an algorithm error")
	}
	if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "groups[0].algorithm: ") {
		t.Errorf("Validate() = %q, want one groups[0].algorithm error", err)
	}
}

const exampleYAML = `
default_limits: [100/minute, 1000/hour]
exclude: [/healthz, /readyz, /metrics, /static/]
routes:
  - pattern: GET /public/products
    limits: [100/minute]
  - pattern: GET /public/search
    limits: ["50/minute"]
groups:
  - prefix: /auth
    name: auth
    limits: [5/minute]
    routes:
      - pattern: POST /auth/login
        limits: [3/minute, 10/hour]
  - prefix: /api
    budget: [100/minute]
    routes:
      - pattern: POST /api/reports
        cost: 10
      - pattern: GET /api/export
        limits: [5/minute]
        scope: user
        algorithm: token_bucket
`

func TestConfigDecodesFromYAML(t *testing.T) {
	t.Parallel()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := c.Groups[1].Routes[0].Cost; got == nil || *got != 10 {
		t.Errorf("groups[1].routes[0].cost = %v, want 10", got)
	}
	p, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	m := p.Match(httptest.NewRequest("POST", "/auth/login", nil), "")
	if m.Policy() != "POST /auth/login" {
		t.Errorf("login policy = %q, want %q", m.Policy(), "POST /auth/login")
	}
	m = p.Match(httptest.NewRequest("GET", "/auth/me", nil), "")
	if m.Policy() != "auth" {
		t.Errorf("group policy = %q, want auth", m.Policy())
	}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	d, err := Declare(Route{Limits: []string{"5/minute"}, Cost: int64p(5)})
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	m := d.Match("GET /x")
	checks := m.AppendChecks(nil, "c")
	if m.Cost != 5 || len(checks) != 1 || checks[0].Policy != "GET /x" {
		t.Errorf("Match = %+v, checks %+v; want cost 5 and policy %q", m, checks, "GET /x")
	}
	if _, err := Declare(Route{Limits: []string{"5/minute"}, Cost: int64p(-1)}); err == nil ||
		!strings.Contains(err.Error(), "cost") {
		t.Errorf("Declare(cost -1) = %v, want a cost error", err)
	}
	if _, err := Declare(Route{Limits: []string{"5/minute"}, Cost: int64p(6)}); err == nil ||
		!strings.Contains(err.Error(), "capacity 5") {
		t.Errorf("Declare(cost 6 on 5/minute) = %v, want a capacity error", err)
	}
	if _, err := Declare(Route{}); err == nil {
		t.Errorf("Declare(no limits) = nil, want an error")
	}
}
