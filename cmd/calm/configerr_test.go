package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// runWithEnv runs calm's command line in this process with the given
// environment.
func runWithEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	code := run(context.Background(), args, &stdout, &stderr, lookup)
	return code, stdout.String(), stderr.String()
}

// TestConfigErrorOneLine checks that check-config and serve stop on a bad
// config file with the same single line, naming the setting, the value and
// the fix.
func TestConfigErrorOneLine(t *testing.T) {
	t.Parallel()
	const (
		route     = "routes:\n  - pattern: GET /x\n    limits: [10/minute]\n"
		windowFix = ", which ignores a burst: remove burst, or set the route's algorithm to " +
			"token_bucket, leaky_bucket, leaky_queue or gcra, which use it"
	)
	tests := []struct {
		name string
		text string
		env  map[string]string
		want string // the message after "calm COMMAND: FILE: "
	}{
		{"burst on sliding window", route + "    algorithm: sliding_window\n    burst: 50\n    cost: 30\n",
			nil, "routes[0].burst: burst 50 has no effect with algorithm sliding_window" + windowFix},
		{"burst on fixed window", route + "    algorithm: fixed_window\n    burst: 50\n    cost: 30\n",
			nil, "routes[0].burst: burst 50 has no effect with algorithm fixed_window" + windowFix},
		{"burst on default algorithm", route + "    burst: 50\n    cost: 30\n", nil,
			"routes[0].burst: burst 50 has no effect with the default algorithm sliding_window " +
				"(RATELIMIT_ALGORITHM)" + windowFix},
		{"burst on algorithm from env", route + "    burst: 50\n    cost: 30\n",
			map[string]string{"RATELIMIT_ALGORITHM": "fixed_window"},
			"routes[0].burst: burst 50 has no effect with the default algorithm fixed_window " +
				"(RATELIMIT_ALGORITHM)" + windowFix},
		{"burst on algorithm from file", "settings:\n  algorithm: fixed_window\n" + route +
			"    burst: 50\n", map[string]string{"RATELIMIT_ALGORITHM": "token_bucket"},
			"routes[0].burst: burst 50 has no effect with the default algorithm fixed_window " +
				"(RATELIMIT_ALGORITHM)" + windowFix},
		{"negative burst", route + "    algorithm: token_bucket\n    burst: -3\n", nil,
			"routes[0].burst: burst -3 is negative: set a positive capacity, or remove burst " +
				"to use the rule's request count"},
		{"negative burst from env algorithm", route + "    burst: -3\n",
			map[string]string{"RATELIMIT_ALGORITHM": "gcra"},
			"routes[0].burst: burst -3 is negative: set a positive capacity, or remove burst " +
				"to use the rule's request count"},
		{"cost not a number", route + "    cost: abc\n", nil,
			`line 4: routes[0].cost="abc": invalid: want a whole number of 0 or more, such as 5`},
		{"misspelt route setting", route + "    cots: 5\n", nil,
			`line 4: routes[0]: unknown setting "cots" (did you mean "cost"?): ` +
				"use pattern, name, limits, cost, scope, algorithm, burst, delay or max_wait"},
		{"misspelt top-level key", "rotues: []\n", nil,
			`line 1: unknown top-level setting "rotues" (did you mean "routes"?): ` +
				"use settings, tiers, default_limits, exclude, include, routes or groups"},
		{"misspelt tier setting", "tiers:\n  routes: [GET /x]\n  levels:\n    - nmae: free\n", nil,
			`line 4: tiers.levels[0]: unknown setting "nmae" (did you mean "name"?): ` +
				"use name or limits"},
		{"tier limits not a list", "tiers:\n  anonymous: 5/minute\n", nil,
			`line 2: tiers.anonymous="5/minute": invalid: want a list, such as [5/minute]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tt.text)
			want := path + ": " + tt.want
			code, _, stderr := runWithEnv(t, tt.env, "check-config", path)
			if code != 1 || stderr != "calm check-config: "+want+"\n" {
				t.Errorf("check-config = %d, stderr:\n%s\nwant 1 and one line:\ncalm check-config: %s",
					code, stderr, want)
			}
			code, stdout, stderr := runCalm(t, tt.env, "serve", "--addr", "127.0.0.1:0", "--config", path)
			if code != 1 || stderr != "calm serve: "+want+"\n" || stdout != "" {
				t.Errorf("serve = %d, stderr:\n%s\nwant 1 and one line:\ncalm serve: %s", code, stderr, want)
			}
		})
	}
}

// TestBurstOfBucketAdmitsCost checks that a cost above the rule's request
// count but within the burst passes when a bucket algorithm, chosen by the
// route or by RATELIMIT_ALGORITHM, uses the burst.
func TestBurstOfBucketAdmitsCost(t *testing.T) {
	t.Parallel()
	const route = "routes:\n  - pattern: GET /api/test\n    limits: [10/minute]\n" +
		"    burst: 50\n    cost: 30\n"
	tests := []struct {
		name string
		text string
		env  map[string]string
	}{
		{"route algorithm", route + "    algorithm: token_bucket\n", nil},
		{"default algorithm", route, map[string]string{"RATELIMIT_ALGORITHM": "gcra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tt.text)
			if code, _, stderr := runWithEnv(t, tt.env, "check-config", path); code != 0 {
				t.Fatalf("check-config = %d, want 0; stderr: %s", code, stderr)
			}
			lookup := func(name string) (string, bool) {
				v, ok := tt.env[name]
				return v, ok
			}
			c := &cli{stderr: &bytes.Buffer{}, lookupEnv: lookup}
			gw, err := newGateway(context.Background(), c,
				serveFlags{configPath: path, extensions: newExtensions()})
			if err != nil {
				t.Fatalf("newGateway: %v", err)
			}
			defer gw.close()
			for i, want := range []int{http.StatusOK, 420} {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/api/test", nil)
				req.RemoteAddr = "192.0.2.1:1234"
				gw.handler.ServeHTTP(rec, req)
				if rec.Code != want {
					t.Errorf("request %d: status %d, want %d; body %s", i+1, rec.Code, want,
						strings.TrimSpace(rec.Body.String()))
				}
			}
		})
	}
}
