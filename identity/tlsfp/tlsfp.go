// Package tlsfp computes a JA4-style fingerprint of a TLS ClientHello and
// carries it from the handshake to the HTTP handler of that connection.
//
// A server that terminates TLS itself wires it in three places:
//
//	srv.TLSConfig = tlsfp.Config(srv.TLSConfig)
//	srv.ConnContext = tlsfp.ConnContext
//	srv.ServeTLS(tlsfp.NewListener(ln), certFile, keyFile)
//
// and a handler reads the fingerprint with FromContext(r.Context()).
//
// The layout follows the JA4 TLS client fingerprint published by FoxIO
// (github.com/FoxIO-LLC/ja4): "t13d1516h2_<ciphers>_<extensions>". Part a
// is the transport, the highest TLS version, SNI present (d) or not (i), the
// counts of cipher suites and extensions, and the first and last character
// of the first ALPN protocol. Part b is a truncated SHA-256 of the sorted
// cipher suites, part c of the sorted extensions (without SNI and ALPN)
// followed by the signature algorithms in the order sent. GREASE values are
// left out throughout.
package tlsfp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
)

// Extension IDs that JA4 leaves out of part c.
const (
	extServerName = 0x0000
	extALPN       = 0x0010
)

// Fingerprint returns the JA4-style fingerprint of a ClientHello received
// over TCP. It never fails: missing parts are written as zeros.
func Fingerprint(hello *tls.ClientHelloInfo) string {
	ciphers := withoutGREASE(hello.CipherSuites)
	extensions := withoutGREASE(hello.Extensions)

	var b strings.Builder
	b.Grow(36)
	b.WriteByte('t')
	b.WriteString(versionCode(hello.SupportedVersions))
	if hello.ServerName != "" {
		b.WriteByte('d')
	} else {
		b.WriteByte('i')
	}
	fmt.Fprintf(&b, "%02d%02d", min(len(ciphers), 99), min(len(extensions), 99))
	b.WriteString(alpnCode(hello.SupportedProtos))
	b.WriteByte('_')

	slices.Sort(ciphers)
	b.WriteString(truncatedHash(hexList(ciphers)))
	b.WriteByte('_')

	kept := extensions[:0]
	for _, e := range extensions {
		if e != extServerName && e != extALPN {
			kept = append(kept, e)
		}
	}
	slices.Sort(kept)
	text := hexList(kept)
	schemes := make([]uint16, 0, len(hello.SignatureSchemes))
	for _, s := range hello.SignatureSchemes {
		schemes = append(schemes, uint16(s))
	}
	if schemes = withoutGREASE(schemes); len(schemes) > 0 {
		text += "_" + hexList(schemes)
	}
	b.WriteString(truncatedHash(text))
	return b.String()
}

// isGREASE reports whether v is one of the reserved values of RFC 8701
// (0x0a0a, 0x1a1a, ... 0xfafa) that clients send to keep servers tolerant.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

func withoutGREASE(in []uint16) []uint16 {
	out := make([]uint16, 0, len(in))
	for _, v := range in {
		if !isGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

// versionCode names the highest non-GREASE version offered.
func versionCode(versions []uint16) string {
	var best uint16
	for _, v := range versions {
		if !isGREASE(v) && v > best {
			best = v
		}
	}
	switch best {
	case tls.VersionTLS13:
		return "13"
	case tls.VersionTLS12:
		return "12"
	case tls.VersionTLS11:
		return "11"
	case tls.VersionTLS10:
		return "10"
	case 0x0300: // SSL 3.0, which crypto/tls no longer negotiates
		return "s3"
	}
	return "00"
}

// alpnCode returns the first and last character of the first ALPN
// protocol, or of its hexadecimal form when either is not alphanumeric.
func alpnCode(protos []string) string {
	if len(protos) == 0 || protos[0] == "" {
		return "00"
	}
	p := protos[0]
	first, last := p[0], p[len(p)-1]
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	h := hex.EncodeToString([]byte(p))
	return string([]byte{h[0], h[len(h)-1]})
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func hexList(vs []uint16) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%04x", v)
	}
	return strings.Join(parts, ",")
}

// truncatedHash returns the first 12 hexadecimal characters of the SHA-256
// of text, or twelve zeros for an empty list.
func truncatedHash(text string) string {
	if text == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:6])
}

// conn is a connection accepted by a fingerprinting listener. The handshake
// writes the fingerprint once and handlers read it afterwards.
type conn struct {
	net.Conn
	fingerprint atomic.Pointer[string]
}

type listener struct{ net.Listener }

// NewListener wraps ln so that each accepted connection can store the
// fingerprint of its ClientHello. Pass the result to http.Server.ServeTLS or
// tls.NewListener.
func NewListener(ln net.Listener) net.Listener { return listener{ln} }

// Accept waits for the next connection and wraps it.
func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// Config returns a copy of base whose GetConfigForClient records the
// fingerprint of each ClientHello on connections from NewListener, then
// calls base's own GetConfigForClient when it has one. A nil base is an
// empty configuration.
func Config(base *tls.Config) *tls.Config {
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := hello.Conn.(*conn); ok {
			fp := Fingerprint(hello)
			c.fingerprint.Store(&fp)
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return cfg
}

type contextKey struct{}

// ConnContext is an http.Server ConnContext hook that makes the connection's
// fingerprint readable from every request context on it. It leaves ctx
// unchanged for connections that do not come from NewListener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if fc, ok := c.(*conn); ok {
		return context.WithValue(ctx, contextKey{}, fc)
	}
	return ctx
}

// FromContext returns the fingerprint of the TLS connection a request
// arrived on, or "" when the request did not come over a fingerprinted
// connection.
func FromContext(ctx context.Context) string {
	c, ok := ctx.Value(contextKey{}).(*conn)
	if !ok {
		return ""
	}
	if fp := c.fingerprint.Load(); fp != nil {
		return *fp
	}
	return ""
}
