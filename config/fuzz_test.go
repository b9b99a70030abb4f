package config

import (
	"errors"
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

// FuzzParseFile checks that any file content either parses or returns an
// error, and that whatever parses also loads or returns a *Error.
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
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("fuzz.yaml", data)
		if err != nil {
			return
		}
		_, _, err = LoadSettings(Sources{File: file})
		var cerr *Error
		if err != nil && !errors.As(err, &cerr) {
			t.Fatalf("LoadSettings error %v is not a *Error", err)
		}
	})
}
