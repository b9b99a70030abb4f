package httplimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sfItem is one parsed RFC 9651 list member: a String or Token bare item
// with Integer, String, Token or Boolean parameters.
type sfItem struct {
	value  string
	params map[string]any
	order  []string
}

// parseSFList parses a List field value as RFC 9651 section 4.2.1 specifies,
// for the subset of types the rate-limit fields use. It rejects inner lists,
// decimals and byte sequences rather than skipping them.
func parseSFList(s string) ([]sfItem, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var items []sfItem
	for !p.done() {
		it, err := p.item()
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		p.skipOWS()
		if p.done() {
			return items, nil
		}
		if p.s[p.i] != ',' {
			return nil, fmt.Errorf("offset %d: want ',' after a member, found %q", p.i, p.s[p.i])
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return nil, errors.New("trailing comma")
		}
	}
	if len(items) == 0 {
		return nil, errors.New("empty list")
	}
	return items, nil
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) skipSP() {
	for !p.done() && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) item() (sfItem, error) {
	v, err := p.bareItem()
	if err != nil {
		return sfItem{}, err
	}
	s, ok := v.(string)
	if !ok {
		return sfItem{}, fmt.Errorf("member is %T, want a String", v)
	}
	it := sfItem{value: s, params: map[string]any{}}
	for !p.done() && p.s[p.i] == ';' {
		p.i++
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return sfItem{}, err
		}
		var val any = true
		if !p.done() && p.s[p.i] == '=' {
			p.i++
			if val, err = p.bareItem(); err != nil {
				return sfItem{}, err
			}
		}
		if _, dup := it.params[key]; !dup {
			it.order = append(it.order, key)
		}
		it.params[key] = val
	}
	return it, nil
}

func (p *sfParser) key() (string, error) {
	start := p.i
	if p.done() || !(p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] == '*') {
		return "", fmt.Errorf("offset %d: parameter key must start with a lowercase letter or '*'", p.i)
	}
	for !p.done() {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*' {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) bareItem() (any, error) {
	if p.done() {
		return nil, errors.New("missing item")
	}
	c := p.s[p.i]
	switch {
	case c == '-' || c >= '0' && c <= '9':
		return p.integer()
	case c == '"':
		return p.str()
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return p.s[p.i-1] == '1', nil
		}
		return nil, fmt.Errorf("offset %d: invalid boolean", p.i)
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		start := p.i
		for !p.done() && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfToken(p.s[start:p.i]), nil
	}
	return nil, fmt.Errorf("offset %d: unsupported item starting with %q", p.i, c)
}

type sfToken string

func (p *sfParser) integer() (int64, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if n := p.i - digits; n == 0 || n > 15 {
		return 0, fmt.Errorf("offset %d: integer must have 1 to 15 digits", start)
	}
	if !p.done() && p.s[p.i] == '.' {
		return 0, fmt.Errorf("offset %d: decimals are not expected", p.i)
	}
	return strconv.ParseInt(p.s[start:p.i], 10, 64)
}

func (p *sfParser) str() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.done() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", fmt.Errorf("offset %d: invalid escape", p.i)
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c == '"':
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("offset %d: byte %#x not allowed in a String", p.i-1, c)
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated String")
}

func isTChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
