package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// CheckSection reports the first place where a section of a config file
// does not fit the Go value that sample is, such as identity.TierConfig{}
// for "tiers". Decoding the section afterwards with KnownFields then
// succeeds. Every message starts with "path: line N: " and names the
// setting by its place, such as "tiers.levels[0].limits", the value and
// what to write instead. Unknown keys are errors that suggest the closest
// known key.
//
// Integers in config sections count things (costs, bursts, requests), so
// the message for one that does not parse asks for "a whole number of 0 or
// more". A negative number parses, and the section's own validation
// rejects it.
func CheckSection(path, section string, node *yaml.Node, sample any) error {
	return checkShape(path, section, node, sample)
}

// checkShape is CheckSection; an empty section means the top level of the
// file.
func checkShape(path, section string, node *yaml.Node, sample any) error {
	c := shapeChecker{path: path, seen: map[shapeVisit]bool{}}
	return c.check(node, reflect.TypeOf(sample), section)
}

// shapeChecker walks a YAML node tree next to a Go type.
type shapeChecker struct {
	path string
	// seen holds the nodes already checked against a type. An alias reuses
	// its anchor's node, so an anchor is checked once however often it is
	// used, and an alias to its own ancestor ends the walk.
	seen map[shapeVisit]bool
}

type shapeVisit struct {
	node *yaml.Node
	typ  reflect.Type
}

var (
	nodeType        = reflect.TypeOf(yaml.Node{})
	durationType    = reflect.TypeOf(time.Duration(0))
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	textType        = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// check reports the first place where n does not fit t. The setting names
// n in messages, such as "routes[0].cost", and is empty at the top level.
func (c *shapeChecker) check(n *yaml.Node, t reflect.Type, setting string) error {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return c.check(n.Content[0], t, setting)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	visit := shapeVisit{n, t}
	if c.seen[visit] {
		return nil
	}
	c.seen[visit] = true

	switch {
	case n.Kind == 0, n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil
	case t == nodeType, t.Kind() == reflect.Interface:
		return nil
	case reflect.PointerTo(t).Implements(unmarshalerType), reflect.PointerTo(t).Implements(textType):
		return c.decodes(n, t, setting, "a valid value")
	}
	switch t.Kind() {
	case reflect.Struct:
		return c.mapping(n, t, setting)
	case reflect.Slice, reflect.Array:
		return c.list(n, t, setting)
	case reflect.Map:
		return c.dictionary(n, t, setting)
	}
	return c.scalar(n, t, setting)
}

// mapping checks a node that decodes into the struct type t.
func (c *shapeChecker) mapping(n *yaml.Node, t reflect.Type, setting string) error {
	fields := yamlFields(t)
	if n.Kind != yaml.MappingNode {
		return c.invalid(n, setting, c.wantMapping(fields, setting, n))
	}
	explicit := map[string]int{} // key → line, for keys written in this mapping
	return c.keys(n, fields, setting, explicit)
}

// keys checks the keys of mapping n and of the mappings it merges with
// "<<"; explicit records the keys written in n itself.
func (c *shapeChecker) keys(n *yaml.Node, fields []yamlField, setting string, explicit map[string]int) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			return c.invalid(key, setting, "want a setting name, not "+kindName(key))
		}
		if key.Tag == "!!merge" {
			if err := c.merge(value, fields, setting); err != nil {
				return err
			}
			continue
		}
		field, ok := findField(fields, key.Value)
		if !ok {
			return c.unknownKey(key, fields, setting)
		}
		if explicit != nil {
			if line, dup := explicit[key.Value]; dup {
				return fmt.Errorf("%s: line %d: %s: set twice, also on line %d: keep one",
					c.path, key.Line, join(setting, key.Value), line)
			}
			explicit[key.Value] = key.Line
		}
		if err := c.check(value, field.typ, join(setting, key.Value)); err != nil {
			return err
		}
	}
	return nil
}

// merge checks the value of a "<<" key: a mapping or a list of mappings
// whose keys count as keys of the mapping that merges them.
func (c *shapeChecker) merge(value *yaml.Node, fields []yamlField, setting string) error {
	for value.Kind == yaml.AliasNode && value.Alias != nil {
		value = value.Alias
	}
	sources := []*yaml.Node{value}
	if value.Kind == yaml.SequenceNode {
		sources = value.Content
	}
	for _, src := range sources {
		for src.Kind == yaml.AliasNode && src.Alias != nil {
			src = src.Alias
		}
		if src.Kind != yaml.MappingNode {
			return c.invalid(src, setting, "want a mapping to merge with <<, not "+kindName(src))
		}
		visit := shapeVisit{src, nil}
		if c.seen[visit] {
			continue
		}
		c.seen[visit] = true
		if err := c.keys(src, fields, setting, nil); err != nil {
			return err
		}
	}
	return nil
}

// unknownKey reports a key that no field takes, with the closest known
// key when one is close.
func (c *shapeChecker) unknownKey(key *yaml.Node, fields []yamlField, setting string) error {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	hint := suggest(key.Value, names)
	if hint == "" && setting == "" {
		if _, isSetting := sharedSettingKeys()[key.Value]; isSetting {
			hint = fmt.Sprintf(" (did you mean %q?)", "settings."+key.Value)
		}
	}
	where := setting + ": unknown setting"
	if setting == "" {
		where = "unknown top-level setting"
	}
	return fmt.Errorf("%s: line %d: %s %q%s: use %s", c.path, key.Line, where, key.Value, hint,
		orList(names))
}

// list checks a node that decodes into the slice or array type t.
func (c *shapeChecker) list(n *yaml.Node, t reflect.Type, setting string) error {
	elem := t.Elem()
	if n.Kind != yaml.SequenceNode {
		switch {
		case isStructType(elem):
			return c.invalid(n, setting, `want a list, each item starting with "- ", not `+kindName(n))
		case n.Kind == yaml.ScalarNode && isPlainExample(n.Value):
			return c.invalid(n, setting, fmt.Sprintf("want a list, such as [%s]", n.Value))
		}
		return c.invalid(n, setting, "want a list, not "+kindName(n))
	}
	for i, item := range n.Content {
		if err := c.check(item, elem, fmt.Sprintf("%s[%d]", setting, i)); err != nil {
			return err
		}
	}
	return nil
}

// dictionary checks a node that decodes into the map type t.
func (c *shapeChecker) dictionary(n *yaml.Node, t reflect.Type, setting string) error {
	if n.Kind != yaml.MappingNode {
		return c.invalid(n, setting, "want a mapping of names to values, not "+kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			return c.invalid(key, setting, "want a name, not "+kindName(key))
		}
		if err := c.check(key, t.Key(), setting); err != nil {
			return err
		}
		if err := c.check(value, t.Elem(), join(setting, key.Value)); err != nil {
			return err
		}
	}
	return nil
}

// scalar checks a node that decodes into a number, switch, duration or
// text of type t.
func (c *shapeChecker) scalar(n *yaml.Node, t reflect.Type, setting string) error {
	want := wantScalar(t)
	if n.Kind != yaml.ScalarNode {
		return c.invalid(n, setting, want+", not "+kindName(n))
	}
	if isIntegerKind(t.Kind()) && t != durationType && n.Tag == "!!float" {
		// The decoder truncates 1.5 to 1; only a whole number may pass.
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
			return c.invalid(n, setting, want)
		}
	}
	return c.decodes(n, t, setting, want)
}

// decodes reports whether n decodes into a value of type t; want is the
// fix that the message gives when it does not.
func (c *shapeChecker) decodes(n *yaml.Node, t reflect.Type, setting, want string) error {
	if err := n.Decode(reflect.New(t).Interface()); err == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 &&
		isNumericKind(t.Kind()) && t != durationType && n.Value != "" {
		if probe := (yaml.Node{Kind: yaml.ScalarNode, Value: n.Value}); probe.Decode(reflect.New(t).Interface()) == nil {
			want += ", without quotes"
		}
	}
	return c.invalid(n, setting, want)
}

// invalid returns the message for node n of setting: with its value when n
// is a scalar, else with the fix alone.
func (c *shapeChecker) invalid(n *yaml.Node, setting, want string) error {
	if n.Kind == yaml.ScalarNode && setting != "" {
		return fmt.Errorf("%s: line %d: %s=%s: invalid: %s", c.path, n.Line, setting, quote(n.Value), want)
	}
	if setting == "" {
		return fmt.Errorf("%s: line %d: invalid: %s", c.path, n.Line, want)
	}
	return fmt.Errorf("%s: line %d: %s: invalid: %s", c.path, n.Line, setting, want)
}

// wantMapping describes the mapping that a struct with fields decodes from.
func (c *shapeChecker) wantMapping(fields []yamlField, setting string, found *yaml.Node) string {
	if setting == "" {
		return `want a mapping of top-level settings such as "routes:", not ` + kindName(found)
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	want := "want a mapping of " + andList(names)
	if found.Kind == yaml.ScalarNode && len(fields) > 0 && isPlainExample(found.Value) {
		// Text where a mapping belongs is most often the value of its
		// first field, such as a route written as its pattern.
		return fmt.Sprintf("%s, such as {%s: %s}", want, fields[0].name, found.Value)
	}
	return want + ", not " + kindName(found)
}

// isPlainExample reports whether a value can be shown unquoted inside a
// suggestion: short, one line and printable.
func isPlainExample(v string) bool {
	return v != "" && len(v) <= 40 && !strings.ContainsFunc(v, func(r rune) bool {
		return r < ' ' || r == 0x7f || r == utf8.RuneError
	})
}

// kindName names the kind of a node for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "text"
}

// wantScalar describes the scalar that type t decodes from.
func wantScalar(t reflect.Type) string {
	switch k := t.Kind(); {
	case t == durationType:
		return "want a duration such as 500ms, 30s or 1m"
	case isIntegerKind(k):
		return "want a whole number of 0 or more, such as 5"
	case k == reflect.Float32 || k == reflect.Float64:
		return "want a number such as 0.5"
	case k == reflect.Bool:
		return "want true or false"
	}
	return "want text"
}

func isIntegerKind(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Uint64
}

func isNumericKind(k reflect.Kind) bool {
	return isIntegerKind(k) || k == reflect.Float32 || k == reflect.Float64
}

func isStructType(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != nodeType
}

// join appends key to the setting path. A key that is not a plain name,
// such as a map key with spaces or a newline, is quoted.
func join(setting, key string) string {
	if !isPlainName(key) {
		key = strconv.Quote(key)
	}
	if setting == "" {
		return key
	}
	return setting + "." + key
}

// isPlainName reports whether key can stand unquoted in a setting path.
func isPlainName(key string) bool {
	return key != "" && len(key) <= 64 && !strings.ContainsFunc(key, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' ||
			r >= 'A' && r <= 'Z')
	})
}

// yamlField is a key that a struct decodes.
type yamlField struct {
	name string
	typ  reflect.Type
}

// yamlFields lists the keys of struct type t in field order, as the YAML
// decoder reads them: the tag's name, else the lower-case field name, with
// inline structs' keys in place and "-" fields left out.
func yamlFields(t reflect.Type) []yamlField {
	var fields []yamlField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fields = append(fields, yamlFields(ft)...)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields = append(fields, yamlField{name: name, typ: f.Type})
	}
	return fields
}

func findField(fields []yamlField, name string) (yamlField, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return yamlField{}, false
}

// suggest returns ` (did you mean "name"?)` for the name in names that
// key most likely misspells, or "" when none is close.
func suggest(key string, names []string) string {
	if name := closest(key, names); name != "" {
		return fmt.Sprintf(" (did you mean %q?)", name)
	}
	return ""
}

// closest returns the name in names that key most likely misspells, or ""
// when none is close: at most two edits apart, after letter case and
// dashes are ignored, and fewer edits than key has letters.
func closest(key string, names []string) string {
	normal := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	best, bestDistance := "", 3
	for _, name := range names {
		d := editDistance(normal, name)
		if d < bestDistance && d < len(key) {
			best, bestDistance = name, d
		}
	}
	return best
}

// editDistance returns the optimal string alignment distance of a and b:
// the fewest insertions, deletions, substitutions and swaps of adjacent
// bytes that turn a into b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Only short names are compared; long keys are never close.
		return math.MaxInt
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// sharedSettingKeys returns the file keys of Settings, to point a setting
// written at the top level of the file to the settings section.
func sharedSettingKeys() map[string]struct{} {
	var s Settings
	keys := map[string]struct{}{}
	for _, v := range s.Vars() {
		keys[v.Key] = struct{}{}
	}
	return keys
}

// andList formats ["a", "b", "c"] as "a, b and c".
func andList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
