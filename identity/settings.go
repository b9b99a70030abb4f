package identity

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/identity/jwtverify"
)

// Settings are the identity settings of the gateway, loaded with the
// config package from the environment, the config file's settings section
// and flags. Start from the values that config.Load stores through Vars.
//
// Each field is the parsed value of the setting named beside it; Vars gives
// the defaults and meanings.
type Settings struct {
	TrustedProxies     []netip.Prefix // RATELIMIT_FP_TRUSTED_PROXIES
	TrustForwardedFor  bool           // RATELIMIT_FP_TRUST_X_FORWARDED_FOR
	IPv6PrefixLength   int            // RATELIMIT_FP_IPV6_PREFIX_LENGTH
	ClientIPHeaders    []string       // RATELIMIT_FP_CLIENT_IP_HEADERS
	Level              Level          // RATELIMIT_FP_LEVEL
	NetworkMultiplier  int            // RATELIMIT_FP_NETWORK_MULTIPLIER; 0 turns the check off
	Use                Components     // RATELIMIT_FP_USE_*
	Secret             string         // RATELIMIT_FP_SECRET
	JWTSecret          string         // RATELIMIT_AUTH_JWT_SECRET
	JWTPublicKeyFiles  []string       // RATELIMIT_AUTH_JWT_PUBLIC_KEY_FILE
	JWKSURL            string         // RATELIMIT_AUTH_JWKS_URL
	JWKSFile           string         // RATELIMIT_AUTH_JWKS_FILE
	JWTAlgorithms      []string       // RATELIMIT_AUTH_JWT_ALGORITHMS
	JWTIssuer          string         // RATELIMIT_AUTH_JWT_ISSUER
	JWTAudience        string         // RATELIMIT_AUTH_JWT_AUDIENCE
	JWTLeeway          time.Duration  // RATELIMIT_AUTH_JWT_LEEWAY
	TierClaim          string         // RATELIMIT_AUTH_TIER_CLAIM
	PermissionsClaim   string         // RATELIMIT_AUTH_PERMISSIONS_CLAIM
	AllowUnverified    bool           // RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS
	APIKeyHeader       string         // RATELIMIT_AUTH_API_KEY_HEADER
	APIKeyQuery        string         // RATELIMIT_AUTH_API_KEY_QUERY
	APIKeysFile        string         // RATELIMIT_AUTH_API_KEYS_FILE
	SessionCookie      string         // RATELIMIT_AUTH_SESSION_COOKIE
	AnonymousLimit     []calm.Rule    // RATELIMIT_ANONYMOUS_LIMIT
	JWKSRefreshEvery   time.Duration  // RATELIMIT_AUTH_JWKS_REFRESH_INTERVAL
	JWKSRequestTimeout time.Duration  // RATELIMIT_AUTH_JWKS_TIMEOUT
}

// Vars returns the identity settings as config Vars that store into s.
func (s *Settings) Vars() []config.Var {
	vars := []config.Var{
		{Env: "RATELIMIT_FP_TRUSTED_PROXIES", Key: "fp_trusted_proxies", Default: "",
			Parse: proxies(&s.TrustedProxies),
			Usage: "IP addresses and CIDR networks of the proxies in front of calm, comma " +
				"separated; forwarding headers are read only from them."},
		{Env: "RATELIMIT_FP_TRUST_X_FORWARDED_FOR", Key: "fp_trust_x_forwarded_for",
			Default: "false", Parse: config.Bool(&s.TrustForwardedFor),
			Usage: "Trusts forwarding headers from any direct peer, for a proxy whose address " +
				"cannot be listed. Never turn it on when clients can reach calm directly."},
		{Env: "RATELIMIT_FP_IPV6_PREFIX_LENGTH", Key: "fp_ipv6_prefix_length", Default: "64",
			Parse: config.Int(&s.IPv6PrefixLength, MinIPv6PrefixLength, MaxIPv6PrefixLength),
			Usage: "IPv6 clients in one network of this prefix length share a bucket (32 to 128)."},
		{Env: "RATELIMIT_FP_CLIENT_IP_HEADERS", Key: "fp_client_ip_headers",
			Default: strings.Join(DefaultClientIPHeaders, ","), Parse: list(&s.ClientIPHeaders),
			Usage: "Forwarding headers read from trusted proxies, in order; the first present " +
				"decides. List only headers your proxy writes."},
		{Env: "RATELIMIT_FP_LEVEL", Key: "fp_level", Default: string(LevelNormal),
			Parse: level(&s.Level),
			Usage: "Fingerprint of anonymous clients: relaxed (IP), normal (IP and User-Agent), " +
				"strict (adds Accept-Language, Accept-Encoding, header hash, header names, TLS) " +
				"or custom (the RATELIMIT_FP_USE_* switches)."},
		{Env: "RATELIMIT_FP_NETWORK_MULTIPLIER", Key: "fp_network_multiplier",
			Default: strconv.Itoa(DefaultNetworkMultiplier), Parse: networkMultiplier(&s.NetworkMultiplier),
			Usage: "When the fingerprint has parts the client chooses (User-Agent and other " +
				"headers), one client network of anonymous clients gets at most this many " +
				"clients' budgets per route, however many fingerprints it sends (1 to 1000). " +
				"0 turns the check off, which is unsafe because one client can then multiply its " +
				"budget."},
		{Env: "RATELIMIT_FP_SECRET", Key: "fp_secret", Default: "", Secret: true,
			Parse: secret(&s.Secret),
			Usage: "Secret that keys fingerprint and credential hashes; share it between " +
				"servers. Required in production."},
	}
	vars = append(vars, s.useVars()...)
	return append(vars, s.authVars()...)
}

func (s *Settings) useVars() []config.Var {
	use := func(name string, dst *bool, def, usage string) config.Var {
		return config.Var{Env: "RATELIMIT_FP_USE_" + name, Key: "fp_use_" + strings.ToLower(name),
			Default: def, Parse: config.Bool(dst),
			Usage: "At fp_level custom, adds " + usage + " to the fingerprint."}
	}
	u := &s.Use
	return []config.Var{
		use("IP", &u.IP, "true", "the client network"),
		use("USER_AGENT", &u.UserAgent, "true", "the User-Agent header"),
		use("ACCEPT_LANGUAGE", &u.AcceptLanguage, "false", "the Accept-Language header"),
		use("ACCEPT_ENCODING", &u.AcceptEncoding, "false", "the Accept-Encoding header"),
		use("HEADERS_HASH", &u.HeadersHash, "false", "a hash of the browser headers"),
		use("HEADER_ORDER", &u.HeaderOrder, "false", "the names of the headers sent"),
		use("TLS", &u.TLS, "false", "the JA4-style TLS ClientHello fingerprint"),
		use("AUTH", &u.Auth, "true", "a hash of an unverified credential "+
			"(only with RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS)"),
	}
}

func (s *Settings) authVars() []config.Var {
	return []config.Var{
		{Env: "RATELIMIT_AUTH_JWT_SECRET", Key: "auth_jwt_secret", Default: "", Secret: true,
			Parse: secret(&s.JWTSecret),
			Usage: "HMAC secret (at least 32 bytes) that verifies HS256/384/512 bearer tokens."},
		{Env: "RATELIMIT_AUTH_JWT_PUBLIC_KEY_FILE", Key: "auth_jwt_public_key_file", Default: "",
			Parse: list(&s.JWTPublicKeyFiles),
			Usage: "PEM files with RSA, ECDSA or Ed25519 public keys, comma separated."},
		{Env: "RATELIMIT_AUTH_JWKS_URL", Key: "auth_jwks_url", Default: "",
			Parse: httpURL(&s.JWKSURL),
			Usage: "URL of a JSON Web Key Set, fetched at start and refreshed."},
		{Env: "RATELIMIT_AUTH_JWKS_FILE", Key: "auth_jwks_file", Default: "",
			Parse: config.Text(&s.JWKSFile, 1024), Usage: "File with a JSON Web Key Set."},
		{Env: "RATELIMIT_AUTH_JWKS_REFRESH_INTERVAL", Key: "auth_jwks_refresh_interval",
			Default: "10m", Parse: config.Duration(&s.JWKSRefreshEvery, time.Minute, 24*time.Hour),
			Usage: "How often the JWKS is fetched again."},
		{Env: "RATELIMIT_AUTH_JWKS_TIMEOUT", Key: "auth_jwks_timeout", Default: "5s",
			Parse: config.Duration(&s.JWKSRequestTimeout, 100*time.Millisecond, time.Minute),
			Usage: "Timeout of one JWKS fetch."},
		{Env: "RATELIMIT_AUTH_JWT_ALGORITHMS", Key: "auth_jwt_algorithms", Default: "",
			Parse: list(&s.JWTAlgorithms),
			Usage: "Allowed JWT algorithms, such as HS256,RS256; empty means those of the " +
				"configured keys. none is always rejected."},
		{Env: "RATELIMIT_AUTH_JWT_ISSUER", Key: "auth_jwt_issuer", Default: "",
			Parse: config.Text(&s.JWTIssuer, 256), Usage: "Required iss claim, when set."},
		{Env: "RATELIMIT_AUTH_JWT_AUDIENCE", Key: "auth_jwt_audience", Default: "",
			Parse: config.Text(&s.JWTAudience, 256), Usage: "Required aud claim, when set."},
		{Env: "RATELIMIT_AUTH_JWT_LEEWAY", Key: "auth_jwt_leeway", Default: "0s",
			Parse: config.Duration(&s.JWTLeeway, 0, 5*time.Minute),
			Usage: "Clock skew allowed on exp, nbf and iat."},
		{Env: "RATELIMIT_AUTH_TIER_CLAIM", Key: "auth_tier_claim", Default: DefaultTierClaim,
			Parse: config.Text(&s.TierClaim, 64), Usage: "Claim of a verified token that names its tier."},
		{Env: "RATELIMIT_AUTH_PERMISSIONS_CLAIM", Key: "auth_permissions_claim",
			Default: DefaultPermissionsClaim, Parse: config.Text(&s.PermissionsClaim, 64),
			Usage: "Claim of a verified token that lists permissions, such as circuit.bypass."},
		{Env: "RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS", Key: "auth_allow_unverified_tokens",
			Default: "false", Parse: config.Bool(&s.AllowUnverified),
			Usage: "Lets unverified tokens, API keys and sessions split anonymous clients in the " +
				"fingerprint; never grants tiers or permissions. Refused in production."},
		{Env: "RATELIMIT_AUTH_API_KEY_HEADER", Key: "auth_api_key_header",
			Default: DefaultAPIKeyHeader, Parse: config.Text(&s.APIKeyHeader, 64),
			Usage: "Header that carries an API key."},
		{Env: "RATELIMIT_AUTH_API_KEY_QUERY", Key: "auth_api_key_query", Default: "",
			Parse: config.Text(&s.APIKeyQuery, 64),
			Usage: "Query parameter that carries an API key; off when empty."},
		{Env: "RATELIMIT_AUTH_API_KEYS_FILE", Key: "auth_api_keys_file", Default: "",
			Parse: config.Text(&s.APIKeysFile, 1024),
			Usage: "YAML file of known API keys by SHA-256, each with subject, tier and " +
				"permissions; without it API keys are never verified."},
		{Env: "RATELIMIT_AUTH_SESSION_COOKIE", Key: "auth_session_cookie", Default: "session",
			Parse: config.Text(&s.SessionCookie, 64), Usage: "Name of the session cookie."},
		{Env: "RATELIMIT_ANONYMOUS_LIMIT", Key: "anonymous_limit", Default: "",
			Parse: optionalRules(&s.AnonymousLimit),
			Usage: "Rules for every request without a verified identity, per client network, " +
				"such as 10/minute; off when empty."},
	}
}

func proxies(dst *[]netip.Prefix) func(string) error {
	return func(v string) error {
		p, err := ParseTrustedProxies(v)
		if err != nil {
			return err
		}
		*dst = p
		return nil
	}
}

func httpURL(dst *string) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if v == "" {
			*dst = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			len(v) > 2048 {
			return errors.New("want an http or https URL such as https://idp.example/.well-known/jwks.json")
		}
		*dst = v
		return nil
	}
}

func list(dst *[]string) func(string) error {
	return func(v string) error {
		var out []string
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		*dst = out
		return nil
	}
}

func level(dst *Level) func(string) error {
	return func(v string) error {
		l, err := ParseLevel(v)
		if err != nil {
			return errors.New("want relaxed, normal, strict or custom")
		}
		*dst = l
		return nil
	}
}

func networkMultiplier(dst *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > MaxNetworkMultiplier {
			return fmt.Errorf("want a whole number from 1 to %d, such as %d, or 0 to turn the "+
				"per-network check off (unsafe, because one client can then multiply its budget "+
				"by changing headers)", MaxNetworkMultiplier, DefaultNetworkMultiplier)
		}
		*dst = n
		return nil
	}
}

func secret(dst *string) func(string) error {
	return func(v string) error {
		if v != "" && len(v) < jwtverify.MinHMACSecretLength {
			return fmt.Errorf("want at least %d bytes, such as the output of openssl rand -hex 32",
				jwtverify.MinHMACSecretLength)
		}
		*dst = v
		return nil
	}
}

func optionalRules(dst *[]calm.Rule) func(string) error {
	return func(v string) error {
		if strings.TrimSpace(v) == "" {
			*dst = nil
			return nil
		}
		return config.Rules(dst)(v)
	}
}

// JWTConfigured reports whether any JWT key is set.
func (s *Settings) JWTConfigured() bool {
	return s.JWTSecret != "" || len(s.JWTPublicKeyFiles) > 0 || s.JWKSURL != "" || s.JWKSFile != ""
}

// Build returns the Resolver the settings describe and a function that
// releases what it started (the JWKS refresh). tiers may be nil. A JWKS URL
// is fetched once before Build returns, bounded by the JWKS timeout.
func (s *Settings) Build(ctx context.Context, tiers *Tiers, logger *slog.Logger) (
	*Resolver, func(), error) {
	var apiKeys APIKeyLookup
	if s.APIKeysFile != "" {
		lookup, err := LoadAPIKeys(s.APIKeysFile)
		if err != nil {
			return nil, nil, fmt.Errorf("RATELIMIT_AUTH_API_KEYS_FILE: %w", err)
		}
		apiKeys = lookup
	}
	verifier, closeFn, err := s.verifier(ctx)
	if err != nil {
		return nil, nil, err
	}
	res, err := New(Config{
		ClientIP: ClientIPConfig{
			TrustedProxies:    s.TrustedProxies,
			TrustForwardedFor: s.TrustForwardedFor,
			IPv6PrefixLength:  s.IPv6PrefixLength,
			Headers:           s.ClientIPHeaders,
		},
		Level:             s.Level,
		Custom:            s.Use,
		NetworkMultiplier: s.networkMultiplier(),
		Secret:            []byte(s.Secret),
		Verifier:          verifier,
		TierClaim:         s.TierClaim,
		PermissionsClaim:  s.PermissionsClaim,
		Tiers:             tiers,
		AnonymousRules:    s.AnonymousLimit,
		AllowUnverified:   s.AllowUnverified,
		APIKeyHeader:      s.APIKeyHeader,
		APIKeyQuery:       s.APIKeyQuery,
		APIKeys:           apiKeys,
		SessionCookie:     s.SessionCookie,
		Logger:            logger,
	})
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("RATELIMIT_FP_CLIENT_IP_HEADERS: %w", err)
	}
	if s.NetworkMultiplier == 0 && ComponentsFor(s.Level, s.Use).clientChosen(s.AllowUnverified) &&
		logger != nil {
		logger.Warn("RATELIMIT_FP_NETWORK_MULTIPLIER=0 turns the per-network check off: an "+
			"anonymous client can multiply its budget by changing headers", "component", "identity")
	}
	return res, closeFn, nil
}

// networkMultiplier returns Config.NetworkMultiplier for the setting, where
// 0 turns the check off.
func (s *Settings) networkMultiplier() int64 {
	if s.NetworkMultiplier == 0 {
		return -1
	}
	return int64(s.NetworkMultiplier)
}

// verifier builds the JWT verifier, or nil when no key is configured.
func (s *Settings) verifier(ctx context.Context) (*jwtverify.Verifier, func(), error) {
	noop := func() {}
	if !s.JWTConfigured() {
		return nil, noop, nil
	}
	cfg := jwtverify.Config{
		Algorithms: s.JWTAlgorithms,
		HMACSecret: []byte(s.JWTSecret),
		Issuer:     s.JWTIssuer,
		Audience:   s.JWTAudience,
		Leeway:     s.JWTLeeway,
	}
	for _, path := range s.JWTPublicKeyFiles {
		pub, err := readPublicKey(path)
		if err != nil {
			return nil, nil, fmt.Errorf("RATELIMIT_AUTH_JWT_PUBLIC_KEY_FILE=%q: %w", path, err)
		}
		cfg.PublicKeys = append(cfg.PublicKeys, jwtverify.Key{Public: pub})
	}
	closeFn := noop
	if s.JWKSURL != "" || s.JWKSFile != "" {
		setting := "RATELIMIT_AUTH_JWKS_URL"
		if s.JWKSFile != "" {
			setting = "RATELIMIT_AUTH_JWKS_FILE"
		}
		jwks, err := jwtverify.NewJWKS(ctx, jwtverify.JWKSConfig{URL: s.JWKSURL, File: s.JWKSFile,
			RefreshInterval: s.JWKSRefreshEvery, Timeout: s.JWKSRequestTimeout})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", setting, err)
		}
		cfg.KeySource = jwks
		closeFn = func() { jwks.Close() }
	}
	v, err := jwtverify.New(cfg)
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("RATELIMIT_AUTH_JWT_*: %w", err)
	}
	return v, closeFn, nil
}

// maxKeyFile bounds a PEM key file.
const maxKeyFile = 64 << 10

func readPublicKey(path string) (crypto.PublicKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxKeyFile {
		return nil, fmt.Errorf("file larger than %d bytes", maxKeyFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return jwtverify.ParsePublicKeyPEM(data)
}
