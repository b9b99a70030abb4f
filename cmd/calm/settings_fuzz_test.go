package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/calm-limiter/calm/config"
)

// FuzzSettings feeds one value to every setting of the gateway, those of
// the extensions included: loading never panics, and a failure is one
// *config.Error that names the setting it failed on.
func FuzzSettings(f *testing.F) {
	for _, seed := range []string{
		"", "0", "-1", "true", "off", "abc", "10/minute", "1/0s", "30s", "10.0.0.0/8",
		"::1/129", "HS256,none", "redis://127.0.0.1:6379/0", "\x00", "\xff", "a,b,,c",
	} {
		f.Add(seed)
	}
	var names []string
	for _, v := range allVars() {
		names = append(names, v.Env)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, name := range names {
			lookup := func(n string) (string, bool) {
				if n == name {
					return value, true
				}
				return "", false
			}
			_, err := config.Load(allVars(), config.Sources{Lookup: lookup})
			if err == nil {
				continue
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) || cerr.Setting != name {
				t.Fatalf("Load(%s=%q) error = %v, want a *config.Error naming %s",
					name, value, err, name)
			}
		}
	})
}

// FuzzConfigFile runs a config file through the start-up checks that read
// it: parsing, the settings, the tiers and the policy. None panics, and
// the first error of each names the file.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"settings:\n  algorithm: fixed_window\nroutes:\n  - pattern: GET /x\n    burst: 5\n",
		"tiers:\n  routes: [GET /x]\n  levels:\n    - {name: gold, limits: [50/minute]}\n",
		"tiers:\n  levels:\n    - nmae: gold\n",
		"tiers:\n  anonymous: 5/minute\n",
		"tiers: [a]\n",
		"routes:\n  - pattern: GET /x\n    limits: [10/minute]\n    cost: abc\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := config.ParseFile("fuzz.yaml", data)
		if err != nil {
			return
		}
		settings, _, err := config.LoadSettings(config.Sources{File: file})
		if err != nil {
			return
		}
		if _, err := fileTiers(file); err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
			t.Fatalf("fileTiers error %q does not start with the file", err)
		}
		pc := file.Policy
		pc.DefaultLimits = ruleStrings(settings.DefaultLimit)
		pc.DefaultAlgorithm = &settings.Algorithm
		if err := pc.Validate(); err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("Validate error is empty")
		}
	})
}
