package main

import (
	"errors"
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
