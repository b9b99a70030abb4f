package httplimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
)

// KeyFunc returns the identity of the client that sent r, such as its
// address or account. The limiter hashes it before it reaches a store or a
// log. An error, or an empty key, makes the request count as UnknownClient.
type KeyFunc func(r *http.Request) (string, error)

// UnknownClient is the shared identity of requests whose key cannot be
// derived. They are limited together, never waved through.
const UnknownClient = "unknown"

// ipv6PrefixBits is how much of an IPv6 address identifies one client: a
// /64 is the smallest network a site is usually given, and one host can
// pick any address inside it.
const ipv6PrefixBits = 64

// PeerIP is the default KeyFunc: the address of the TCP peer from
// r.RemoteAddr, without the port. An IPv4-mapped IPv6 address counts as
// its IPv4 address, and an IPv6 address counts as its /64 network, such as
// "2001:db8:1:2::/64". It does not read forwarding headers; behind a proxy,
// use a KeyFunc that trusts only the proxy's header.
func PeerIP(r *http.Request) (string, error) {
	addr, err := peerAddr(r.RemoteAddr)
	if err != nil {
		return "", err
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String(), nil
	}
	prefix, err := addr.Prefix(ipv6PrefixBits)
	if err != nil {
		return "", fmt.Errorf("grouping %s: %w", addr, err)
	}
	return prefix.String(), nil
}

// peerAddr parses "host:port" or a bare address.
func peerAddr(remote string) (netip.Addr, error) {
	if remote == "" {
		return netip.Addr{}, errors.New("no remote address")
	}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr(), nil
	}
	addr, err := netip.ParseAddr(remote)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid remote address %q", remote)
	}
	return addr, nil
}

// clientKey returns the client identity of r, or UnknownClient.
func (l *Limiter) clientKey(r *http.Request) string {
	key, err := l.keyFunc(r)
	if err != nil || key == "" {
		l.log.Debug("client key not derived; counting the request as unknown", "err", err)
		return UnknownClient
	}
	return key
}
