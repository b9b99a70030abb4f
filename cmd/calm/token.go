package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calm-limiter/calm/identity/jwtverify"
)

func init() {
	register(command{
		name:    "token",
		summary: "mint a signed test token for tiered limits (HS256)",
		run:     runToken,
	})
}

// maxTokenTTL bounds the lifetime of a minted test token.
const maxTokenTTL = 30 * 24 * time.Hour

// runToken prints an HS256 JWT signed with the same secret the gateway
// verifies with, so tiered limits can be tried by hand:
//
//	calm token --tier paid --secret "$RATELIMIT_AUTH_JWT_SECRET"
func runToken(ctx context.Context, c *cli) error {
	fs := newFlagSet(c, "token", "--tier NAME [--secret SECRET] [flags]")
	tier := fs.String("tier", "", "tier `name` to put in the tier claim, such as free, paid or enterprise")
	secretFlag := fs.String("secret", "", "HMAC `secret` (at least 32 bytes); default: "+
		"RATELIMIT_AUTH_JWT_SECRET")
	subject := fs.String("sub", "demo-user", "`subject` claim: the account the token names")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid (at most 720h)")
	perms := fs.String("permissions", "", "comma-separated `permissions`, such as circuit.bypass, "+
		"in the claim that RATELIMIT_AUTH_PERMISSIONS_CLAIM names, \"permissions\" by default")
	tierClaim := fs.String("tier-claim", "", "name of the tier claim; default: "+
		"RATELIMIT_AUTH_TIER_CLAIM or tier")
	if err := parseFlags(fs, c); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "calm token: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}

	secret := *secretFlag
	if secret == "" {
		secret, _ = c.lookupEnv("RATELIMIT_AUTH_JWT_SECRET")
	}
	claimName := *tierClaim
	if claimName == "" {
		claimName, _ = c.lookupEnv("RATELIMIT_AUTH_TIER_CLAIM")
	}
	if claimName == "" {
		claimName = "tier"
	}
	if err := checkTokenFlags(secret, *tier, *subject, *ttl); err != nil {
		return err
	}

	now := time.Now()
	claims := jwt.MapClaims{
		"sub":     *subject,
		claimName: *tier,
		"iat":     now.Unix(),
		"nbf":     now.Unix(),
		"exp":     now.Add(*ttl).Unix(),
	}
	if list := splitList(*perms); len(list) > 0 {
		permsClaim, _ := c.lookupEnv("RATELIMIT_AUTH_PERMISSIONS_CLAIM")
		if permsClaim == "" {
			permsClaim = "permissions"
		}
		claims[permsClaim] = list
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return fmt.Errorf("signing the token: %w", err)
	}
	fmt.Fprintln(c.stdout, token)
	return nil
}

func checkTokenFlags(secret, tier, subject string, ttl time.Duration) error {
	switch {
	case secret == "":
		return errors.New("--secret: missing: pass the gateway's RATELIMIT_AUTH_JWT_SECRET " +
			"with --secret or in the environment")
	case len(secret) < jwtverify.MinHMACSecretLength:
		return fmt.Errorf("--secret: invalid: %d bytes, want at least %d, such as the output "+
			"of openssl rand -hex 32", len(secret), jwtverify.MinHMACSecretLength)
	case strings.TrimSpace(tier) == "":
		return errors.New("--tier: missing: name a tier such as free, paid or enterprise")
	case strings.TrimSpace(subject) == "":
		return errors.New("--sub: invalid: want a non-empty subject")
	case ttl <= 0 || ttl > maxTokenTTL:
		return fmt.Errorf("--ttl=%v: invalid: want a duration from 1s to %v", ttl, maxTokenTTL)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
