// Package config loads calm's settings from defaults, the environment, a
// YAML config file and command-line flags, in that order of precedence:
// a flag overrides the file, the file overrides the environment, and the
// environment overrides the defaults.
//
// Every setting is a Var: an environment variable (RATELIMIT_*), a key in
// the file's settings section, a default written as text, and a parser that
// stores the value. Load applies the sources to a list of Vars and stops at
// the first invalid value with one *Error that names the setting, the value
// and the fix. Packages with settings of their own describe them as Vars
// with the constructors in this file (Bool, Int, Duration, ...) and pass
// them to Load next to Settings.Vars.
package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Var is one setting.
type Var struct {
	// Env is the environment variable, such as "RATELIMIT_STATUS_CODE".
	Env string
	// Key is the name in the config file's settings section, such as
	// "status_code". Empty when the file cannot set it.
	Key string
	// Default is the value used when no source sets the variable, written
	// as a user would write it. It passes through Parse like any other value.
	Default string
	// Usage is one sentence for the docs and `calm check-config`.
	Usage string
	// Secret hides the value in errors and in printed configuration. An
	// empty value stays visible as empty, so that it shows none is set.
	Secret bool
	// Parse validates value and stores it. Its error text follows
	// "invalid: " in the message, so it states what is expected, such as
	// "want 420 or 429".
	Parse func(value string) error
}

// maxValueLength bounds every raw value, so a runaway variable or file
// entry produces an error instead of work.
const maxValueLength = 4096

// Bool returns a parser for true/false switches. It accepts true, false, 1,
// 0, yes, no, on and off in any case.
func Bool(dst *bool) func(string) error {
	return func(v string) error {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1", "yes", "on":
			*dst = true
		case "false", "0", "no", "off":
			*dst = false
		default:
			return fmt.Errorf("want true or false")
		}
		return nil
	}
}

// Int returns a parser for an integer in [lo, hi].
func Int(dst *int, lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want an integer from %d to %d", lo, hi)
		}
		*dst = n
		return nil
	}
}

// Duration returns a parser for a duration in [lo, hi], written as a Go
// duration ("30s", "1m30s") or as a whole number of seconds ("30").
func Duration(dst *time.Duration, lo, hi time.Duration) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		d, err := time.ParseDuration(v)
		if err != nil {
			secs, serr := strconv.ParseInt(v, 10, 64)
			if serr != nil || secs > int64(hi/time.Second)+1 || secs < 0 {
				return fmt.Errorf("want a duration from %s to %s, such as 30s or 30",
					FormatDuration(lo), FormatDuration(hi))
			}
			d = time.Duration(secs) * time.Second
		}
		if d < lo || d > hi {
			return fmt.Errorf("want a duration from %s to %s, such as 30s or 30",
				FormatDuration(lo), FormatDuration(hi))
		}
		*dst = d
		return nil
	}
}

// FormatDuration formats d as time.Duration.String does, without zero
// minutes and seconds at the end: 24h rather than 24h0m0s. Messages and
// printed configuration use it.
func FormatDuration(d time.Duration) string {
	text := d.String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

// OneOf returns a parser that accepts one of the allowed words, compared
// without regard to case and surrounding spaces.
func OneOf(dst *string, allowed ...string) func(string) error {
	return func(v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("want %s", orList(allowed))
		}
		*dst = v
		return nil
	}
}

// Text returns a parser for free text of at most maxLen bytes without
// control characters other than tabs.
func Text(dst *string, maxLen int) func(string) error {
	return func(v string) error {
		if len(v) > maxLen {
			return fmt.Errorf("want at most %d bytes", maxLen)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return fmt.Errorf("want text without control characters")
		}
		*dst = v
		return nil
	}
}

// KeyPart returns a parser for a part of a store key (environment, prefix,
// version): 1 to 32 letters, digits, '-', '_' or '.'.
func KeyPart(dst *string) func(string) error {
	return func(v string) error {
		ok := len(v) > 0 && len(v) <= 32
		for i := 0; ok && i < len(v); i++ {
			c := v[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '-' || c == '_' || c == '.'
		}
		if !ok {
			return fmt.Errorf("want 1 to 32 letters, digits, '-', '_' or '.'")
		}
		*dst = v
		return nil
	}
}

// Rules returns a parser for a comma-separated list of rules such as
// "100/minute,1000/hour".
func Rules(dst *[]calm.Rule) func(string) error {
	return func(v string) error {
		rules, err := calm.ParseRules(v)
		if err != nil {
			return err
		}
		*dst = rules
		return nil
	}
}

// Algorithm returns a parser for an algorithm name such as "sliding_window".
func Algorithm(dst *algorithm.Kind) func(string) error {
	return func(v string) error {
		k, err := algorithm.ParseKind(strings.ToLower(strings.TrimSpace(v)))
		if err != nil {
			return fmt.Errorf("want %s", orList(algorithmNames()))
		}
		*dst = k
		return nil
	}
}

func algorithmNames() []string {
	var names []string
	for k := algorithm.Kind(0); ; k++ {
		name := k.String()
		if strings.HasPrefix(name, "algorithm(") {
			return names
		}
		names = append(names, name)
	}
}

// orList formats ["a", "b", "c"] as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
