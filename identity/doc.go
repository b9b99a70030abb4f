// Package identity decides who the client of a request is, so that rate
// limits apply to one client and cannot be dodged by changing a header.
//
// It finds the client address behind trusted proxies (X-Forwarded-For,
// RFC 7239 Forwarded, X-Real-IP), groups IPv6 clients by network, builds a
// keyed fingerprint of the request at a configurable level, verifies JWT
// bearer tokens, API keys and sessions, and maps a verified identity to a
// tier. The result is an Identity stored in the request context, where the
// middleware, the policy and the circuit breaker read it.
package identity
