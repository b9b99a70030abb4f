package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/identity"
	"github.com/calm-limiter/calm/identity/tlsfp"
)

func init() { addExtension(newIdentityExtension) }

// identityExtension plugs client identity into calm serve: the client
// address behind trusted proxies, fingerprints, verified JWTs, tiers, the
// production check, and HTTPS with TLS fingerprints (--tls-cert,
// --tls-key).
type identityExtension struct {
	settings identity.Settings
	tlsCert  string
	tlsKey   string
}

func newIdentityExtension() *extension {
	e := &identityExtension{}
	return &extension{
		name:  "identity",
		flags: e.flags,
		vars:  e.settings.Vars,
		setup: e.setup,
	}
}

func (e *identityExtension) flags(fs *flag.FlagSet) {
	fs.StringVar(&e.tlsCert, "tls-cert", "", "PEM certificate `file`; with --tls-key, calm serves "+
		"HTTPS and can fingerprint TLS clients")
	fs.StringVar(&e.tlsKey, "tls-key", "", "PEM private key `file` for --tls-cert")
}

// setup builds the resolver and installs it: identity middleware outermost,
// its key function and check rewriting in httplimit, and the production
// check once the store is known.
func (e *identityExtension) setup(ctx context.Context, gw *gateway) error {
	tiers, err := e.tiers(gw)
	if err != nil {
		return err
	}
	res, closeRes, err := e.settings.Build(ctx, tiers, gw.logger)
	if err != nil {
		return err
	}
	gw.closers = append(gw.closers, func() error { closeRes(); return nil })
	if err := e.setupTLS(gw); err != nil {
		return err
	}

	gw.keyFunc = res.KeyFunc
	gw.configure = append(gw.configure, func(c *httplimit.Config) { c.Checks = res.RewriteChecks })
	// The identity must be in the context before any other middleware,
	// such as the circuit breaker, reads it.
	gw.middleware = append([]func(http.Handler) http.Handler{res.Middleware}, gw.middleware...)
	gw.trustForwarded = res.ClientIP().TrustsPeer

	gw.validate = append(gw.validate, func() error {
		return identity.CheckProduction(identity.Deployment{
			Environment:     gw.settings.Environment,
			Store:           gw.storeName,
			MemoryChosen:    gw.memoryChosen,
			TiersConfigured: tiers != nil,
			Identity:        e.settings,
		})
	})
	e.warnRiskySwitches(gw)
	tierCount := 0
	if tiers != nil {
		tierCount = len(tiers.Names())
	}
	gw.startAttrs = append(gw.startAttrs, "fp_level", string(e.settings.Level),
		"fp_network_multiplier", e.settings.NetworkMultiplier, "jwt", e.settings.JWTConfigured(), "tiers", tierCount,
		"trusted_proxies", len(e.settings.TrustedProxies))
	return nil
}

// warnRiskySwitches logs one warning at start-up for each setting that lets
// clients choose their own bucket, so that it never stays on unnoticed.
func (e *identityExtension) warnRiskySwitches(gw *gateway) {
	if e.settings.AllowUnverified {
		gw.logger.Warn("unverified tokens split client buckets: any client can pick a new bucket "+
			"by sending a new token; tiers and permissions still need a verified token",
			"component", "identity", "setting", "RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS")
	}
	if e.settings.TrustForwardedFor && len(e.settings.TrustedProxies) == 0 {
		gw.logger.Warn("X-Forwarded-For is trusted from every peer: a client that reaches calm "+
			"directly can pick its own address; list the proxies in RATELIMIT_FP_TRUSTED_PROXIES",
			"component", "identity", "setting", "RATELIMIT_FP_TRUST_X_FORWARDED_FOR")
	}
}

// tiers returns the config file's tiers, the demo's default tiers in demo
// mode, or nil.
func (e *identityExtension) tiers(gw *gateway) (*identity.Tiers, error) {
	if gw.file != nil && gw.file.Tiers.Kind != 0 {
		return fileTiers(gw.file)
	}
	if !e.defaultTiers(gw) {
		return nil, nil
	}
	tiers, err := identity.NewTiers(identity.DefaultTierConfig())
	if err != nil {
		return nil, fmt.Errorf("built-in demo tiers: %w", err)
	}
	return tiers, nil
}

// fileTiers decodes and validates the tiers section of file, or returns
// nil when it has none.
func fileTiers(file *config.File) (*identity.Tiers, error) {
	if err := config.CheckSection(file.Path, "tiers", &file.Tiers, identity.TierConfig{}); err != nil {
		return nil, err
	}
	cfg, ok, err := identity.DecodeTierConfig(file.Tiers)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file.Path, err)
	}
	if !ok {
		return nil, nil
	}
	tiers, err := identity.NewTiers(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file.Path, err)
	}
	return tiers, nil
}

// printTiers writes the tiers of a config file for calm check-config.
func printTiers(w io.Writer, tiers *identity.Tiers) {
	if tiers == nil {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Tiers (verified tier claim; unknown tiers get %s):\n", tiers.Lowest())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range tiers.Names() {
		fmt.Fprintf(tw, "  %s\t%s\n", name, ruleText(tiers.Rules(name)))
	}
	if rules := tiers.Anonymous(); rules != nil {
		fmt.Fprintf(tw, "  anonymous\t%s\tper client network\n", ruleText(rules))
	}
	tw.Flush()
	fmt.Fprintf(w, "Tiered routes: %s\n", strings.Join(tiers.Routes(), ", "))
}

func ruleText(rules []calm.Rule) string {
	return strings.Join(ruleStrings(rules), ", ")
}

// defaultTiers reports whether the demo's built-in tiers apply: demo mode
// without a tiers section in the config file.
func (e *identityExtension) defaultTiers(gw *gateway) bool {
	return gw.upstream == nil && (gw.file == nil || gw.file.Tiers.Kind == 0)
}

// setupTLS loads --tls-cert and --tls-key and records a JA4-style
// fingerprint of every ClientHello for the fingerprint's TLS part.
func (e *identityExtension) setupTLS(gw *gateway) error {
	if e.tlsCert == "" && e.tlsKey == "" {
		return nil
	}
	if e.tlsCert == "" || e.tlsKey == "" {
		return errors.New("--tls-cert and --tls-key: set both to serve HTTPS, or neither")
	}
	cert, err := tls.LoadX509KeyPair(e.tlsCert, e.tlsKey)
	if err != nil {
		return fmt.Errorf("--tls-cert=%q --tls-key=%q: loading the key pair failed: %w",
			e.tlsCert, e.tlsKey, err)
	}
	gw.tlsConfig = tlsfp.Config(&tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	})
	gw.listen = tlsfp.NewListener
	gw.connContext = tlsfp.ConnContext
	return nil
}

// demoTiered returns the identity the gateway verified for GET
// /api/tiered, so a client can see which tier its limits come from.
func demoTiered(w http.ResponseWriter, r *http.Request) {
	id, _ := identity.FromContext(r.Context())
	tier := id.Tier
	if !id.Verified {
		tier = "anonymous"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"message":  "ok",
		"verified": id.Verified,
		"subject":  id.Subject,
		"tier":     tier,
	})
}
