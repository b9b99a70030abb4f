package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// route starts a file with one route, so a test adds the fields under test.
const route = "routes:\n  - pattern: GET /x\n    limits: [10/minute]\n"

func TestParseFileShapeErrors(t *testing.T) {
	t.Parallel()
	const routeFields = "use pattern, name, limits, cost, scope, algorithm, burst, delay or max_wait"
	tests := []struct {
		name string
		text string
		want string // the whole message
	}{
		{"cost not a number", route + "    cost: abc\n",
			`calm.yaml: line 4: routes[0].cost="abc": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"cost fraction", route + "    cost: 1.5\n",
			`calm.yaml: line 4: routes[0].cost="1.5": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"cost quoted", route + "    cost: \"5\"\n",
			`calm.yaml: line 4: routes[0].cost="5": invalid: want a whole number of 0 or more, ` +
				`such as 5, without quotes`},
		{"cost empty", route + "    cost: ''\n",
			`calm.yaml: line 4: routes[0].cost="": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"cost bool", route + "    cost: true\n",
			`calm.yaml: line 4: routes[0].cost="true": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"cost too large", route + "    cost: 99999999999999999999\n",
			`calm.yaml: line 4: routes[0].cost="99999999999999999999": invalid: want a whole ` +
				`number of 0 or more, such as 5`},
		{"cost list", route + "    cost: [1]\n",
			`calm.yaml: line 4: routes[0].cost: invalid: want a whole number of 0 or more, ` +
				`such as 5, not a list`},
		{"burst not a number", route + "    burst: lots\n",
			`calm.yaml: line 4: routes[0].burst="lots": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"group cost", "groups:\n  - prefix: /a\n    cost: x\n",
			`calm.yaml: line 3: groups[0].cost="x": invalid: want a whole number of 0 or more, ` +
				`such as 5`},
		{"nested route cost", "groups:\n  - prefix: /a\n    routes:\n      - pattern: GET /a/b\n" +
			"        cost: 2.5\n",
			`calm.yaml: line 5: groups[0].routes[0].cost="2.5": invalid: want a whole number of ` +
				`0 or more, such as 5`},
		{"unknown route field", route + "    cots: 5\n",
			`calm.yaml: line 4: routes[0]: unknown setting "cots" (did you mean "cost"?): ` +
				routeFields},
		{"unknown route field far", route + "    weight: 5\n",
			`calm.yaml: line 4: routes[0]: unknown setting "weight": ` + routeFields},
		{"route field case", route + "    Limits: [1/s]\n",
			`calm.yaml: line 4: routes[0]: unknown setting "Limits" (did you mean "limits"?): ` +
				routeFields},
		{"unknown group field", "groups:\n  - prefix: /a\n    budgt: [1/m]\n",
			`calm.yaml: line 3: groups[0]: unknown setting "budgt" (did you mean "budget"?): ` +
				`use prefix, name, limits, budget, cost, scope, algorithm or routes`},
		{"burst on a group", "groups:\n  - prefix: /a\n    burst: 5\n",
			`calm.yaml: line 3: groups[0]: unknown setting "burst": ` +
				`use prefix, name, limits, budget, cost, scope, algorithm or routes`},
		{"unknown top-level key", "routs:\n  - pattern: GET /x\n",
			`calm.yaml: line 1: unknown top-level setting "routs" (did you mean "routes"?): ` +
				`use settings, tiers, default_limits, exclude, include, routes or groups`},
		{"setting at top level", "algorithm: gcra\n",
			`calm.yaml: line 1: unknown top-level setting "algorithm" (did you mean ` +
				`"settings.algorithm"?): use settings, tiers, default_limits, exclude, include, ` +
				`routes or groups`},
		{"dashes for underscores", "default-limits: [1/s]\n",
			`calm.yaml: line 1: unknown top-level setting "default-limits" (did you mean ` +
				`"default_limits"?): use settings, tiers, default_limits, exclude, include, ` +
				`routes or groups`},
		{"limits not a list", "routes:\n  - pattern: GET /x\n    limits: 10/minute\n",
			`calm.yaml: line 3: routes[0].limits="10/minute": invalid: want a list, ` +
				`such as [10/minute]`},
		{"limits a mapping", "routes:\n  - pattern: GET /x\n    limits: {a: 1}\n",
			`calm.yaml: line 3: routes[0].limits: invalid: want a list, not a mapping`},
		{"limit item a list", "routes:\n  - pattern: GET /x\n    limits: [[1/s]]\n",
			`calm.yaml: line 3: routes[0].limits[0]: invalid: want text, not a list`},
		{"exclude not a list", "exclude: /healthz\n",
			`calm.yaml: line 1: exclude="/healthz": invalid: want a list, such as [/healthz]`},
		{"routes a mapping", "routes:\n  pattern: GET /x\n",
			`calm.yaml: line 2: routes: invalid: want a list, each item starting with "- ", ` +
				`not a mapping`},
		{"route a string", "routes: [GET /x]\n",
			`calm.yaml: line 1: routes[0]="GET /x": invalid: want a mapping of pattern, name, ` +
				`limits, cost, scope, algorithm, burst, delay and max_wait, such as {pattern: GET /x}`},
		{"pattern a list", "routes:\n  - pattern: [GET /x]\n",
			`calm.yaml: line 2: routes[0].pattern: invalid: want text, not a list`},
		{"pattern a mapping", "routes:\n  - pattern: {a: 1}\n",
			`calm.yaml: line 2: routes[0].pattern: invalid: want text, not a mapping`},
		{"duplicate route field", route + "    cost: 1\n    cost: 2\n",
			`calm.yaml: line 5: routes[0].cost: set twice, also on line 4: keep one`},
		{"duplicate top-level key", "routes: []\nroutes: []\n",
			`calm.yaml: line 2: routes: set twice, also on line 1: keep one`},
		{"top level a list", "- 1\n- 2\n",
			`calm.yaml: line 1: invalid: want a mapping of top-level settings such as ` +
				`"routes:", not a list`},
		{"top level text", "hello\n",
			`calm.yaml: line 1: invalid: want a mapping of top-level settings such as ` +
				`"routes:", not text`},
		{"key a list", "routes:\n  - [a]: 1\n",
			`calm.yaml: line 2: routes[0]: invalid: want a setting name, not a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseFile("calm.yaml", []byte(tt.text))
			if err == nil {
				t.Fatalf("ParseFile = nil error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("ParseFile error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestParseFileShapeAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
	}{
		{"whole float cost", route + "    cost: 2.0\n"},
		{"hex cost", route + "    cost: 0x10\n"},
		{"null cost", route + "    cost: ~\n"},
		{"null routes", "routes:\n"},
		{"number as pattern", "routes:\n  - pattern: 5\n"},
		{"anchor and alias", "groups:\n  - prefix: /a\n    limits: &l [1/s]\n" +
			"routes:\n  - pattern: GET /x\n    limits: *l\n"},
		{"merge key", "groups:\n  - &g\n    prefix: /a\n    cost: 2\n  - <<: *g\n    prefix: /b\n"},
		{"merge list", "groups:\n  - &a {prefix: /a}\n  - &b {cost: 3}\n  - <<: [*a, *b]\n    prefix: /c\n"},
		{"tiers left to their package", "tiers:\n  anything: [1]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseFile("calm.yaml", []byte(tt.text)); err != nil {
				t.Errorf("ParseFile: %v", err)
			}
		})
	}
}

// tierSample is the type of a section that another package decodes.
type tierSample struct {
	Routes []string `yaml:"routes"`
	Levels []struct {
		Name   string   `yaml:"name"`
		Limits []string `yaml:"limits"`
	} `yaml:"levels"`
	Weights map[string]int64 `yaml:"weights"`
	Wait    durationField    `yaml:"wait"`
	On      bool             `yaml:"on"`
}

type durationField struct {
	Max yaml.Node `yaml:"max"`
}

func TestCheckSection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want string // the whole message; empty when the section fits
	}{
		{"fits", "routes: [GET /x]\nlevels:\n  - name: free\n    limits: [1/s]\n", ""},
		{"unknown key", "levels:\n  - nmae: free\n",
			`calm.yaml: line 2: tiers.levels[0]: unknown setting "nmae" (did you mean "name"?): ` +
				`use name or limits`},
		{"map value", "weights:\n  free: x\n",
			`calm.yaml: line 2: tiers.weights.free="x": invalid: want a whole number of 0 or ` +
				`more, such as 5`},
		{"bool", "on: maybe\n", `calm.yaml: line 1: tiers.on="maybe": invalid: want true or false`},
		{"opaque node", "wait:\n  max: [anything]\n", ""},
		{"not a mapping", "[a]\n",
			`calm.yaml: line 1: tiers: invalid: want a mapping of routes, levels, weights, wait ` +
				`and on, not a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var node yaml.Node
			if err := yaml.Unmarshal([]byte(tt.text), &node); err != nil {
				t.Fatalf("yaml.Unmarshal: %v", err)
			}
			err := CheckSection("calm.yaml", "tiers", &node, tierSample{})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("CheckSection error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseFileAliasCycle(t *testing.T) {
	t.Parallel()
	// Aliases that refer to their own ancestor, and a tree of aliases that
	// expands exponentially, end in an error instead of a hang.
	for _, text := range []string{
		"routes: &r\n  - pattern: GET /x\n    limits: *r\n",
		"tiers:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" +
			"  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
			"  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
			"exclude: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
	} {
		_, err := ParseFile("calm.yaml", []byte(text))
		if err == nil || !strings.HasPrefix(err.Error(), "calm.yaml: ") {
			t.Errorf("ParseFile(%q) error = %v, want one naming calm.yaml", text, err)
		}
	}
}
