package redis

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
)

func TestConnectTLS(t *testing.T) {
	srv, pool := redistest.StartTLS(t, "--requirepass", "s3cret")
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "trusted CA", cfg: Config{URL: "rediss://:s3cret@" + srv.Addr + "/2",
			TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
		{name: "skip verify", cfg: Config{URL: "rediss://:s3cret@" + srv.Addr + "/2?skip_verify=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Timeout = testTimeout
			s, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ok, _ := apply(t, s, 1, check("test:tls:{"+tt.name+"}:60", algorithm.GCRA, 5, time.Minute))
			if !ok {
				t.Errorf("Apply over TLS = false, want true")
			}
		})
	}
}

func TestConnectPasswordAndDatabase(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	s, err := New(Config{URL: "redis://:s3cret@" + srv.Addr + "/3", Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := check("test:db:{a}:60", algorithm.FixedWindow, 5, time.Minute)
	if ok, _ := apply(t, s, 1, c); !ok {
		t.Fatal("Apply with a password = false, want true")
	}
	out, err := redistest.Command(srv.Addr, "-a", "s3cret", "--no-auth-warning", "-n", "3", "EXISTS", c.Key)
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("EXISTS %s in db 3 = %q, %v; want 1", c.Key, out, err)
	}

	wrong, err := New(Config{URL: "redis://:wrong@" + srv.Addr + "/3", Timeout: testTimeout, SocketTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Ping(t.Context()); err == nil {
		t.Error("Ping with a wrong password = nil, want an error")
	}
}
