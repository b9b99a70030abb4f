package identity

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/calm-limiter/calm"
)

// TierConfig is the "tiers" section of the config file:
//
//	tiers:
//	  routes: ["GET /api/tiered"]   # endpoints whose limits come from the tier
//	  anonymous: [5/minute]         # per client network, without verified identity
//	  levels:
//	    - {name: free, limits: [10/minute]}
//	    - {name: paid, limits: [100/minute]}
//	    - {name: enterprise, limits: [1000/minute]}
type TierConfig struct {
	// Routes lists the endpoints, as policy route patterns such as
	// "GET /api/tiered", whose per-client limits are replaced by the
	// client's tier limits. "*" selects every endpoint.
	Routes []string `yaml:"routes" json:"routes"`
	// Anonymous are the rules for requests without a verified identity on
	// those routes, counted per client network so that changing headers or
	// sending forged tokens buys nothing.
	Anonymous []string `yaml:"anonymous" json:"anonymous"`
	// Levels are the tiers. Names are matched without regard to case.
	Levels []TierLevel `yaml:"levels" json:"levels"`
}

// TierLevel is one tier and its rules.
type TierLevel struct {
	Name   string   `yaml:"name" json:"name"`
	Limits []string `yaml:"limits" json:"limits"`
}

// DefaultTierConfig returns the tiers used when the config file has no
// tiers section: free 10/minute, paid 100/minute, enterprise 1000/minute,
// anonymous 5/minute, applied to GET /api/tiered.
func DefaultTierConfig() TierConfig {
	return TierConfig{
		Routes:    []string{"GET /api/tiered"},
		Anonymous: []string{"5/minute"},
		Levels: []TierLevel{
			{Name: "free", Limits: []string{"10/minute"}},
			{Name: "paid", Limits: []string{"100/minute"}},
			{Name: "enterprise", Limits: []string{"1000/minute"}},
		},
	}
}

// Tiers maps verified tier claims to rules. It is immutable and safe for
// concurrent use.
type Tiers struct {
	levels    map[string][]calm.Rule
	names     []string // as configured
	lowest    string
	anonymous []calm.Rule
	routes    map[string]bool
	all       bool
}

// maxTiers bounds the number of tiers.
const maxTiers = 64

// NewTiers validates cfg and returns the tiers. The error names the tier
// or route and the bad value.
func NewTiers(cfg TierConfig) (*Tiers, error) {
	if len(cfg.Levels) == 0 {
		return nil, errors.New("tiers: no levels: list at least one, such as {name: free, limits: [10/minute]}")
	}
	if len(cfg.Levels) > maxTiers {
		return nil, fmt.Errorf("tiers: %d levels, want at most %d", len(cfg.Levels), maxTiers)
	}
	t := &Tiers{levels: map[string][]calm.Rule{}, routes: map[string]bool{}}
	for i, l := range cfg.Levels {
		name := strings.ToLower(strings.TrimSpace(l.Name))
		if name == "" || len(name) > 32 || !isToken(name) {
			return nil, fmt.Errorf("tiers.levels[%d]: invalid name %q: want 1 to 32 letters, "+
				"digits, '-' or '_'", i, l.Name)
		}
		if _, dup := t.levels[name]; dup {
			return nil, fmt.Errorf("tiers.levels[%d]: tier %q listed twice", i, name)
		}
		rules, err := parseLimitList(l.Limits)
		if err != nil {
			return nil, fmt.Errorf("tiers.levels[%d] (%s): %w", i, name, err)
		}
		t.levels[name] = rules
		t.names = append(t.names, name)
		if t.lowest == "" || lessGenerous(rules, t.levels[t.lowest]) {
			t.lowest = name
		}
	}
	if len(cfg.Anonymous) > 0 {
		rules, err := parseLimitList(cfg.Anonymous)
		if err != nil {
			return nil, fmt.Errorf("tiers.anonymous: %w", err)
		}
		t.anonymous = rules
	}
	for _, r := range cfg.Routes {
		r = strings.TrimSpace(r)
		if r == "" {
			return nil, errors.New("tiers.routes: empty route pattern")
		}
		if r == "*" {
			t.all = true
		}
		t.routes[r] = true
	}
	return t, nil
}

func parseLimitList(entries []string) ([]calm.Rule, error) {
	if len(entries) == 0 {
		return nil, errors.New("no limits: list rules such as [10/minute]")
	}
	var rules []calm.Rule
	for _, e := range entries {
		rs, err := calm.ParseRules(e)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rs...)
	}
	return rules, nil
}

// lessGenerous reports whether rule set a admits fewer requests per unit of
// time than b, comparing the tightest rule of each exactly (no division).
func lessGenerous(a, b []calm.Rule) bool {
	ra, rb := tightest(a), tightest(b)
	// ra.Requests/ra.Window < rb.Requests/rb.Window
	left := new(big.Int).Mul(big.NewInt(ra.Requests), big.NewInt(int64(rb.Window)))
	right := new(big.Int).Mul(big.NewInt(rb.Requests), big.NewInt(int64(ra.Window)))
	return left.Cmp(right) < 0
}

func tightest(rules []calm.Rule) calm.Rule {
	best := rules[0]
	for _, r := range rules[1:] {
		if lessGenerous([]calm.Rule{r}, []calm.Rule{best}) {
			best = r
		}
	}
	return best
}

// Lookup returns the tier for a verified claim value and its rules. An
// empty, unknown or non-string claim falls back to the lowest tier, the
// one whose tightest rule admits the fewest requests per second.
func (t *Tiers) Lookup(claim any) (string, []calm.Rule) {
	if s, ok := claim.(string); ok {
		name := strings.ToLower(strings.TrimSpace(s))
		if rules, ok := t.levels[name]; ok {
			return name, rules
		}
	}
	return t.lowest, t.levels[t.lowest]
}

// Lowest returns the name of the lowest tier.
func (t *Tiers) Lowest() string { return t.lowest }

// Names returns the tier names in configured order.
func (t *Tiers) Names() []string { return slices.Clone(t.names) }

// Rules returns the rules of a configured tier, or nil.
func (t *Tiers) Rules(name string) []calm.Rule { return t.levels[name] }

// Widest returns, for each window in base or in any tier, the largest
// request count among them. It sizes limits that belong to a tiered
// endpoint rather than to one client, so that no single client's tier can
// exhaust them.
func (t *Tiers) Widest(base []calm.Rule) []calm.Rule {
	out := slices.Clone(base)
	add := func(r calm.Rule) {
		for i := range out {
			if out[i].Window == r.Window {
				out[i].Requests = max(out[i].Requests, r.Requests)
				return
			}
		}
		out = append(out, r)
	}
	for _, name := range t.names {
		for _, r := range t.levels[name] {
			add(r)
		}
	}
	return out
}

// Anonymous returns the rules for requests without verified identity on
// tiered routes, or nil when none are configured.
func (t *Tiers) Anonymous() []calm.Rule { return t.anonymous }

// Routes returns the tiered endpoints in sorted order.
func (t *Tiers) Routes() []string {
	out := make([]string, 0, len(t.routes))
	for r := range t.routes {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Applies reports whether the endpoint's limits come from the tier.
func (t *Tiers) Applies(endpoint string) bool { return t.all || t.routes[endpoint] }

// DecodeTierConfig decodes the "tiers" section of a config file. Unknown
// keys are errors, so a misspelt key does not silently drop a tier. A node
// of kind zero (no section) returns ok false.
func DecodeTierConfig(node yaml.Node) (cfg TierConfig, ok bool, err error) {
	if node.Kind == 0 {
		return TierConfig{}, false, nil
	}
	text, err := yaml.Marshal(&node)
	if err != nil {
		return TierConfig{}, false, fmt.Errorf("tiers: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return TierConfig{}, false, fmt.Errorf("tiers: invalid: %v", err)
	}
	return cfg, true, nil
}
