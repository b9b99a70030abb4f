package calm

import (
	"strings"
	"testing"
	"time"
)

func TestParseRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Rule
	}{
		{"100/minute", Rule{100, time.Minute}},
		{"1000/hour", Rule{1000, time.Hour}},
		{"10/second", Rule{10, time.Second}},
		{"5/15m", Rule{5, 15 * time.Minute}},
		{"5/15 minutes", Rule{5, 15 * time.Minute}},
		{" 7 / 3s ", Rule{7, 3 * time.Second}},
		{"1/sec", Rule{1, time.Second}},
		{"1/seconds", Rule{1, time.Second}},
		{"1/min", Rule{1, time.Minute}},
		{"1/minutes", Rule{1, time.Minute}},
		{"1/h", Rule{1, time.Hour}},
		{"1/hr", Rule{1, time.Hour}},
		{"1/hours", Rule{1, time.Hour}},
		{"1/d", Rule{1, 24 * time.Hour}},
		{"1/day", Rule{1, 24 * time.Hour}},
		{"2/7days", Rule{2, 7 * 24 * time.Hour}},
		{"3/MINUTE", Rule{3, time.Minute}},
	}
	for _, tt := range tests {
		got, err := ParseRule(tt.in)
		if err != nil {
			t.Errorf("ParseRule(%q) error: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRule(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRuleInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "100", "0/minute", "-1/minute", "10/fortnight", "10/0m", "10/-5m",
		"abc/minute", "10/", "/minute", "99999999999999999999/minute",
		"10/99999999999999999999d", "10/400d", "9007199254740993/day",
		strings.Repeat("1", 100) + "/minute",
	} {
		_, err := ParseRule(in)
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded, want error", in)
			continue
		}
		quoted := in
		if len(in) > 64 {
			quoted = in[:10]
		}
		if !strings.Contains(err.Error(), quoted) {
			t.Errorf("ParseRule(%q) error %q does not quote the input", in, err)
		}
	}
}

func TestParseRuleOverflowMessage(t *testing.T) {
	t.Parallel()
	_, err := ParseRule("99999999999999999999/second")
	if err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Errorf("ParseRule(99999999999999999999/second) error = %v, want an overflow message", err)
	}
}

func TestParseRulesStack(t *testing.T) {
	t.Parallel()
	rules, err := ParseRules("100/minute, 1000/hour")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0] != (Rule{100, time.Minute}) || rules[1] != (Rule{1000, time.Hour}) {
		t.Fatalf("ParseRules = %+v", rules)
	}
	if _, err := ParseRules("100/minute,,1000/hour"); err == nil {
		t.Error("empty item accepted")
	}
}

func TestRuleStringRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"100/minute", "5/15m", "7/3s", "1/day", "2/7d", "3/2h"} {
		r := MustParseRules(in)[0]
		back, err := ParseRule(r.String())
		if err != nil || back != r {
			t.Errorf("%q -> %q -> %+v, %v", in, r.String(), back, err)
		}
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"100/minute", "5/15m", "0/s", "1/99999d", "x/y", "1//m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if r.Requests <= 0 || r.Window < time.Second {
			t.Fatalf("ParseRule(%q) = %+v: accepted a rule with no positive quota or window", s, r)
		}
		if err := r.limit().Validate(); err != nil {
			t.Fatalf("ParseRule(%q) accepted a rule that fails Validate: %v", s, err)
		}
	})
}
