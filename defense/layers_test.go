package defense

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

func rules(s string) []calm.Rule { return calm.MustParseRules(s) }

func TestChecksLayers(t *testing.T) {
	t.Parallel()
	gcra := algorithm.GCRA
	queue := algorithm.LeakyQueue
	user := calm.Check{Scope: calm.ScopeUser, Endpoint: "GET /items", Client: "c1",
		Rules: rules("10/minute,100/hour")}
	tests := []struct {
		name    string
		cfg     Config
		user    []calm.Check
		verdict Verdict
		want    []calm.Check
	}{
		{
			name: "defaults",
			user: []calm.Check{user},
			want: []calm.Check{
				user,
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "GET /items",
					Rules: rules("100/minute,1000/hour"), Delay: 1000},
				{Scope: calm.ScopeGlobal, Policy: GlobalPolicy, Rules: rules("50000/minute"), Delay: 50000},
			},
		},
		{
			name: "explicit endpoint rules",
			cfg: Config{EndpointRules: map[string][]calm.Rule{"GET /items": rules("500/minute")},
				GlobalRules: rules("10/second")},
			user: []calm.Check{user},
			want: []calm.Check{
				user,
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "GET /items",
					Rules: rules("500/minute"), Delay: 500},
				{Scope: calm.ScopeGlobal, Policy: GlobalPolicy, Rules: rules("10/second"), Delay: 10},
			},
		},
		{
			name: "layers off",
			cfg:  Config{EndpointMultiplier: -1, GlobalRules: []calm.Rule{}},
			user: []calm.Check{user},
			want: []calm.Check{user},
		},
		{
			name: "stacked checks share one endpoint check",
			cfg:  Config{EndpointMultiplier: 2, GlobalRules: []calm.Rule{}},
			user: []calm.Check{
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("10/minute"), Algorithm: &gcra, Burst: 4},
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Policy: "tier", Rules: rules("30/minute,5/second")},
				{Scope: calm.ScopeUser, Endpoint: "/b", Client: "c", Rules: rules("7/hour")},
				{Scope: calm.ScopeUser, Client: "c", Rules: rules("1000/day")},
			},
			want: []calm.Check{
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("10/minute"), Algorithm: &gcra, Burst: 4},
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Policy: "tier", Rules: rules("30/minute,5/second")},
				{Scope: calm.ScopeUser, Endpoint: "/b", Client: "c", Rules: rules("7/hour")},
				{Scope: calm.ScopeUser, Client: "c", Rules: rules("1000/day")},
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "/a",
					Rules: rules("60/minute,10/second"), Algorithm: &gcra, Burst: 8, Delay: 60},
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "/b", Rules: rules("14/hour"),
					Delay: 14},
			},
		},
		{
			name: "caller layers kept",
			user: []calm.Check{
				user,
				{Scope: calm.ScopeEndpoint, Endpoint: "GET /items", Rules: rules("3/second")},
				{Scope: calm.ScopeGlobal, Rules: rules("9/second")},
			},
			want: []calm.Check{
				user,
				{Scope: calm.ScopeEndpoint, Endpoint: "GET /items", Rules: rules("3/second")},
				{Scope: calm.ScopeGlobal, Rules: rules("9/second")},
			},
		},
		{
			name: "queue delay stays with the client",
			cfg:  Config{EndpointMultiplier: 3, GlobalRules: []calm.Rule{}},
			user: []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c",
				Rules: rules("10/minute"), Algorithm: &queue, Burst: 4, Delay: 2}},
			want: []calm.Check{
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c",
					Rules: rules("10/minute"), Algorithm: &queue, Burst: 4, Delay: 2},
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "/a",
					Rules: rules("30/minute"), Algorithm: &queue, Burst: 12, Delay: 30},
			},
		},
		{
			name:    "reduced queue delay",
			cfg:     Config{ReductionFactor: 0.25, GlobalRules: []calm.Rule{}},
			user:    []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("12/minute"), Burst: 8, Delay: 4}},
			verdict: Verdict{Allowed: true, Reduced: true},
			want: []calm.Check{
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("3/minute"), Burst: 2, Delay: 1},
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "/a",
					Rules: rules("30/minute"), Burst: 20, Delay: 30},
			},
		},
		{
			name:    "reduced",
			cfg:     Config{ReductionFactor: 0.25},
			user:    []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("10/minute,3/second"), Burst: 8}},
			verdict: Verdict{Allowed: true, Reduced: true},
			want: []calm.Check{
				{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("2/minute,1/second"), Burst: 2},
				{Scope: calm.ScopeEndpoint, Policy: EndpointPolicy, Endpoint: "/a",
					Rules: rules("25/minute,7/second"), Burst: 20, Delay: 25},
				{Scope: calm.ScopeGlobal, Policy: GlobalPolicy, Rules: rules("12500/minute"), Delay: 12500},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDefense(t, tt.cfg)
			got := d.Checks(nil, tt.user, tt.verdict)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Checks() =\n%s\nwant\n%s", formatChecks(got), formatChecks(tt.want))
			}
		})
	}
}

func formatChecks(checks []calm.Check) string {
	var b strings.Builder
	for _, c := range checks {
		alg := "default"
		if c.Algorithm != nil {
			alg = c.Algorithm.String()
		}
		b.WriteString("  " + string(c.Scope) + " " + c.Policy + " " + c.Endpoint + " " + c.Client + " " + alg)
		for _, r := range c.Rules {
			b.WriteString(" " + r.String())
		}
		if c.Burst != 0 {
			b.WriteString(" burst=" + strconv.FormatInt(c.Burst, 10))
		}
		if c.Delay != 0 {
			b.WriteString(" delay=" + strconv.FormatInt(c.Delay, 10))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestChecksLeavesInputAlone(t *testing.T) {
	t.Parallel()
	endpointRules := map[string][]calm.Rule{"/a": rules("500/minute")}
	d := newTestDefense(t, Config{EndpointRules: endpointRules})
	user := []calm.Check{
		{Scope: calm.ScopeUser, Endpoint: "/a", Client: "c", Rules: rules("10/minute")},
		{Scope: calm.ScopeUser, Endpoint: "/b", Client: "c", Rules: rules("10/minute")},
	}
	before := d.Checks(nil, user, Verdict{})
	got := d.Checks(nil, user, Verdict{Reduced: true})
	if user[0].Rules[0].Requests != 10 || user[1].Rules[0].Requests != 10 {
		t.Errorf("user rules after Checks = %v, %v, want 10/minute each", user[0].Rules, user[1].Rules)
	}
	if endpointRules["/a"][0].Requests != 500 {
		t.Errorf("EndpointRules after Checks = %v, want 500/minute", endpointRules["/a"])
	}
	if before[2].Rules[0].Requests != 500 || got[2].Rules[0].Requests != 250 {
		t.Errorf("endpoint rule = %v then %v, want 500 then 250", before[2].Rules, got[2].Rules)
	}
}

func TestChecksEndpointFromBaseRules(t *testing.T) {
	t.Parallel()
	d := newTestDefense(t, Config{})
	// Two clients of one endpoint whose tiers rewrote their rules: the
	// endpoint layer must come from the policy's rules for both.
	for _, tier := range []string{"5/minute", "1000/minute"} {
		user := []calm.Check{{
			Scope: calm.ScopeUser, Endpoint: "GET /api/tiered", Client: "c",
			Rules: rules(tier), BaseRules: rules("100/minute"),
		}}
		got := d.Checks(nil, user, Verdict{})
		if got[1].Scope != calm.ScopeEndpoint {
			t.Fatalf("tier %s: Checks()[1] =\n%s, want the endpoint layer", tier, formatChecks(got))
		}
		if got[1].Rules[0].Requests != 1000 {
			t.Errorf("tier %s: endpoint rule = %v, want 1000/minute (100/minute × 10)", tier, got[1].Rules)
		}
	}
}

func TestChecksAppendsToDst(t *testing.T) {
	t.Parallel()
	d := newTestDefense(t, Config{})
	dst := []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/other", Rules: rules("1/second")}}
	got := d.Checks(dst, []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/a", Rules: rules("1/second")}}, Verdict{})
	if len(got) != 4 {
		t.Fatalf("len(Checks()) = %d, want 4 (dst, user, endpoint, global)", len(got))
	}
	if got[0].Endpoint != "/other" || got[2].Endpoint != "/a" || got[2].Scope != calm.ScopeEndpoint {
		t.Errorf("Checks() =\n%s", formatChecks(got))
	}
}

func TestChecksMultiplierCapsAtValidLimit(t *testing.T) {
	t.Parallel()
	d := newTestDefense(t, Config{EndpointMultiplier: 1000000})
	huge := calm.Rule{Requests: 1 << 40, Window: time.Hour}
	got := d.Checks(nil, []calm.Check{{Scope: calm.ScopeUser, Endpoint: "/a", Rules: []calm.Rule{huge}}}, Verdict{})
	r := got[1].Rules[0]
	lim := algorithm.Limit{Quota: r.Requests, Window: r.Window.Microseconds()}
	if err := lim.Validate(); err != nil {
		t.Errorf("endpoint rule %d per hour: %v", r.Requests, err)
	}
}

func TestReduce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		factor float64
		n      int64
		want   int64
	}{
		{name: "half", factor: 0.5, n: 100, want: 50},
		{name: "rounds down", factor: 0.5, n: 5, want: 2},
		{name: "never below one", factor: 0.1, n: 3, want: 1},
		{name: "zero stays zero", factor: 0.5, n: 0, want: 0},
		{name: "factor one", factor: 1, n: 77, want: 77},
		{name: "large count", factor: 0.5, n: 1 << 52, want: 1 << 51},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDefense(t, Config{ReductionFactor: tt.factor})
			if got := d.reduce(tt.n); got != tt.want {
				t.Errorf("reduce(%d) with factor %v = %d, want %d", tt.n, tt.factor, got, tt.want)
			}
		})
	}
}

func BenchmarkChecks(b *testing.B) {
	d, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	user := []calm.Check{{Scope: calm.ScopeUser, Endpoint: "GET /items", Client: "c", Rules: rules("10/minute")}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var dst []calm.Check
		for pb.Next() {
			v := d.Admit(Request{})
			dst = d.Checks(dst[:0], user, v)
		}
	})
}
