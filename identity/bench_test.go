package identity

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm"
)

func BenchmarkClientIPForwardedFor(b *testing.B) {
	res := mustResolver(b, ClientIPConfig{TrustedProxies: mustProxies(b, "10.0.0.0/8")})
	req := request("10.0.0.9:1", map[string]string{
		"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.1.1.1, 10.2.2.2"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !res.ClientIP(req).IsValid() {
				b.Fatal("ClientIP is invalid")
			}
		}
	})
}

func BenchmarkIdentify(b *testing.B) {
	signed := "Bearer " + token(b, jwt.SigningMethodHS256, testJWTSecret,
		jwt.MapClaims{"tier": "paid", "permissions": []string{"read"}})
	cases := []struct {
		name    string
		level   Level
		headers map[string]string
	}{
		{name: "anonymous normal", level: LevelNormal,
			headers: map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}},
		{name: "anonymous strict", level: LevelStrict, headers: map[string]string{
			"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Accept-Language": "en-GB,en",
			"Accept-Encoding": "gzip, br", "Accept": "text/html"}},
		{name: "verified HS256", level: LevelNormal,
			headers: map[string]string{"Authorization": signed}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			res := newTestResolver(b, func(cfg *Config) { cfg.Level = c.level })
			req := request("198.51.100.7:1000", c.headers)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if res.Identify(req).Key == "" {
						b.Fatal("empty key")
					}
				}
			})
		})
	}
}

func BenchmarkRewriteChecks(b *testing.B) {
	cases := []struct {
		name       string
		multiplier int64
	}{
		{name: "network check", multiplier: DefaultNetworkMultiplier},
		{name: "network check off", multiplier: -1},
	}
	rules := calm.MustParseRules("3/minute,10/hour")
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			res := newTestResolver(b, func(cfg *Config) { cfg.NetworkMultiplier = c.multiplier })
			req := request("198.51.100.7:1000", map[string]string{"User-Agent": "agent/1"})
			req = req.WithContext(NewContext(req.Context(), res.Identify(req)))
			key := res.identity(req).Key
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				checks := make([]calm.Check, 0, 6)
				for pb.Next() {
					checks = append(checks[:0], calm.Check{Scope: calm.ScopeUser,
						Endpoint: "POST /auth/login", Client: key, Rules: rules})
					checks = res.RewriteChecks(req, checks)
					if len(checks) == 0 {
						b.Fatal("no checks")
					}
				}
			})
		})
	}
}
