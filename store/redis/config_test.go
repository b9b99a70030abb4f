package redis

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

func TestConfigURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         Config
		wantAddrs   []string
		wantDB      int
		wantTLS     bool
		wantUser    string
		wantPass    string
		wantMaster  string
		wantMux     int
		wantTimeout time.Duration
	}{
		{name: "plain", cfg: Config{URL: "redis://127.0.0.1:6380"}, wantAddrs: []string{"127.0.0.1:6380"},
			wantTimeout: DefaultSocketTimeout},
		{name: "default port and db", cfg: Config{URL: "redis://cache/3"}, wantAddrs: []string{"cache:6379"},
			wantDB: 3, wantTimeout: DefaultSocketTimeout},
		{name: "password", cfg: Config{URL: "redis://:s3cret@cache:6379/1"}, wantAddrs: []string{"cache:6379"},
			wantDB: 1, wantPass: "s3cret", wantTimeout: DefaultSocketTimeout},
		{name: "user and password over TLS", cfg: Config{URL: "rediss://app:pw@cache:6380"},
			wantAddrs: []string{"cache:6380"}, wantTLS: true, wantUser: "app", wantPass: "pw",
			wantTimeout: DefaultSocketTimeout},
		{name: "sentinel", cfg: Config{URL: "redis://s1:26379?addr=s2:26379&master_set=calm"},
			wantAddrs: []string{"s1:26379", "s2:26379"}, wantMaster: "calm", wantTimeout: DefaultSocketTimeout},
		{name: "cluster seeds", cfg: Config{URL: "redis://n1:7000?addr=n2:7001&addr=n3:7002"},
			wantAddrs: []string{"n1:7000", "n2:7001", "n3:7002"}, wantTimeout: DefaultSocketTimeout},
		{name: "max connections", cfg: Config{URL: "redis://c", MaxConnections: 10},
			wantAddrs: []string{"c:6379"}, wantMux: 3, wantTimeout: DefaultSocketTimeout},
		{name: "huge max connections", cfg: Config{URL: "redis://c", MaxConnections: 100000},
			wantAddrs: []string{"c:6379"}, wantMux: maxMultiplex, wantTimeout: DefaultSocketTimeout},
		{name: "socket timeout", cfg: Config{URL: "redis://c", SocketTimeout: 300 * time.Millisecond},
			wantAddrs: []string{"c:6379"}, wantTimeout: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt, err := tt.cfg.clientOption()
			if err != nil {
				t.Fatalf("clientOption(%s) = %v", tt.cfg.URL, err)
			}
			if strings.Join(opt.InitAddress, ",") != strings.Join(tt.wantAddrs, ",") {
				t.Errorf("InitAddress = %v, want %v", opt.InitAddress, tt.wantAddrs)
			}
			if opt.SelectDB != tt.wantDB {
				t.Errorf("SelectDB = %d, want %d", opt.SelectDB, tt.wantDB)
			}
			if (opt.TLSConfig != nil) != tt.wantTLS {
				t.Errorf("TLS = %v, want %v", opt.TLSConfig != nil, tt.wantTLS)
			}
			if opt.Username != tt.wantUser || opt.Password != tt.wantPass {
				t.Errorf("credentials = %q/%q, want %q/%q", opt.Username, opt.Password, tt.wantUser, tt.wantPass)
			}
			if opt.Sentinel.MasterSet != tt.wantMaster {
				t.Errorf("MasterSet = %q, want %q", opt.Sentinel.MasterSet, tt.wantMaster)
			}
			if opt.PipelineMultiplex != tt.wantMux {
				t.Errorf("PipelineMultiplex = %d, want %d", opt.PipelineMultiplex, tt.wantMux)
			}
			if opt.Dialer.Timeout != tt.wantTimeout || opt.ConnWriteTimeout != tt.wantTimeout {
				t.Errorf("timeouts = %v/%v, want %v", opt.Dialer.Timeout, opt.ConnWriteTimeout, tt.wantTimeout)
			}
			if !opt.DisableCache {
				t.Error("DisableCache = false, want true")
			}
		})
	}
}

func TestConfigTLSOverride(t *testing.T) {
	t.Parallel()
	own := &tls.Config{ServerName: "redis.internal", MinVersion: tls.VersionTLS13}
	opt, err := Config{URL: "rediss://cache:6380", TLSConfig: own}.clientOption()
	if err != nil {
		t.Fatal(err)
	}
	if opt.TLSConfig == nil || opt.TLSConfig.ServerName != "redis.internal" || opt.TLSConfig == own {
		t.Errorf("TLSConfig = %+v, want a copy of the given config", opt.TLSConfig)
	}
}

func TestConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "empty", cfg: Config{}, want: "Config.URL is empty"},
		{name: "scheme", cfg: Config{URL: "http://cache:6379"}, want: `invalid URL scheme "http"`},
		{name: "unknown option", cfg: Config{URL: "redis://cache?master_sets=x"}, want: `unknown option "master_sets"`},
		{name: "bad db", cfg: Config{URL: "redis://cache/x"}, want: "invalid database"},
		{name: "negative connections", cfg: Config{URL: "redis://cache", MaxConnections: -1}, want: "MaxConnections"},
		{name: "password not shown", cfg: Config{URL: "redis://u:hunter2@cache/x"}, want: "invalid database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.cfg.clientOption()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("clientOption(%q) = %v, want an error containing %q", tt.cfg.URL, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// FuzzConfigURL feeds arbitrary URLs to the parser: it must return an
// option or an error, never panic, and never echo a password.
func FuzzConfigURL(f *testing.F) {
	for _, seed := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:p@h:1/2?skip_verify=true", "redis://h?addr=a:1&addr=b:2",
		"redis://h?master_set=m", "redis://[::1]:6379", "redis://:pw@h/99999999999999999999",
		"redis://h?dial_timeout=zz", "redis://%zz", "redis://h/1/2", "", "redis://u:secretpw@h:bad",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := Config{URL: raw}.clientOption()
		if err == nil {
			return
		}
		const secret = "secretpw"
		if strings.Contains(raw, ":"+secret+"@") && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows the password of %q", err, raw)
		}
	})
}
