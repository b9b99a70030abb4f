package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// env returns a lookup over a map, so tests need no os.Setenv.
func env(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	s := Defaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"Enabled", s.Enabled, true},
		{"Algorithm", s.Algorithm, algorithm.SlidingWindow},
		{"DefaultLimit", len(s.DefaultLimit), 2},
		{"FailOpen", s.FailOpen, true},
		{"KeyPrefix", s.KeyPrefix, "ratelimit"},
		{"KeyVersion", s.KeyVersion, "v1"},
		{"IncludeHeaders", s.IncludeHeaders, true},
		{"HeaderMode", s.HeaderMode, HeadersBoth},
		{"LogViolations", s.LogViolations, true},
		{"Environment", s.Environment, "development"},
		{"StatusCode", s.StatusCode, 420},
		{"MemoryMaxKeys", s.MemoryMaxKeys, 1000000},
		{"MemoryCleanupInterval", s.MemoryCleanupInterval, time.Minute},
		{"LogFormat", s.LogFormat, LogText},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("Defaults().%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	want := []calm.Rule{{Requests: 100, Window: time.Minute}, {Requests: 1000, Window: time.Hour}}
	if !slices.Equal(s.DefaultLimit, want) {
		t.Errorf("Defaults().DefaultLimit = %v, want %v", s.DefaultLimit, want)
	}
}

func TestLoadSettingsFromEnv(t *testing.T) {
	t.Parallel()
	s, values, err := LoadSettings(Sources{Lookup: env(map[string]string{
		"RATELIMIT_ENABLED":                 "off",
		"RATELIMIT_ALGORITHM":               "Token_Bucket",
		"RATELIMIT_DEFAULT_LIMIT":           "5/second, 20/15m",
		"RATELIMIT_MAX_WAIT":                "1500ms",
		"RATELIMIT_FAIL_OPEN":               "0",
		"RATELIMIT_KEY_PREFIX":              "rl",
		"RATELIMIT_KEY_VERSION":             "v2",
		"RATELIMIT_INCLUDE_HEADERS":         "no",
		"RATELIMIT_HEADER_MODE":             "draft",
		"RATELIMIT_LOG_VIOLATIONS":          "false",
		"RATELIMIT_ENVIRONMENT":             "staging",
		"RATELIMIT_STATUS_CODE":             "429",
		"RATELIMIT_HTTP_420_MESSAGE":        "Slow down",
		"RATELIMIT_HTTP_420_DETAIL":         "Wait a bit.",
		"RATELIMIT_MEMORY_MAX_KEYS":         "5000",
		"RATELIMIT_MEMORY_CLEANUP_INTERVAL": "30",
		"RATELIMIT_LOG_FORMAT":              "JSON",
		"RATELIMIT_LOG_LEVEL":               "debug",
	})})
	if err != nil {
		t.Fatalf("LoadSettings: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Enabled", s.Enabled, false},
		{"Algorithm", s.Algorithm, algorithm.TokenBucket},
		{"DefaultLimit", calmRules(s.DefaultLimit), "5/second,20/15m"},
		{"MaxWait", s.MaxWait, 1500 * time.Millisecond},
		{"FailOpen", s.FailOpen, false},
		{"KeyPrefix", s.KeyPrefix, "rl"},
		{"KeyVersion", s.KeyVersion, "v2"},
		{"IncludeHeaders", s.IncludeHeaders, false},
		{"HeaderMode", s.HeaderMode, HeadersDraft},
		{"LogViolations", s.LogViolations, false},
		{"Environment", s.Environment, "staging"},
		{"StatusCode", s.StatusCode, 429},
		{"Message", s.Message, "Slow down"},
		{"Detail", s.Detail, "Wait a bit."},
		{"MemoryMaxKeys", s.MemoryMaxKeys, 5000},
		{"MemoryCleanupInterval", s.MemoryCleanupInterval, 30 * time.Second},
		{"LogFormat", s.LogFormat, LogJSON},
		{"LogLevel", s.LogLevel, "debug"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("LoadSettings().%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, v := range values {
		if v.Source != FromEnv {
			t.Errorf("value of %s came from %v, want environment", v.Var.Env, v.Source)
		}
	}
}

func calmRules(rules []calm.Rule) string {
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func TestLoadSettingsInvalidEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, env, value string
		want             string // the whole message
	}{
		{"status not a number", "RATELIMIT_STATUS_CODE", "abc",
			`RATELIMIT_STATUS_CODE="abc": invalid: want 420 or 429`},
		{"status 500", "RATELIMIT_STATUS_CODE", "500",
			`RATELIMIT_STATUS_CODE="500": invalid: want 420 or 429`},
		{"status 425", "RATELIMIT_STATUS_CODE", "425",
			`RATELIMIT_STATUS_CODE="425": invalid: want 420 or 429`},
		{"enabled word", "RATELIMIT_ENABLED", "maybe",
			`RATELIMIT_ENABLED="maybe": invalid: want true or false`},
		{"algorithm unknown", "RATELIMIT_ALGORITHM", "lottery",
			`RATELIMIT_ALGORITHM="lottery": invalid: want sliding_window, fixed_window, ` +
				`token_bucket, leaky_bucket, leaky_queue or gcra`},
		{"rule unit", "RATELIMIT_DEFAULT_LIMIT", "10/fortnight",
			`RATELIMIT_DEFAULT_LIMIT="10/fortnight": invalid: invalid rule "10/fortnight": ` +
				`unknown window unit "fortnight": use s, m, h or d (or second, minute, hour, day)`},
		{"rule empty", "RATELIMIT_DEFAULT_LIMIT", "",
			`RATELIMIT_DEFAULT_LIMIT="": invalid: invalid rules "": empty, want a list such as ` +
				`100/minute,1000/hour`},
		{"prefix colon", "RATELIMIT_KEY_PREFIX", "a:b",
			`RATELIMIT_KEY_PREFIX="a:b": invalid: want 1 to 32 letters, digits, '-', '_' or '.'`},
		{"environment empty", "RATELIMIT_ENVIRONMENT", "",
			`RATELIMIT_ENVIRONMENT="": invalid: want 1 to 32 letters, digits, '-', '_' or '.'`},
		{"max keys zero", "RATELIMIT_MEMORY_MAX_KEYS", "0",
			`RATELIMIT_MEMORY_MAX_KEYS="0": invalid: want an integer from 1 to 2147483647`},
		{"cleanup negative", "RATELIMIT_MEMORY_CLEANUP_INTERVAL", "-5s",
			`RATELIMIT_MEMORY_CLEANUP_INTERVAL="-5s": invalid: want a duration from 1s to 24h, ` +
				`such as 30s or 30`},
		{"max wait zero", "RATELIMIT_MAX_WAIT", "0",
			`RATELIMIT_MAX_WAIT="0": invalid: want a duration from 1ms to 1h, such as 30s or 30`},
		{"max wait negative", "RATELIMIT_MAX_WAIT", "-2s",
			`RATELIMIT_MAX_WAIT="-2s": invalid: want a duration from 1ms to 1h, such as 30s or 30`},
		{"header mode", "RATELIMIT_HEADER_MODE", "all",
			`RATELIMIT_HEADER_MODE="all": invalid: want legacy, draft or both`},
		{"cleanup not a duration", "RATELIMIT_MEMORY_CLEANUP_INTERVAL", "soon",
			`RATELIMIT_MEMORY_CLEANUP_INTERVAL="soon": invalid: want a duration from 1s to 24h, ` +
				`such as 30s or 30`},
		{"max keys fraction", "RATELIMIT_MEMORY_MAX_KEYS", "1.5",
			`RATELIMIT_MEMORY_MAX_KEYS="1.5": invalid: want an integer from 1 to 2147483647`},
		{"enabled blank", "RATELIMIT_ENABLED", " ",
			`RATELIMIT_ENABLED=" ": invalid: want true or false`},
		{"message newline", "RATELIMIT_HTTP_420_MESSAGE", "a\nb",
			`RATELIMIT_HTTP_420_MESSAGE="a\nb": invalid: want text without control characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := LoadSettings(Sources{Lookup: env(map[string]string{tt.env: tt.value})})
			if err == nil {
				t.Fatalf("LoadSettings(%s=%q) = nil error, want %q", tt.env, tt.value, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("LoadSettings(%s=%q) error:\n got %s\nwant %s", tt.env, tt.value, err, tt.want)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.Source != FromEnv {
				t.Errorf("error %v is not a *Error from the environment", err)
			}
		})
	}
}

func TestLoadPrecedence(t *testing.T) {
	t.Parallel()
	file, err := ParseFile("calm.yaml", []byte(`
settings:
  status_code: 429
  default_limit: [7/minute, 70/hour]
  algorithm: fixed_window
`))
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	lookup := env(map[string]string{
		"RATELIMIT_STATUS_CODE":   "420",
		"RATELIMIT_DEFAULT_LIMIT": "1/second",
		"RATELIMIT_KEY_PREFIX":    "fromenv",
		"RATELIMIT_ALGORITHM":     "gcra",
	})
	flags := map[string]Flag{"default_limit": {Name: "--default-limit", Value: "9/minute"}}
	s, values, err := LoadSettings(Sources{Lookup: lookup, File: file, Flags: flags})
	if err != nil {
		t.Fatalf("LoadSettings: %v", err)
	}
	if s.StatusCode != 429 {
		t.Errorf("StatusCode = %d, want 429 (file over environment)", s.StatusCode)
	}
	if got := calmRules(s.DefaultLimit); got != "9/minute" {
		t.Errorf("DefaultLimit = %s, want 9/minute (flag over file)", got)
	}
	if s.KeyPrefix != "fromenv" {
		t.Errorf("KeyPrefix = %q, want fromenv (environment over default)", s.KeyPrefix)
	}
	if s.Algorithm != algorithm.FixedWindow {
		t.Errorf("Algorithm = %v, want fixed_window (file over environment)", s.Algorithm)
	}
	if s.KeyVersion != "v1" {
		t.Errorf("KeyVersion = %q, want default v1", s.KeyVersion)
	}
	sources := map[string]Source{}
	for _, v := range values {
		sources[v.Var.Env] = v.Source
	}
	wantSources := map[string]Source{
		"RATELIMIT_STATUS_CODE":   FromFile,
		"RATELIMIT_DEFAULT_LIMIT": FromFlag,
		"RATELIMIT_KEY_PREFIX":    FromEnv,
		"RATELIMIT_KEY_VERSION":   FromDefault,
	}
	for name, want := range wantSources {
		if sources[name] != want {
			t.Errorf("source of %s = %v, want %v", name, sources[name], want)
		}
	}
}

func TestLoadErrorNamesSource(t *testing.T) {
	t.Parallel()
	file, err := ParseFile("calm.yaml", []byte("settings:\n  status_code: teapot\n"))
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	tests := []struct {
		name string
		src  Sources
		want string
	}{
		{"file", Sources{File: file},
			`calm.yaml: settings.status_code="teapot": invalid: want 420 or 429`},
		{"flag", Sources{File: file, Flags: map[string]Flag{
			"status_code": {Name: "--status-code", Value: "1"}}},
			`--status-code="1": invalid: want 420 or 429`},
		{"unknown key", Sources{File: mustParse(t, "settings:\n  stauts_code: 429\n")},
			`calm.yaml: settings.stauts_code="429": invalid: unknown setting ` +
				`(did you mean "status_code"?): use one of enabled, `},
		{"unknown key far", Sources{File: mustParse(t, "settings:\n  speed: 3\n")},
			`calm.yaml: settings.speed="3": invalid: unknown setting: use one of enabled, `},
		{"unknown key with newline", Sources{File: mustParse(t, "settings:\n  \"a\\nb\": 3\n")},
			`calm.yaml: settings."a\nb"="3": invalid: unknown setting: use one of enabled, `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := LoadSettings(tt.src)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("LoadSettings error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestLoadSecretHidden(t *testing.T) {
	t.Parallel()
	var secret string
	vars := []Var{{Env: "RATELIMIT_TEST_SECRET", Default: "", Secret: true,
		Parse: func(v string) error {
			if len(v) < 8 {
				return errors.New("want at least 8 bytes")
			}
			secret = v
			return nil
		}}}
	_, err := Load(vars, Sources{Lookup: env(map[string]string{"RATELIMIT_TEST_SECRET": "hunter2"})})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Load error = %v, want an error that hides the value", err)
	}
	values, err := Load(vars, Sources{Lookup: env(map[string]string{
		"RATELIMIT_TEST_SECRET": "correct horse"})})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if values[0].Raw != "<secret>" || secret != "correct horse" {
		t.Errorf("Load shows %q and stores %q, want <secret> and the value", values[0].Raw, secret)
	}
	vars[0].Parse = func(string) error { return nil }
	values, err = Load(vars, Sources{Lookup: env(map[string]string{})})
	if err != nil {
		t.Fatalf("Load without the secret: %v", err)
	}
	if values[0].Raw != "" {
		t.Errorf("Load shows an unset secret as %q, want \"\"", values[0].Raw)
	}
}

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, err := ParseFile("calm.yaml", []byte(text))
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	return f
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		wantErr string // empty when the file is valid
		want    map[string]string
	}{
		{name: "empty", text: "", want: map[string]string{}},
		{name: "comments only", text: "# nothing\n", want: map[string]string{}},
		{name: "list joined", text: "settings:\n  default_limit: [1/s, 2/m]\n",
			want: map[string]string{"default_limit": "1/s,2/m"}},
		{name: "numbers and bools", text: "settings:\n  status_code: 429\n  enabled: false\n",
			want: map[string]string{"status_code": "429", "enabled": "false"}},
		{name: "policies kept", text: "settings: {}\nroutes: []\n", want: map[string]string{}},
		{name: "not yaml", text: "settings: [\n", wantErr: "invalid YAML"},
		{name: "settings list", text: "settings: [a, b]\n",
			wantErr: "calm.yaml: line 1: settings: invalid: want a mapping of setting names to values, not a list"},
		{name: "nested value", text: "settings:\n  algorithm: {a: b}\n",
			wantErr: `calm.yaml: line 2: settings.algorithm: invalid: want a value or a list of values, not a mapping`},
		{name: "two documents", text: "settings: {}\n---\nsettings: {}\n", wantErr: "one YAML document"},
		{name: "default_limits moved", text: "default_limits: [1/s, 2/m]\n",
			want: map[string]string{"default_limit": "1/s,2/m"}},
		{name: "default limits twice",
			text:    "default_limits: [1/s]\nsettings:\n  default_limit: 2/m\n",
			wantErr: "default_limits and settings.default_limit both set the default limits"},
		{name: "unknown top-level key", text: "rotues: []\n",
			wantErr: `calm.yaml: line 1: unknown top-level setting "rotues" (did you mean "routes"?)`},
		{name: "unknown route field", text: "routes:\n  - pattern: GET /x\n    limit: [1/s]\n",
			wantErr: `calm.yaml: line 3: routes[0]: unknown setting "limit" (did you mean "limits"?)`},
		{name: "limits not a list", text: "routes:\n  - pattern: GET /x\n    limits: {a: 1}\n",
			wantErr: `calm.yaml: line 3: routes[0].limits: invalid: want a list, not a mapping`},
		{name: "duplicate key", text: "settings:\n  enabled: true\n  enabled: false\n",
			wantErr: "calm.yaml: line 3: settings.enabled: set twice, also on line 2: keep one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFile("calm.yaml", []byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFile error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if len(f.Settings) != len(tt.want) {
				t.Errorf("ParseFile settings = %v, want %v", f.Settings, tt.want)
			}
			for k, v := range tt.want {
				if f.Settings[k] != v {
					t.Errorf("settings[%s] = %q, want %q", k, f.Settings[k], v)
				}
			}
		})
	}
}

func TestParseFileTooLarge(t *testing.T) {
	t.Parallel()
	_, err := ParseFile("big.yaml", make([]byte, MaxFileSize+1))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ParseFile(%d bytes) error = %v, want a size error", MaxFileSize+1, err)
	}
}

func TestParseFilePolicy(t *testing.T) {
	t.Parallel()
	f := mustParse(t, `
exclude: []
groups:
  - prefix: /auth
    routes:
      - pattern: POST /auth/login
        limits: [3/minute, 10/hour]
        cost: 2
routes:
  - pattern: GET /api/export
    limits: [5/minute]
`)
	if !f.HasPolicy {
		t.Errorf("HasPolicy = false, want true")
	}
	if f.Policy.Exclude == nil || len(f.Policy.Exclude) != 0 {
		t.Errorf("Exclude = %#v, want an empty, non-nil list", f.Policy.Exclude)
	}
	if len(f.Policy.Groups) != 1 || len(f.Policy.Groups[0].Routes) != 1 {
		t.Fatalf("Groups = %+v, want one group with one route", f.Policy.Groups)
	}
	login := f.Policy.Groups[0].Routes[0]
	if login.Cost == nil || *login.Cost != 2 || len(login.Limits) != 2 {
		t.Errorf("login route = %+v, want cost 2 and two limits", login)
	}
	if len(f.Policy.Routes) != 1 || f.Policy.Routes[0].Pattern != "GET /api/export" {
		t.Errorf("Routes = %+v, want GET /api/export", f.Policy.Routes)
	}
	if mustParse(t, "settings: {}\n").HasPolicy {
		t.Errorf("HasPolicy = true for a file with settings only, want false")
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{24 * time.Hour, "24h"},
		{time.Minute, "1m"},
		{90 * time.Minute, "1h30m"},
		{90 * time.Second, "1m30s"},
		{100 * time.Millisecond, "100ms"},
		{0, "0s"},
		{time.Hour + time.Second, "1h0m1s"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
