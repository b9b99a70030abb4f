package httplimit

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/calm-limiter/calm/policy"
)

func TestPeerIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, remote, want string
		wantErr            bool
	}{
		{"ipv4 with port", "203.0.113.7:5555", "203.0.113.7", false},
		{"ipv4 bare", "203.0.113.7", "203.0.113.7", false},
		{"ipv4-mapped", "[::ffff:203.0.113.7]:80", "203.0.113.7", false},
		{"ipv6 grouped", "[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64", false},
		{"ipv6 same /64", "[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::/64", false},
		{"ipv6 zone", "[fe80::1%eth0]:80", "fe80::/64", false},
		{"ipv6 bare", "2001:db8::1", "2001:db8::/64", false},
		{"empty", "", "", true},
		{"garbage", "not-an-address", "", true},
		{"unix socket", "@", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			got, err := PeerIP(r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("PeerIP(%q) error = %v, want error %v", tt.remote, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("PeerIP(%q) = %q, want %q", tt.remote, got, tt.want)
			}
		})
	}
}

func TestUnknownClientsShareABucket(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Policy: policy.Config{DefaultLimits: []string{"2/minute"}}})
	h := f.lim.Middleware(okHandler)
	for i, remote := range []string{"garbage", "@"} {
		if w := do(h, "GET", "/", remote); w.Code != http.StatusOK {
			t.Fatalf("unknown client %d: status %d, want 200", i+1, w.Code)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = ""
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != StatusEnhanceYourCalm {
		t.Errorf("third unknown client: status %d, want 420 from the shared unknown bucket", w.Code)
	}
}

func TestCustomKeyFunc(t *testing.T) {
	t.Parallel()
	keyFunc := func(r *http.Request) (string, error) {
		if k := r.Header.Get("X-Api-Key"); k != "" {
			return "key:" + k, nil
		}
		return "", errors.New("no API key")
	}
	f := newFixture(t, Config{KeyFunc: keyFunc, Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	h := f.lim.Middleware(okHandler)
	send := func(key string) int {
		r := httptest.NewRequest("GET", "/", nil)
		if key != "" {
			r.Header.Set("X-Api-Key", key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if send("a") != http.StatusOK || send("b") != http.StatusOK {
		t.Fatalf("first request of keys a and b: want 200 each")
	}
	if got := send("a"); got != StatusEnhanceYourCalm {
		t.Errorf("second request of key a: status %d, want 420", got)
	}
	if send("") != http.StatusOK {
		t.Errorf("first keyless request: want 200")
	}
	if got := send(""); got != StatusEnhanceYourCalm {
		t.Errorf("second keyless request: status %d, want 420", got)
	}
}
