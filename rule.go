package calm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm/algorithm"
)

// Rule is a quota of Requests per Window, such as 100 per minute.
type Rule struct {
	Requests int64
	Window   time.Duration
}

// maxRuleLength bounds the text ParseRule reads, so a huge value in a
// configuration file or header produces an error, not work.
const maxRuleLength = 64

// ParseRule parses a rule such as "100/minute", "1000/hour", "10/second" or
// "5/15m". The window is a unit, or a count followed by a unit: s, sec,
// second(s), m, min, minute(s), h, hr, hour(s), d, day(s). Units are case
// insensitive and spaces around the parts are ignored.
func ParseRule(s string) (Rule, error) {
	if len(s) > maxRuleLength {
		return Rule{}, fmt.Errorf("invalid rule %.64q...: longer than %d characters", s, maxRuleLength)
	}
	count, window, ok := strings.Cut(s, "/")
	if !ok {
		return Rule{}, fmt.Errorf("invalid rule %q: want REQUESTS/WINDOW, such as 100/minute", s)
	}
	requests, err := strconv.ParseInt(strings.TrimSpace(count), 10, 64)
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(strings.TrimSpace(count), "-") {
		return Rule{}, fmt.Errorf("invalid rule %q: request count overflows a 64-bit integer", s)
	}
	if err != nil || requests <= 0 {
		return Rule{}, fmt.Errorf("invalid rule %q: request count must be a positive integer", s)
	}
	length, err := parseWindow(strings.TrimSpace(window))
	if err != nil {
		return Rule{}, fmt.Errorf("invalid rule %q: %v", s, err)
	}
	r := Rule{Requests: requests, Window: length}
	if err := r.limit().Validate(); err != nil {
		return Rule{}, fmt.Errorf("invalid rule %q: %v", s, err)
	}
	return r, nil
}

// ParseRules parses a comma-separated list of rules, such as
// "100/minute,1000/hour". The list must not be empty.
func ParseRules(s string) ([]Rule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("invalid rules %q: empty, want a list such as 100/minute,1000/hour", s)
	}
	parts := strings.Split(s, ",")
	rules := make([]Rule, 0, len(parts))
	for _, part := range parts {
		r, err := ParseRule(part)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// MustParseRules is ParseRules for rules written in code; it panics on an
// invalid rule.
func MustParseRules(s string) []Rule {
	rules, err := ParseRules(s)
	if err != nil {
		panic(err)
	}
	return rules
}

var windowUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// parseWindow parses "minute", "15m" or "15 minutes".
func parseWindow(s string) (time.Duration, error) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	unit, ok := windowUnits[strings.ToLower(strings.TrimSpace(s[digits:]))]
	if !ok {
		return 0, fmt.Errorf("unknown window unit %q: use s, m, h or d (or second, minute, hour, day)", s[digits:])
	}
	if digits == 0 {
		return unit, nil
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("window count %q must be a positive integer", s[:digits])
	}
	if n > int64(maxWindow/unit) {
		return 0, fmt.Errorf("window %q is longer than the maximum of %d days", s, maxWindow/(24*time.Hour))
	}
	return time.Duration(n) * unit, nil
}

// maxWindow bounds rule windows to a year, which keeps window arithmetic in
// microseconds far from overflow.
const maxWindow = 366 * 24 * time.Hour

// String formats r as it would be written in configuration, such as
// "100/minute" or "5/15m".
func (r Rule) String() string {
	switch r.Window {
	case time.Second:
		return fmt.Sprintf("%d/second", r.Requests)
	case time.Minute:
		return fmt.Sprintf("%d/minute", r.Requests)
	case time.Hour:
		return fmt.Sprintf("%d/hour", r.Requests)
	case 24 * time.Hour:
		return fmt.Sprintf("%d/day", r.Requests)
	}
	switch {
	case r.Window%(24*time.Hour) == 0:
		return fmt.Sprintf("%d/%dd", r.Requests, r.Window/(24*time.Hour))
	case r.Window%time.Hour == 0:
		return fmt.Sprintf("%d/%dh", r.Requests, r.Window/time.Hour)
	case r.Window%time.Minute == 0:
		return fmt.Sprintf("%d/%dm", r.Requests, r.Window/time.Minute)
	}
	return fmt.Sprintf("%d/%ds", r.Requests, r.Window/time.Second)
}

// limit converts r to the algorithm package's units.
func (r Rule) limit() algorithm.Limit {
	return algorithm.Limit{Quota: r.Requests, Window: r.Window.Microseconds()}
}
