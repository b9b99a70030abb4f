package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/calm-limiter/calm/identity/tlsfp"
)

// Level selects which parts of a request make up the fingerprint of an
// anonymous client (RATELIMIT_FP_LEVEL).
type Level string

// Fingerprint levels. Each level includes the parts of the one before it.
const (
	// LevelRelaxed uses the client network and the credential-derived key.
	LevelRelaxed Level = "relaxed"
	// LevelNormal adds the User-Agent. It is the default.
	LevelNormal Level = "normal"
	// LevelStrict adds Accept-Language, Accept-Encoding, a hash of the
	// fingerprint-relevant headers, the header names and the TLS
	// fingerprint.
	LevelStrict Level = "strict"
	// LevelCustom uses exactly the parts switched on in Components.
	LevelCustom Level = "custom"
)

// ParseLevel parses a level name; the empty string means LevelNormal.
func ParseLevel(s string) (Level, error) {
	switch l := Level(strings.ToLower(strings.TrimSpace(s))); l {
	case "":
		return LevelNormal, nil
	case LevelRelaxed, LevelNormal, LevelStrict, LevelCustom:
		return l, nil
	}
	return "", fmt.Errorf("invalid fingerprint level %q: use relaxed, normal, strict or custom", s)
}

// Components switches the parts of a fingerprint on and off. Each field
// matches one RATELIMIT_FP_USE_* setting and applies only at LevelCustom.
type Components struct {
	IP             bool // RATELIMIT_FP_USE_IP: the client network (IPv6 grouped)
	UserAgent      bool // RATELIMIT_FP_USE_USER_AGENT
	AcceptLanguage bool // RATELIMIT_FP_USE_ACCEPT_LANGUAGE
	AcceptEncoding bool // RATELIMIT_FP_USE_ACCEPT_ENCODING
	HeadersHash    bool // RATELIMIT_FP_USE_HEADERS_HASH: values of FingerprintHeaders
	HeaderOrder    bool // RATELIMIT_FP_USE_HEADER_ORDER: names of the headers sent
	TLS            bool // RATELIMIT_FP_USE_TLS: JA4-style ClientHello fingerprint
	Auth           bool // RATELIMIT_FP_USE_AUTH: key derived from an unverified credential
}

// ComponentsFor returns the parts that level uses; custom is returned as is
// for LevelCustom and ignored otherwise.
func ComponentsFor(level Level, custom Components) Components {
	switch level {
	case LevelRelaxed:
		return Components{IP: true, Auth: true}
	case LevelStrict:
		return Components{IP: true, UserAgent: true, AcceptLanguage: true, AcceptEncoding: true,
			HeadersHash: true, HeaderOrder: true, TLS: true, Auth: true}
	case LevelCustom:
		return custom
	}
	return Components{IP: true, UserAgent: true, Auth: true}
}

// FingerprintHeaders lists the request headers whose values the headers
// hash covers: the ones browsers and HTTP clients set differently from each
// other and keep stable between requests.
var FingerprintHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Cache-Control",
	"Connection", "Dnt", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
	"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
	"Upgrade-Insecure-Requests", "User-Agent",
}

// Tags that start each part of the fingerprint input. Every part is written
// as tag, length, bytes, so no value can make two different requests encode
// the same input, whatever separators it contains.
const (
	tagIP byte = iota + 1
	tagUserAgent
	tagAcceptLanguage
	tagAcceptEncoding
	tagHeadersHash
	tagHeaderOrder
	tagTLS
	tagAuth
)

// maxFingerprintValue bounds the bytes of one header value that enter the
// fingerprint, so a huge header costs bounded hashing.
const maxFingerprintValue = 1024

// fingerprinter computes keyed fingerprints and hashes. It is safe for
// concurrent use and must not be copied after first use.
type fingerprinter struct {
	secret []byte
	parts  Components
	pool   sync.Pool // *scratch
}

// scratch is the reusable state of one hash computation.
type scratch struct {
	mac hash.Hash // HMAC-SHA-256 under the secret
	buf []byte
}

func (f *fingerprinter) getScratch() *scratch {
	if s, ok := f.pool.Get().(*scratch); ok {
		s.mac.Reset()
		s.buf = s.buf[:0]
		return s
	}
	return &scratch{mac: hmac.New(sha256.New, f.secret), buf: make([]byte, 0, 256)}
}

// maxPooledBuffer keeps buffers grown by huge inputs out of the pool.
const maxPooledBuffer = 16 << 10

func (f *fingerprinter) putScratch(s *scratch) {
	if cap(s.buf) <= maxPooledBuffer {
		f.pool.Put(s)
	}
}

// sum returns "prefix" followed by the first 128 bits of the HMAC of
// s.buf in hexadecimal.
func (s *scratch) sum(prefix string) string {
	s.mac.Write(s.buf)
	var digest [sha256.Size]byte
	mac := s.mac.Sum(digest[:0])
	out := make([]byte, len(prefix)+32)
	copy(out, prefix)
	hex.Encode(out[len(prefix):], mac[:16])
	return string(out)
}

// fingerprint returns "fp:" and the hex HMAC-SHA-256 (first 128 bits) of
// the parts of r selected by f.parts. network is the grouped client
// address and auth the key derived from an unverified credential, or "".
func (f *fingerprinter) fingerprint(r *http.Request, network, auth string) string {
	s := f.getScratch()
	defer f.putScratch(s)
	p := f.parts
	b := s.buf
	if p.IP {
		b = appendPart(b, tagIP, network)
	}
	if p.UserAgent {
		b = appendPart(b, tagUserAgent, headerValue(r, "User-Agent"))
	}
	if p.AcceptLanguage {
		b = appendPart(b, tagAcceptLanguage, headerValue(r, "Accept-Language"))
	}
	if p.AcceptEncoding {
		b = appendPart(b, tagAcceptEncoding, headerValue(r, "Accept-Encoding"))
	}
	if p.HeadersHash {
		b = appendPart(b, tagHeadersHash, headersDigest(r))
	}
	if p.HeaderOrder {
		b = appendPart(b, tagHeaderOrder, headerNames(r))
	}
	if p.TLS {
		b = appendPart(b, tagTLS, tlsfp.FromContext(r.Context()))
	}
	if p.Auth {
		b = appendPart(b, tagAuth, auth)
	}
	s.buf = b
	return s.sum("fp:")
}

// hash returns prefix and the keyed hash of value under a domain label,
// so that equal values of different kinds never share a hash.
func (f *fingerprinter) hash(prefix, label, value string) string {
	s := f.getScratch()
	defer f.putScratch(s)
	s.buf = appendPart(s.buf, 0, label)
	s.buf = appendPart(s.buf, 1, value)
	return s.sum(prefix)
}

// appendPart appends tag, the length of value as a uvarint, and value.
func appendPart(b []byte, tag byte, value string) []byte {
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// headerValue joins every line of a header in order, each cut to
// maxFingerprintValue bytes. The line count and a length prefix per line
// come first, so that no single line can spell the encoding of several:
// "3:abc2:de" as one line and "abc", "de" as two stay different.
func headerValue(r *http.Request, name string) string {
	values := r.Header.Values(name)
	if len(values) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(values)))
	b.WriteByte('#')
	for _, v := range values {
		v = truncate(v)
		b.WriteString(fmt.Sprintf("%d:", len(v)))
		b.WriteString(v)
		if b.Len() > maxFingerprintValue {
			break
		}
	}
	return b.String()
}

func truncate(s string) string {
	if len(s) > maxFingerprintValue {
		return s[:maxFingerprintValue]
	}
	return s
}

// headersDigest hashes the values of FingerprintHeaders.
func headersDigest(r *http.Request) string {
	var b []byte
	for i, name := range FingerprintHeaders {
		b = appendPart(b, byte(i), headerValue(r, name))
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// maxHeaderNames bounds how many header names enter the fingerprint.
const maxHeaderNames = 64

// headerNames returns the sorted names of the headers sent.
//
// NOTE: net/http parses headers into a map and does not expose the order in
// which the client sent them, so this part uses the set of names, which
// still distinguishes many clients. Wire order would need a connection-level
// parser.
func headerNames(r *http.Request) string {
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > maxHeaderNames {
		names = names[:maxHeaderNames]
	}
	return strings.Join(names, "\n")
}
