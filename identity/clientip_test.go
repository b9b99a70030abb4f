package identity

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func mustResolver(t testing.TB, cfg ClientIPConfig) *ClientIPResolver {
	t.Helper()
	r, err := NewClientIPResolver(cfg)
	if err != nil {
		t.Fatalf("NewClientIPResolver: %v", err)
	}
	return r
}

func mustProxies(t testing.TB, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(s)
	if err != nil {
		t.Fatalf("ParseTrustedProxies(%q): %v", s, err)
	}
	return p
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := mustProxies(t, "10.0.0.0/8, 192.0.2.7, 2001:db8:ffff::/48")
	tests := []struct {
		name      string
		peer      string
		headers   map[string][]string
		trustPeer bool
		noProxies bool
		want      string
	}{
		{name: "no headers", peer: "203.0.113.5:4000", want: "203.0.113.5"},
		{name: "spoofed XFF from untrusted peer", peer: "203.0.113.5:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.99"}},
			want:    "203.0.113.5"},
		{name: "spoofed X-Real-IP from untrusted peer", peer: "203.0.113.5:4000",
			headers: map[string][]string{"X-Real-Ip": {"198.51.100.99"}},
			want:    "203.0.113.5"},
		{name: "spoofed Forwarded from untrusted peer", peer: "203.0.113.5:4000",
			headers: map[string][]string{"Forwarded": {"for=198.51.100.99"}},
			want:    "203.0.113.5"},
		{name: "XFF from trusted peer", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want:    "198.51.100.1"},
		{name: "XFF rightmost untrusted wins", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1, 10.9.9.9"}},
			want:    "198.51.100.1"},
		{name: "XFF across several lines", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1", "10.9.9.9"}},
			want:    "198.51.100.1"},
		{name: "XFF all trusted gives leftmost", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"10.5.5.5, 10.9.9.9"}},
			want:    "10.5.5.5"},
		{name: "XFF garbage at client position", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"not-an-ip"}},
			want:    "10.1.2.3"},
		{name: "XFF garbage left of client ignored", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"garbage, 198.51.100.1"}},
			want:    "198.51.100.1"},
		{name: "XFF with port falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1:8080"}},
			want:    "10.1.2.3"},
		{name: "XFF bracketed falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"[2001:db8::1]"}},
			want:    "10.1.2.3"},
		{name: "XFF zone falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"fe80::1%eth0"}},
			want:    "10.1.2.3"},
		{name: "XFF overlong entry falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {strings.Repeat("1", 500)}},
			want:    "10.1.2.3"},
		{name: "XFF multi-line value falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1\r\n198.51.100.2"}},
			want:    "10.1.2.3"},
		{name: "XFF empty entry falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1,,"}},
			want:    "10.1.2.3"},
		{name: "XFF long client prefix costs nothing", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {
				strings.Repeat("6.6.6.6,", 10000) + "198.51.100.1"}},
			want: "198.51.100.1"},
		{name: "XFF IPv4-mapped unwrapped", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.1"}},
			want:    "198.51.100.1"},
		{name: "XFF wins over Forwarded", peer: "10.1.2.3:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"198.51.100.1"}, "Forwarded": {"for=198.51.100.2"}},
			want: "198.51.100.1"},
		{name: "Forwarded simple", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {"for=198.51.100.2;proto=https"}},
			want:    "198.51.100.2"},
		{name: "Forwarded quoted IPv6 with port", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {`for="[2001:db8:cafe::17]:4711"`}},
			want:    "2001:db8:cafe::17"},
		{name: "Forwarded IPv4 with port", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {`For="198.51.100.2:80"`}},
			want:    "198.51.100.2"},
		{name: "Forwarded rightmost untrusted", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {
				`for=6.6.6.6, for=198.51.100.2;by=10.0.0.1, for=10.3.3.3`}},
			want: "198.51.100.2"},
		{name: "Forwarded quoted comma in client part", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {`for="a,b", for=198.51.100.2`}},
			want:    "198.51.100.2"},
		{name: "Forwarded unknown falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {"for=unknown"}},
			want:    "10.1.2.3"},
		{name: "Forwarded obfuscated falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {"for=_hidden"}},
			want:    "10.1.2.3"},
		{name: "Forwarded without for falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {"proto=https"}},
			want:    "10.1.2.3"},
		{name: "Forwarded duplicate for falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {"for=198.51.100.2;for=198.51.100.3"}},
			want:    "10.1.2.3"},
		{name: "Forwarded unbalanced quote falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"Forwarded": {`for="198.51.100.2`}},
			want:    "10.1.2.3"},
		{name: "X-Real-IP from trusted peer", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Real-Ip": {"198.51.100.3"}},
			want:    "198.51.100.3"},
		{name: "X-Real-IP twice falls back", peer: "10.1.2.3:4000",
			headers: map[string][]string{"X-Real-Ip": {"198.51.100.3", "198.51.100.4"}},
			want:    "10.1.2.3"},
		{name: "trusted single address", peer: "192.0.2.7:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want:    "198.51.100.1"},
		{name: "neighbour of trusted address", peer: "192.0.2.8:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want:    "192.0.2.8"},
		{name: "trusted IPv6 proxy", peer: "[2001:db8:ffff::1]:4000",
			headers: map[string][]string{"X-Forwarded-For": {"2001:db8:1::5"}},
			want:    "2001:db8:1::5"},
		{name: "IPv4-mapped peer is trusted", peer: "[::ffff:10.1.2.3]:4000",
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want:    "198.51.100.1"},
		{name: "trust switch trusts any peer", peer: "203.0.113.5:4000", trustPeer: true,
			noProxies: true,
			headers:   map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1"}},
			want:      "198.51.100.1"},
		{name: "no proxies ignores headers", peer: "10.1.2.3:4000", noProxies: true,
			headers: map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want:    "10.1.2.3"},
		{name: "peer without port", peer: "203.0.113.5", want: "203.0.113.5"},
		{name: "peer not an address", peer: "@", want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ClientIPConfig{TrustedProxies: trusted, TrustForwardedFor: tt.trustPeer}
			if tt.noProxies {
				cfg.TrustedProxies = nil
			}
			res := mustResolver(t, cfg)
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tt.peer
			for k, vs := range tt.headers {
				req.Header[k] = vs
			}
			if got := res.ClientIP(req).String(); got != tt.want {
				t.Errorf("ClientIP() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClientNetworkIPv6Rotation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		bits   int
		a, b   string
		shared bool
	}{
		{name: "same /64 default", a: "2001:db8:1:2::1", b: "2001:db8:1:2:ffff:ffff:ffff:ffff",
			shared: true},
		{name: "different /64 default", a: "2001:db8:1:2::1", b: "2001:db8:1:3::1"},
		{name: "same /48 when configured", bits: 48, a: "2001:db8:1:2::1", b: "2001:db8:1:ffff::1",
			shared: true},
		{name: "full /128", bits: 128, a: "2001:db8::1", b: "2001:db8::2"},
		{name: "IPv4 never grouped", bits: 32, a: "198.51.100.1", b: "198.51.100.2"},
		{name: "IPv4-mapped equals IPv4", a: "::ffff:198.51.100.1", b: "198.51.100.1",
			shared: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := mustResolver(t, ClientIPConfig{IPv6PrefixLength: tt.bits})
			na := res.Group(netip.MustParseAddr(tt.a))
			nb := res.Group(netip.MustParseAddr(tt.b))
			if (na == nb) != tt.shared {
				t.Errorf("Group(%s) = %s, Group(%s) = %s, shared = %v, want %v",
					tt.a, na, tt.b, nb, na == nb, tt.shared)
			}
		})
	}
}

func TestNewClientIPResolverRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  ClientIPConfig
	}{
		{name: "prefix too short", cfg: ClientIPConfig{IPv6PrefixLength: 31}},
		{name: "prefix too long", cfg: ClientIPConfig{IPv6PrefixLength: 129}},
		{name: "bad header name", cfg: ClientIPConfig{Headers: []string{"X Bad"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewClientIPResolver(tt.cfg); err == nil {
				t.Errorf("NewClientIPResolver(%+v) = nil error, want error", tt.cfg)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "empty", in: "", want: "[]"},
		{name: "mixed", in: "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
			want: "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32]"},
		{name: "host bits masked", in: "10.1.2.3/8", want: "[10.0.0.0/8]"},
		{name: "mapped address unwrapped", in: "::ffff:192.0.2.7", want: "[192.0.2.7/32]"},
		{name: "garbage", in: "10.0.0.0/8, proxy.local", wantErr: true},
		{name: "bad prefix", in: "10.0.0.0/33", wantErr: true},
		{name: "zone", in: "fe80::1%eth0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTrustedProxies(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTrustedProxies(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if s := formatPrefixes(got); s != tt.want {
				t.Errorf("ParseTrustedProxies(%q) = %s, want %s", tt.in, s, tt.want)
			}
		})
	}
}

func formatPrefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "a, 10.0.0.1", "1.2.3.4:80", "[::1]", ",,,",
		"::ffff:1.2.3.4", "fe80::1%eth0", " 198.51.100.1 ,10.0.0.1"} {
		f.Add(s)
	}
	res := mustResolver(f, ClientIPConfig{TrustedProxies: mustProxies(f, "10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = "10.0.0.9:1"
		req.Header.Set("X-Forwarded-For", header)
		got := res.ClientIP(req)
		if !got.IsValid() {
			t.Fatalf("ClientIP(XFF %q) is invalid, want an address", header)
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("ClientIP(XFF %q) = %s, want an unmapped address without zone", header, got)
		}
	})
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{"for=198.51.100.1", `for="[2001:db8::1]:80";proto=https`,
		`for=unknown, for=10.0.0.1`, `for="a\"b", for=1.2.3.4`, `for="`, `;;;`, `for=1.2.3.4;for=x`} {
		f.Add(s)
	}
	res := mustResolver(f, ClientIPConfig{TrustedProxies: mustProxies(f, "10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = "10.0.0.9:1"
		req.Header.Set("Forwarded", header)
		got := res.ClientIP(req)
		if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
			t.Fatalf("ClientIP(Forwarded %q) = %s, want a valid unmapped address", header, got)
		}
	})
}
