package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// FuzzLoadEnv feeds one value to every setting: loading never panics, and a
// failure is one *Error that names the setting it failed on.
func FuzzLoadEnv(f *testing.F) {
	for _, seed := range []string{
		"", "abc", "420", "429", "-1", "true", "OFF", "100/minute,1000/hour", "5/15m",
		"9223372036854775807/second", "1/0s", "30", "30s", "-30s", "1e9", "gcra", "both",
		"a:b", "\x00", "\xff\xfe", strings.Repeat("9", 5000),
	} {
		f.Add(seed)
	}
	var s Settings
	names := map[string]bool{}
	for _, v := range s.Vars() {
		names[v.Env] = true
	}
	f.Fuzz(func(t *testing.T, value string) {
		for name := range names {
			lookup := env(map[string]string{name: value})
			_, _, err := LoadSettings(Sources{Lookup: lookup})
			if err == nil {
				continue
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("LoadSettings(%s=%q) error %v is not a *Error", name, value, err)
			}
			if cerr.Setting != name {
				t.Fatalf("LoadSettings(%s=%q) error names %q", name, value, cerr.Setting)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("LoadSettings(%s=%q) error is %d bytes long", name, value, len(err.Error()))
			}
		}
	})
}

// FuzzParseFile checks that any file content either parses or returns one
// line that names the file, and that whatever parses also loads or
// returns a *Error, and validates as a policy or returns errors that each
// name a setting.
func FuzzParseFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"settings:\n  status_code: 429\n",
		"settings:\n  default_limit: [1/s, 2/m]\nroutes: []\n",
		"settings: &a\n  enabled: *a\n",
		"settings:\n  x: &v [a, b]\n  y: *v\n",
		"settings: [\n",
		"a: &a [*a]\n",
		"settings:\n  enabled: !!binary aGVsbG8=\n",
		"- 1\n- 2\n",
		"settings: {? [a]: b}\n",
		"routes:\n  - pattern: GET /x\n    limits: [10/minute]\n    cost: abc\n",
		"routes:\n  - pattern: GET /x\n    cots: 5\n",
		"routes:\n  - pattern: GET /x\n    cost: 1.5\n    burst: -3\n    algorithm: gcra\n",
		"routes:\n  - pattern: GET /x\n    algorithm: sliding_window\n    burst: 50\n",
		"routes:\n  pattern: GET /x\n",
		"routes: [GET /x]\nexclude: /healthz\n",
		"groups:\n  - &g {prefix: /a, cost: 2}\n  - <<: *g\n    prefix: /b\n",
		"groups:\n  - prefix: /a\n    routes:\n      - pattern: GET /a/b\n        limits: 5/m\n",
		"routes: &r\n  - pattern: GET /x\n    limits: *r\n",
		"routes:\n  - pattern: GET /x\n    cost: 1\n    cost: 2\n",
		"tiers:\n  levels:\n    - nmae: free\n",
		"<<: {routes: []}\n",
		"routes:\n  - <<: [*x]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("fuzz.yaml", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fuzz.yaml: ") && !strings.HasPrefix(msg, "config file fuzz.yaml: ") {
				t.Fatalf("ParseFile error %q does not start with the file", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("ParseFile error %q has several lines", msg)
			}
			return
		}
		_, _, err = LoadSettings(Sources{File: file})
		var cerr *Error
		if err != nil && !errors.As(err, &cerr) {
			t.Fatalf("LoadSettings error %v is not a *Error", err)
		}
		err = file.Policy.Validate()
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !policySetting.MatchString(line) {
				t.Fatalf("Validate error line %q names no setting", line)
			}
		}
	})
}

// policySetting matches a policy error that starts with the setting it is
// about, such as "routes[0].cost: " or "groups[1].routes[0].burst: ".
var policySetting = regexp.MustCompile(
	`^(default_limits|(exclude|include)\[\d+\]|(groups\[\d+\]\.)?routes\[\d+\]\.\w+|groups\[\d+\]\.\w+): `)
