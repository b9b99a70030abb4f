package identity

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Default and bounds of the IPv6 grouping prefix.
const (
	DefaultIPv6PrefixLength = 64
	MinIPv6PrefixLength     = 32
	MaxIPv6PrefixLength     = 128
)

// Header names that trusted proxies use to pass on the client address.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
	HeaderXRealIP       = "X-Real-IP"
)

// DefaultClientIPHeaders is the order in which ClientIP consults the
// forwarding headers of a trusted peer: the first header present decides.
var DefaultClientIPHeaders = []string{HeaderXForwardedFor, HeaderForwarded, HeaderXRealIP}

// ClientIPConfig configures how the client address is found behind proxies.
// The zero value trusts no proxy and groups IPv6 clients by /64.
type ClientIPConfig struct {
	// TrustedProxies lists the addresses and networks of the proxies in
	// front of the server (RATELIMIT_FP_TRUSTED_PROXIES). Forwarding headers
	// are read only from a peer inside one of them, and entries inside them
	// are skipped when walking X-Forwarded-For or Forwarded from the right.
	TrustedProxies []netip.Prefix
	// TrustForwardedFor trusts the forwarding headers of every direct peer,
	// for deployments behind a proxy whose address cannot be listed
	// (RATELIMIT_FP_TRUST_X_FORWARDED_FOR). Only the peer itself is trusted
	// implicitly; header entries are still skipped only when they are in
	// TrustedProxies. A client that reaches the server directly can then
	// choose its own address, so leave it off when the server is exposed.
	TrustForwardedFor bool
	// IPv6PrefixLength groups IPv6 clients into networks of this size, so
	// that rotating addresses inside one allocation does not earn new
	// buckets (RATELIMIT_FP_IPV6_PREFIX_LENGTH). Zero means 64; otherwise
	// 32 to 128.
	IPv6PrefixLength int
	// Headers is the order in which forwarding headers are consulted; the
	// first one present decides and the others are ignored. List only the
	// headers that the trusted proxies write, because a header the proxy
	// passes through unchanged is under the client's control. Nil means
	// DefaultClientIPHeaders. Names other than X-Forwarded-For, Forwarded
	// and X-Real-IP are read like X-Real-IP (one bare address).
	Headers []string
}

// ClientIPResolver finds the address of the client behind trusted proxies.
// It is safe for concurrent use and never modifies its configuration.
type ClientIPResolver struct {
	trusted    []netip.Prefix
	trustPeer  bool
	ipv6Prefix int
	headers    []string
}

// NewClientIPResolver validates cfg and returns a resolver.
func NewClientIPResolver(cfg ClientIPConfig) (*ClientIPResolver, error) {
	bits := cfg.IPv6PrefixLength
	if bits == 0 {
		bits = DefaultIPv6PrefixLength
	}
	if bits < MinIPv6PrefixLength || bits > MaxIPv6PrefixLength {
		return nil, fmt.Errorf("invalid IPv6 prefix length %d: use %d to %d (default %d)",
			bits, MinIPv6PrefixLength, MaxIPv6PrefixLength, DefaultIPv6PrefixLength)
	}
	headers := cfg.Headers
	if headers == nil {
		headers = DefaultClientIPHeaders
	}
	canonical := make([]string, 0, len(headers))
	for _, h := range headers {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, " \t\r\n:") {
			return nil, fmt.Errorf("invalid client IP header name %q", h)
		}
		canonical = append(canonical, http.CanonicalHeaderKey(h))
	}
	trusted := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid trusted proxy network %v", p)
		}
		trusted = append(trusted, unmapPrefix(p).Masked())
	}
	return &ClientIPResolver{
		trusted:    trusted,
		trustPeer:  cfg.TrustForwardedFor,
		ipv6Prefix: bits,
		headers:    canonical,
	}, nil
}

// ParseTrustedProxies parses a comma-separated list of IP addresses and
// CIDR networks, such as "10.0.0.0/8, 192.0.2.7, 2001:db8::/32". An empty
// string returns no networks.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("entry %q is not an IP address or a CIDR network such "+
					"as 10.0.0.0/8 or 2001:db8::/32", part)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("entry %q is not an IP address or a CIDR network such "+
				"as 10.0.0.0/8 or 2001:db8::/32", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ClientIP returns the address of the client that sent r: the peer address,
// or, when the peer is a trusted proxy, the address the proxies recorded.
// IPv4-mapped IPv6 addresses are unwrapped. It returns the zero Addr when
// the peer address is not an IP address (a Unix socket, for example).
func (c *ClientIPResolver) ClientIP(r *http.Request) netip.Addr {
	peer := PeerAddr(r)
	if !c.TrustsPeer(r) {
		return peer
	}
	for _, name := range c.headers {
		values := r.Header.Values(name)
		if len(values) == 0 {
			continue
		}
		var (
			client netip.Addr
			ok     bool
		)
		switch name {
		case HeaderXForwardedFor:
			client, ok = c.walk(values, lastForwardedForEntry)
		case HeaderForwarded:
			client, ok = c.walk(values, lastForwardedElement)
		default:
			client, ok = parseRealIP(values)
		}
		if !ok {
			return peer
		}
		return client
	}
	return peer
}

// TrustsPeer reports whether the direct peer of r may set forwarding
// headers: it is inside TrustedProxies, or TrustForwardedFor is on.
func (c *ClientIPResolver) TrustsPeer(r *http.Request) bool {
	peer := PeerAddr(r)
	return peer.IsValid() && (c.trustPeer || c.isTrusted(peer))
}

// ClientNetwork returns the client address grouped for rate limiting: IPv4
// addresses as themselves (a /32), IPv6 addresses masked to the configured
// prefix. It returns the zero Prefix when the client address is unknown.
func (c *ClientIPResolver) ClientNetwork(r *http.Request) netip.Prefix {
	return c.Group(c.ClientIP(r))
}

// Group masks a to the network that shares one bucket: the address itself
// for IPv4 (and IPv4-mapped IPv6), the configured prefix for IPv6.
func (c *ClientIPResolver) Group(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.Prefix(c.ipv6Prefix)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// PeerAddr returns the address of the direct peer from r.RemoteAddr, with
// IPv4-mapped addresses unwrapped and any zone dropped, or the zero Addr when
// RemoteAddr holds no IP address.
func PeerAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

func (c *ClientIPResolver) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxForwardingHops bounds how many entries ClientIP examines from the right
// of a forwarding header, so a long header costs bounded work.
const maxForwardingHops = 32

// walk returns the rightmost address of a forwarding header that is not a
// trusted proxy. Header lines are read from the last one backwards, and
// next splits off the last entry of one line. ok is false when an examined
// entry is not a valid address: the proxy that wrote it is trusted, so no
// address to its left can be trusted either.
func (c *ClientIPResolver) walk(values []string, next func(string) (string, netip.Addr, bool)) (
	netip.Addr, bool) {
	var leftmost netip.Addr
	hops := 0
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for strings.TrimSpace(rest) != "" {
			if hops == maxForwardingHops {
				return leftmost, leftmost.IsValid()
			}
			hops++
			var (
				a  netip.Addr
				ok bool
			)
			rest, a, ok = next(rest)
			if !ok {
				return netip.Addr{}, false
			}
			if !c.isTrusted(a) {
				return a, true
			}
			leftmost = a
		}
	}
	// Every entry is a trusted proxy: the request started inside the
	// trusted network, and the hop closest to it is the client.
	return leftmost, leftmost.IsValid()
}

// maxRealIPLength bounds an X-Real-IP value.
const maxRealIPLength = 64

// parseRealIP reads a header that carries exactly one bare address.
func parseRealIP(values []string) (netip.Addr, bool) {
	if len(values) != 1 || len(values[0]) > maxRealIPLength {
		return netip.Addr{}, false
	}
	return parseBareAddr(strings.TrimSpace(values[0]))
}

// parseBareAddr parses an address without port, brackets or zone.
func parseBareAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if !a.Is4In6() {
		return p
	}
	bits := p.Bits() - 96
	if bits < 0 {
		bits = 0
	}
	return netip.PrefixFrom(a.Unmap(), bits)
}
