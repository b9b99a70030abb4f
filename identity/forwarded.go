package identity

import (
	"net/netip"
	"strconv"
	"strings"
)

// Bounds on the forwarding header entries that ClientIP parses. An entry
// longer than these is not an address, so it is rejected before any work.
const (
	maxForwardedForEntry = 64  // the longest IPv6 text is 45 bytes
	maxForwardedElement  = 512 // one RFC 7239 element with for, by, host, proto
)

// lastForwardedForEntry splits the last comma-separated entry off one
// X-Forwarded-For line. The entry must be a bare IP address: ports,
// brackets, zones, "unknown" and anything else make ok false.
func lastForwardedForEntry(line string) (rest string, addr netip.Addr, ok bool) {
	entry := line
	if i := strings.LastIndexByte(line, ','); i >= 0 {
		rest, entry = line[:i], line[i+1:]
	}
	entry = strings.Trim(entry, " \t")
	if len(entry) > maxForwardedForEntry {
		return "", netip.Addr{}, false
	}
	addr, ok = parseBareAddr(entry)
	return rest, addr, ok
}

// lastForwardedElement splits the last element off one RFC 7239 Forwarded
// line and returns the address in its "for" parameter. Ports are allowed
// and dropped, as the RFC's node syntax permits them. An element without a
// "for" parameter, with "unknown" or an obfuscated identifier, or with
// broken syntax makes ok false.
func lastForwardedElement(line string) (rest string, addr netip.Addr, ok bool) {
	start, ok := lastElementStart(line)
	if !ok {
		return "", netip.Addr{}, false
	}
	element := line[start:]
	if start > 0 {
		rest = line[:start-1]
	}
	value, ok := forwardedFor(element)
	if !ok {
		return "", netip.Addr{}, false
	}
	addr, ok = parseForwardedNode(value)
	return rest, addr, ok
}

// lastElementStart scans line backwards for the last comma outside a quoted
// string and returns the index after it. Quotes preceded by an odd number of
// backslashes are escaped. ok is false for an unbalanced quote or an element
// longer than maxForwardedElement.
func lastElementStart(line string) (int, bool) {
	inQuote := false
	for i := len(line) - 1; i >= 0; i-- {
		if len(line)-i > maxForwardedElement {
			return 0, false
		}
		switch line[i] {
		case '"':
			backslashes := 0
			for j := i - 1; j >= 0 && line[j] == '\\'; j-- {
				backslashes++
			}
			if backslashes%2 == 0 {
				inQuote = !inQuote
			}
		case ',':
			if !inQuote {
				return i + 1, true
			}
		}
	}
	return 0, !inQuote
}

// forwardedFor returns the unquoted value of the only "for" parameter of
// one element ("for=192.0.2.1;proto=https").
func forwardedFor(element string) (string, bool) {
	var (
		found bool
		value string
	)
	rest := element
	for {
		rest = strings.TrimLeft(rest, " \t")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return "", false
		}
		name := strings.TrimSpace(rest[:eq])
		if !isToken(name) {
			return "", false
		}
		v, after, ok := cutParamValue(rest[eq+1:])
		if !ok {
			return "", false
		}
		if strings.EqualFold(name, "for") {
			if found {
				return "", false
			}
			found, value = true, v
		}
		after = strings.TrimLeft(after, " \t")
		if after == "" {
			return value, found
		}
		if after[0] != ';' {
			return "", false
		}
		rest = after[1:]
	}
}

// cutParamValue reads a token or a quoted string from the start of s and
// returns it unquoted with the text after it.
func cutParamValue(s string) (value, rest string, ok bool) {
	if s == "" {
		return "", "", false
	}
	if s[0] != '"' {
		end := strings.IndexAny(s, "; \t")
		if end < 0 {
			end = len(s)
		}
		if end == 0 {
			return "", "", false
		}
		return s[:end], s[end:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// parseForwardedNode parses an RFC 7239 node: "192.0.2.1", "192.0.2.1:80",
// "[2001:db8::1]" or "[2001:db8::1]:80". Bare IPv6 without brackets is
// accepted too, because it cannot be mistaken for an address with a port.
func parseForwardedNode(node string) (netip.Addr, bool) {
	if a, ok := parseBareAddr(node); ok {
		return a, true
	}
	if strings.HasPrefix(node, "[") {
		end := strings.IndexByte(node, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		a, ok := parseBareAddr(node[1:end])
		if !ok || !a.Is6() {
			return netip.Addr{}, false
		}
		port := node[end+1:]
		if port != "" && (port[0] != ':' || !validPort(port[1:])) {
			return netip.Addr{}, false
		}
		return a, true
	}
	host, port, found := strings.Cut(node, ":")
	if !found || !validPort(port) {
		return netip.Addr{}, false
	}
	a, ok := parseBareAddr(host)
	if !ok || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// validPort accepts a decimal port or an RFC 7239 obfuscated port ("_abc").
func validPort(p string) bool {
	if strings.HasPrefix(p, "_") {
		return len(p) > 1 && isToken(p)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && len(p) <= 5 && n <= 65535
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
