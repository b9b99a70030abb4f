package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/identity/jwtverify"
)

const tokenTestSecret = "0123456789abcdef0123456789abcdef"

func TestTokenVerifies(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"token", "--tier", "paid", "--secret",
		tokenTestSecret, "--sub", "ada", "--permissions", "circuit.bypass, read"},
		&stdout, &stderr, noEnv)
	if code != 0 {
		t.Fatalf("calm token exit status = %d, want 0; stderr: %s", code, stderr.String())
	}
	v, err := jwtverify.New(jwtverify.Config{HMACSecret: []byte(tokenTestSecret)})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("Verify(minted token) error = %v", err)
	}
	if claims["tier"] != "paid" || claims["sub"] != "ada" {
		t.Errorf("claims = %v, want tier paid and sub ada", claims)
	}
	if perms, _ := claims["permissions"].([]any); len(perms) != 2 || perms[0] != "circuit.bypass" {
		t.Errorf("permissions = %v, want [circuit.bypass read]", claims["permissions"])
	}
	exp, _ := claims["exp"].(float64)
	if left := time.Until(time.Unix(int64(exp), 0)); left <= 0 || left > time.Hour {
		t.Errorf("token expires in %v, want within the default hour", left)
	}
}

func TestTokenSecretFromEnvironment(t *testing.T) {
	t.Parallel()
	env := func(name string) (string, bool) {
		if name == "RATELIMIT_AUTH_JWT_SECRET" {
			return tokenTestSecret, true
		}
		return "", false
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"token", "--tier", "free"}, &stdout, &stderr,
		env); code != 0 {
		t.Fatalf("calm token exit status = %d, want 0; stderr: %s", code, stderr.String())
	}
	if strings.Count(stdout.String(), ".") != 2 {
		t.Errorf("output %q is not a JWT", stdout.String())
	}
}

func TestTokenRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no secret", args: []string{"--tier", "paid"}, want: "--secret: missing"},
		{name: "short secret", args: []string{"--tier", "paid", "--secret", "short"},
			want: "--secret: invalid"},
		{name: "no tier", args: []string{"--secret", tokenTestSecret}, want: "--tier: missing"},
		{name: "long ttl", args: []string{"--tier", "paid", "--secret", tokenTestSecret,
			"--ttl", "10000h"}, want: "--ttl=10000h0m0s: invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, append([]string{"token"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit status = %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want empty", stdout)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
}

func TestCheckConfigTiers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		code int
		want string
	}{
		{name: "valid", code: 0, file: "tiers:\n  routes: [GET /x]\n  levels:\n" +
			"    - {name: gold, limits: [50/minute]}\n    - {name: tin, limits: [1/minute]}\n",
			want: "unknown tiers get tin"},
		{name: "bad rule", code: 1, file: "tiers:\n  levels:\n    - {name: gold, limits: [0/minute]}\n",
			want: "tiers.levels[0] (gold)"},
		{name: "unknown key", code: 1, file: "tiers:\n  level: []\n",
			want: `line 2: tiers: unknown setting "level" (did you mean "levels"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "calm.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runInProcess(t, "check-config", path)
			if code != tt.code {
				t.Errorf("exit status = %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if !strings.Contains(stdout+stderr, tt.want) {
				t.Errorf("output lacks %q:\n%s%s", tt.want, stdout, stderr)
			}
		})
	}
}
