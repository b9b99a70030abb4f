package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Source names where a value came from, from lowest to highest precedence.
type Source int

// The sources Load reads, from lowest to highest precedence.
const (
	FromDefault Source = iota
	FromEnv
	FromFile
	FromFlag
)

func (s Source) String() string {
	switch s {
	case FromEnv:
		return "environment"
	case FromFile:
		return "config file"
	case FromFlag:
		return "flag"
	}
	return "default"
}

// Sources are the places Load reads values from. Every field may be nil.
type Sources struct {
	// Lookup reads the environment; os.LookupEnv in production, a map in
	// tests.
	Lookup func(name string) (string, bool)
	// File is the parsed config file.
	File *File
	// Flags maps a Var's Key to the value of the command-line flag that
	// sets it, for flags the user gave.
	Flags map[string]Flag
}

// Flag is a command-line value for a setting.
type Flag struct {
	Name  string // as typed, such as "--default-limit"
	Value string
}

// Value is the outcome of Load for one Var.
type Value struct {
	Var    Var
	Raw    string // the text that was parsed; "<secret>" when Var.Secret and not empty
	Source Source
}

// Error is an invalid setting. Its message names the setting as the user
// wrote it, the value and what is expected, such as
// `RATELIMIT_STATUS_CODE="abc": invalid: want 420 or 429`.
type Error struct {
	Setting string // RATELIMIT_X, "--flag" or "FILE: settings.key"
	Value   string // quoted in the message; "<secret>" for a secret that is not empty
	Source  Source
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%s: invalid: %v", e.Setting, quote(e.Value), e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

var errWant420or429 = errors.New("want 420 or 429")

// quote quotes v for a message, cut to a readable length.
func quote(v string) string {
	const max = 80
	if len(v) > max {
		return fmt.Sprintf("%q...", v[:max])
	}
	return fmt.Sprintf("%q", v)
}

// Env returns the environment lookup of this process.
func Env() func(string) (string, bool) { return os.LookupEnv }

// Load applies defaults, environment, file and flags, in that order, to
// every Var, and returns what each ended up with. It stops at the first
// invalid value. A file setting that no Var reads is an error too.
func Load(vars []Var, src Sources) ([]Value, error) {
	if err := checkFileKeys(vars, src.File); err != nil {
		return nil, err
	}
	values := make([]Value, 0, len(vars))
	for _, v := range vars {
		val, err := load(v, src)
		if err != nil {
			return nil, err
		}
		values = append(values, val)
	}
	return values, nil
}

// load finds the value of highest precedence for v and parses it.
func load(v Var, src Sources) (Value, error) {
	raw, source, setting := v.Default, FromDefault, v.Env+" (default)"
	if src.Lookup != nil {
		if s, ok := src.Lookup(v.Env); ok {
			raw, source, setting = s, FromEnv, v.Env
		}
	}
	if src.File != nil && v.Key != "" {
		if s, ok := src.File.Settings[v.Key]; ok {
			raw, source, setting = s, FromFile, src.File.Path+": settings."+v.Key
		}
	}
	if f, ok := src.Flags[v.Key]; ok && v.Key != "" {
		raw, source, setting = f.Value, FromFlag, f.Name
	}

	// An empty secret reveals nothing, so it stays empty and printed
	// configuration shows that none is set.
	displayed := raw
	if v.Secret && raw != "" {
		displayed = "<secret>"
	}
	if len(raw) > maxValueLength {
		return Value{}, &Error{Setting: setting, Value: displayed, Source: source,
			Err: fmt.Errorf("longer than %d bytes", maxValueLength)}
	}
	if err := v.Parse(raw); err != nil {
		return Value{}, &Error{Setting: setting, Value: displayed, Source: source, Err: err}
	}
	return Value{Var: v, Raw: displayed, Source: source}, nil
}

// checkFileKeys rejects file settings that no Var reads, so a typo in the
// file is not silently ignored.
func checkFileKeys(vars []Var, f *File) error {
	if f == nil {
		return nil
	}
	known := make(map[string]bool, len(vars))
	var keys []string
	for _, v := range vars {
		if v.Key != "" {
			known[v.Key] = true
			keys = append(keys, v.Key)
		}
	}
	for _, key := range f.order {
		if !known[key] {
			return &Error{
				Setting: f.Path + ": " + join("settings", key), Value: f.Settings[key], Source: FromFile,
				Err: fmt.Errorf("unknown setting%s: use one of %s", suggest(key, keys),
					strings.Join(keys, ", ")),
			}
		}
	}
	return nil
}

// LoadSettings loads the shared settings from src. It is Load with
// Settings.Vars plus the extra Vars of other packages, which are loaded
// after the shared ones.
func LoadSettings(src Sources, extra ...Var) (Settings, []Value, error) {
	var s Settings
	vars := append(s.Vars(), extra...)
	values, err := Load(vars, src)
	if err != nil {
		return Settings{}, nil, err
	}
	return s, values, nil
}
