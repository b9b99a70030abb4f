package tlsfp

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

func TestFingerprintLayout(t *testing.T) {
	t.Parallel()
	hello := &tls.ClientHelloInfo{
		CipherSuites:      []uint16{0x1a1a, 0x1302, 0x1301, 0xc02f},
		ServerName:        "example.test",
		SupportedVersions: []uint16{0x2a2a, tls.VersionTLS13, tls.VersionTLS12},
		SupportedProtos:   []string{"h2", "http/1.1"},
		Extensions:        []uint16{0x0a0a, 0x0000, 0x0010, 0x002b, 0x000d},
		SignatureSchemes:  []tls.SignatureScheme{0x0403, 0x0804},
	}
	got := Fingerprint(hello)

	ciphers := sha256.Sum256([]byte("1301,1302,c02f"))
	exts := sha256.Sum256([]byte("000d,002b_0403,0804"))
	want := "t13d0304h2_" + hex.EncodeToString(ciphers[:6]) + "_" + hex.EncodeToString(exts[:6])
	if got != want {
		t.Errorf("Fingerprint() = %s, want %s", got, want)
	}
}

func TestFingerprintVariants(t *testing.T) {
	t.Parallel()
	base := tls.ClientHelloInfo{
		CipherSuites:      []uint16{0x1301, 0x1302},
		SupportedVersions: []uint16{tls.VersionTLS12},
		Extensions:        []uint16{0x000d},
	}
	tests := []struct {
		name   string
		change func(h *tls.ClientHelloInfo)
		prefix string
		same   bool
	}{
		{name: "no SNI no ALPN", change: func(*tls.ClientHelloInfo) {}, prefix: "t12i020100_",
			same: true},
		{name: "cipher order ignored", change: func(h *tls.ClientHelloInfo) {
			h.CipherSuites = []uint16{0x1302, 0x1301}
		}, prefix: "t12i020100_", same: true},
		{name: "GREASE ignored", change: func(h *tls.ClientHelloInfo) {
			h.CipherSuites = []uint16{0xfafa, 0x1301, 0x1302}
			h.Extensions = []uint16{0x000d, 0x3a3a}
		}, prefix: "t12i020100_", same: true},
		{name: "other cipher", change: func(h *tls.ClientHelloInfo) {
			h.CipherSuites = []uint16{0x1301, 0x1303}
		}, prefix: "t12i020100_"},
		{name: "non alphanumeric ALPN", change: func(h *tls.ClientHelloInfo) {
			h.SupportedProtos = []string{"\x00\xff"}
		}, prefix: "t12i02010f_"},
		{name: "nothing offered", change: func(h *tls.ClientHelloInfo) {
			*h = tls.ClientHelloInfo{}
		}, prefix: "t00i000000_000000000000_000000000000"},
	}
	reference := Fingerprint(&base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := base
			tt.change(&h)
			got := Fingerprint(&h)
			if len(got) < len(tt.prefix) || got[:len(tt.prefix)] != tt.prefix {
				t.Errorf("Fingerprint() = %s, want prefix %s", got, tt.prefix)
			}
			if (got == reference) != tt.same {
				t.Errorf("Fingerprint() = %s, reference %s, equal = %v, want %v",
					got, reference, got == reference, tt.same)
			}
		})
	}
}

var layout = regexp.MustCompile(`^t1[23][di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

func TestServerRecordsFingerprint(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, FromContext(r.Context()))
	}))
	srv.Listener = NewListener(srv.Listener)
	srv.TLS = Config(nil)
	srv.Config.ConnContext = ConnContext
	srv.StartTLS()
	t.Cleanup(srv.Close)

	fetch := func(t *testing.T, cfg *tls.Config) string {
		t.Helper()
		cfg.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	tls13 := fetch(t, &tls.Config{MinVersion: tls.VersionTLS13})
	again := fetch(t, &tls.Config{MinVersion: tls.VersionTLS13})
	tls12 := fetch(t, &tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})

	if !layout.MatchString(tls13) {
		t.Errorf("fingerprint %q does not match %s", tls13, layout)
	}
	if tls13 != again {
		t.Errorf("same client: fingerprints %s and %s, want equal", tls13, again)
	}
	if tls12 == tls13 {
		t.Errorf("different clients: both fingerprints %s, want different", tls12)
	}
	if tls12[:3] != "t12" {
		t.Errorf("TLS 1.2 client fingerprint %s, want prefix t12", tls12)
	}
}

func TestFromContextPlainConnection(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "["+FromContext(r.Context())+"]")
	}))
	srv.Listener = NewListener(srv.Listener)
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "[]" {
		t.Errorf("FromContext on plain HTTP = %s, want []", body)
	}
	if ctx := ConnContext(t.Context(), &net.TCPConn{}); FromContext(ctx) != "" {
		t.Errorf("FromContext(foreign conn) = %q, want empty", FromContext(ctx))
	}
}
