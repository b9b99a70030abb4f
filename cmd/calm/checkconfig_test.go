package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/calm-limiter/calm/config"
)

const exampleConfig = "../../examples/calm.yaml"

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// runInProcess runs calm's command line in this process.
func runInProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, noEnv)
	return code, stdout.String(), stderr.String()
}

func TestExampleConfigIsDemoPolicy(t *testing.T) {
	t.Parallel()
	f, err := config.ReadFile(exampleConfig)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	if !reflect.DeepEqual(f.Policy, demoPolicy()) {
		t.Errorf("%s policy differs from demoPolicy():\n got %+v\nwant %+v",
			exampleConfig, f.Policy, demoPolicy())
	}
	if got := f.Settings["default_limit"]; got != "100/minute,1000/hour" {
		t.Errorf("%s default limits = %q, want 100/minute,1000/hour", exampleConfig, got)
	}
	for pattern := range demoHandlers {
		if !strings.Contains(demoPolicyPatterns(), pattern+"\n") {
			t.Errorf("demo route %q has no entry in demoPolicy()", pattern)
		}
	}
}

// demoPolicyPatterns lists the demo policy's route patterns, one a line.
func demoPolicyPatterns() string {
	var b strings.Builder
	pc := demoPolicy()
	for _, g := range pc.Groups {
		for _, r := range g.Routes {
			b.WriteString(r.Pattern + "\n")
		}
	}
	for _, r := range pc.Routes {
		b.WriteString(r.Pattern + "\n")
	}
	return b.String()
}

func TestCheckConfigExample(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runInProcess(t, "check-config", exampleConfig)
	if code != 0 {
		t.Fatalf("check-config exit status = %d, want 0; stderr: %s", code, stderr)
	}
	for _, want := range []string{
		exampleConfig + ": valid",
		"RATELIMIT_STATUS_CODE              config file  420",
		"RATELIMIT_KEY_PREFIX               default      ratelimit",
		"    POST /auth/login         3/minute, 10/hour      policy login\n",
		"    GET /api/test            100/minute, 1000/hour  policy default\n",
		"    budget shared by /api/*  100/minute             policy api-budget\n",
		"    POST /api/reports        100/minute, 1000/hour  policy reports (cost 10)\n",
		"Never limited: /healthz, /readyz, /metrics",
	} {
		// Column widths follow the longest setting name, so compare words.
		if !strings.Contains(squeeze(stdout), squeeze(want)) {
			t.Errorf("check-config output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestCheckConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	badRule := write("rule.yaml", "routes:\n  - pattern: GET /x\n    limits: [10/fortnight]\n")
	badKey := write("key.yaml", "settings:\n  algoritm: gcra\n")
	badYAML := write("yaml.yaml", "routes: [\n")
	badCost := write("cost.yaml", "routes:\n  - pattern: GET /x\n    limits: [5/minute]\n    cost: 10\n")
	tests := []struct {
		name string
		args []string
		code int
		want string // prefix of stderr
	}{
		{"no file", []string{"check-config"}, 2, "calm check-config: want exactly one FILE"},
		{"bad rule", []string{"check-config", badRule}, 1,
			"calm check-config: " + badRule + `: routes[0].limits: invalid rule "10/fortnight"`},
		{"unknown setting", []string{"check-config", badKey}, 1,
			"calm check-config: " + badKey + `: settings.algoritm="gcra": invalid: unknown setting ` +
				`(did you mean "algorithm"?): use one of enabled, algorithm, `},
		{"cost above capacity", []string{"check-config", badCost}, 1,
			"calm check-config: " + badCost + ": routes[0].cost: cost 10 exceeds the capacity 5 " +
				"of rule 5/minute in routes[0].limits, so these requests can never pass: " +
				"lower the cost to at most 5 or raise the rule's request count\n"},
		{"bad yaml", []string{"check-config", badYAML}, 1,
			"calm check-config: config file " + badYAML + ": invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runInProcess(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status = %d, want %d", code, tt.code)
			}
			if !strings.HasPrefix(stderr, tt.want) {
				t.Errorf("stderr = %q, want prefix %q", stderr, tt.want)
			}
		})
	}
}

func TestHelpServeOnStdout(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runInProcess(t, "help", "serve")
	if code != 0 || !strings.Contains(stdout, "-upstream URL") || stderr != "" {
		t.Errorf("calm help serve = %d, stdout %q, stderr %q; want 0 and the flags on stdout",
			code, stdout, stderr)
	}
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no command", nil, 2},
		{"help", []string{"help"}, 0},
		{"help serve", []string{"help", "serve"}, 0},
		{"serve bad flag", []string{"serve", "--no-such-flag"}, 2},
		{"serve extra argument", []string{"serve", "extra"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, tt.args...)
			if code != tt.code {
				t.Errorf("run(%q) = %d, want %d\nstdout: %s\nstderr: %s",
					tt.args, code, tt.code, stdout, stderr)
			}
		})
	}
}

// squeeze collapses every run of spaces and tabs into one space.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		lines[i] = strings.Join(strings.Fields(line), " ")
	}
	return strings.Join(lines, "\n")
}

func TestCheckConfigSecrets(t *testing.T) {
	t.Parallel()
	const fpSecret = "0123456789abcdef0123456789abcdef-fp"
	const jwtSecret = "0123456789abcdef0123456789abcdef-jwt"
	const redisURL = "redis://:hunter2-password@127.0.0.1:6379/0"
	tests := []struct {
		name string
		env  map[string]string
		want string // the value column of the three secrets
	}{
		{"unset", nil, "(empty)"},
		{"set", map[string]string{"RATELIMIT_FP_SECRET": fpSecret,
			"RATELIMIT_AUTH_JWT_SECRET": jwtSecret, "RATELIMIT_REDIS_URL": redisURL}, "<secret>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runWithEnv(t, tt.env, "check-config", exampleConfig)
			if code != 0 {
				t.Fatalf("check-config exit status = %d, want 0; stderr: %s", code, stderr)
			}
			for _, name := range []string{"RATELIMIT_FP_SECRET", "RATELIMIT_AUTH_JWT_SECRET",
				"RATELIMIT_REDIS_URL"} {
				line := settingLine(stdout, name)
				if line == "" {
					t.Errorf("check-config output lacks %s:\n%s", name, stdout)
				} else if !strings.HasSuffix(line, " "+tt.want) {
					t.Errorf("check-config prints %q, want the value %s", line, tt.want)
				}
			}
			for _, secret := range []string{fpSecret, jwtSecret, "hunter2"} {
				if strings.Contains(stdout, secret) {
					t.Errorf("check-config output contains the secret %q:\n%s", secret, stdout)
				}
			}
		})
	}
}

// settingLine returns the squeezed line of check-config output that
// starts with the setting name, or "" when there is none.
func settingLine(stdout, name string) string {
	for _, line := range strings.Split(squeeze(stdout), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

func TestCheckConfigQueueDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		maxWait string
		want    string
	}{
		{"whole seconds", "2", "max wait 2s"},
		{"fraction", "1.5s", "max wait 1.5s"},
		{"milliseconds", "500ms", "max wait 500ms"},
		{"hour in seconds", "3600", "max wait 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, "routes:\n  - pattern: GET /x\n    limits: [10/minute]\n"+
				"    algorithm: leaky_queue\n    delay: 3\n    max_wait: "+tt.maxWait+"\n")
			code, stdout, stderr := runInProcess(t, "check-config", path)
			if code != 0 {
				t.Fatalf("check-config exit status = %d, want 0; stderr: %s", code, stderr)
			}
			want := "GET /x 10/minute policy GET /x (leaky_queue, delay 3, " + tt.want + ")\n"
			if !strings.Contains(squeeze(stdout), want) {
				t.Errorf("check-config output lacks %q:\n%s", want, stdout)
			}
		})
	}
}
