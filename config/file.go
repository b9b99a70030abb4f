package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/calm-limiter/calm/policy"
	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a config file: 1 MiB.
const MaxFileSize = 1 << 20

// File is a parsed config file:
//
//	settings:          # any setting by its file key, see docs/CONFIG.md
//	  algorithm: token_bucket
//	  default_limit: [100/minute, 1000/hour]
//	exclude: [...]     # the other top-level keys are a policy.Config
//	groups: [...]
//	routes: [...]
//
// A list value in settings is joined with commas, so default_limit may be
// written as a list or as one string. The policy's default_limits key is
// the file's way to set default_limit too; the file may use one of them.
type File struct {
	// Path names the file in messages.
	Path string
	// Settings maps a setting's Key to its text.
	Settings map[string]string
	// Policy holds the top-level policy keys. Its DefaultLimits is always
	// empty: a default_limits key is moved to Settings["default_limit"], so
	// that flags and the environment rank against it like any setting.
	Policy policy.Config
	// HasPolicy reports whether the file sets any policy key besides
	// default_limits.
	HasPolicy bool
	// Tiers is the undecoded "tiers" section (tier names, their limits and
	// the anonymous limits), which package identity decodes; its Kind is
	// zero when the file has none.
	Tiers yaml.Node
	// order lists the settings keys as written, for stable messages.
	order []string
}

// document is the shape of a config file.
type document struct {
	Settings      yaml.Node `yaml:"settings"`
	Tiers         yaml.Node `yaml:"tiers"`
	policy.Config `yaml:",inline"`
}

// ReadFile reads and parses the config file at path.
func ReadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config file %s: %w", path, err)
	}
	return ParseFile(path, data)
}

// ParseFile parses a config file's content; path names it in messages. It
// rejects unknown keys and checks the YAML shape; Load checks the settings'
// values and policy.New the policy's.
func ParseFile(path string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileSize)
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, yamlError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: want one YAML document, found more", path)
	}
	// The shape check names the setting, the value and the fix where the
	// decoder's own messages name Go types. What passes it decodes.
	if err := checkShape(path, "", &root, document{}); err != nil {
		return nil, err
	}
	var doc document
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, yamlError(err))
	}

	f := &File{Path: path, Settings: map[string]string{}, Policy: doc.Config, Tiers: doc.Tiers}
	if err := f.readSettings(doc.Settings); err != nil {
		return nil, err
	}
	if limits := f.Policy.DefaultLimits; limits != nil {
		if _, dup := f.Settings["default_limit"]; dup {
			return nil, fmt.Errorf("%s: default_limits and settings.default_limit "+
				"both set the default limits: keep one", path)
		}
		f.Settings["default_limit"] = strings.Join(limits, ",")
		f.order = append(f.order, "default_limit")
		f.Policy.DefaultLimits = nil
	}
	p := f.Policy
	f.HasPolicy = p.Exclude != nil || p.Include != nil || p.Routes != nil || p.Groups != nil
	return f, nil
}

// yamlError drops the "yaml: " prefix of the decoder's messages.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("invalid: %s", strings.Join(te.Errors, "; "))
	}
	return fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// readSettings reads the settings mapping into f.Settings.
func (f *File) readSettings(node yaml.Node) error {
	if node.Kind == 0 || node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: line %d: settings: invalid: want a mapping of setting names "+
			"to values, not %s", f.Path, node.Line, kindName(&node))
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, value := node.Content[i], node.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: line %d: settings: invalid: want a setting name, not %s",
				f.Path, key.Line, kindName(key))
		}
		if line, dup := lines[key.Value]; dup {
			return fmt.Errorf("%s: line %d: %s: set twice, also on line %d: keep one",
				f.Path, key.Line, join("settings", key.Value), line)
		}
		lines[key.Value] = key.Line
		text, err := scalarText(value)
		if err != nil {
			return fmt.Errorf("%s: line %d: %s: invalid: %w", f.Path, value.Line,
				join("settings", key.Value), err)
		}
		f.Settings[key.Value] = text
		f.order = append(f.order, key.Value)
	}
	return nil
}

// scalarText returns the text of a scalar, or of a list of scalars joined
// with commas.
func scalarText(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", errors.New("want a value or a list of values, not nested lists or mappings")
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), nil
	case yaml.AliasNode:
		if n.Alias != nil {
			return scalarText(n.Alias)
		}
	}
	return "", fmt.Errorf("want a value or a list of values, not %s", kindName(n))
}
