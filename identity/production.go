package identity

import (
	"errors"
	"fmt"
)

// ProductionEnvironment is the RATELIMIT_ENVIRONMENT value that turns on
// CheckProduction.
const ProductionEnvironment = "production"

// Deployment describes what a server is about to run with, for
// CheckProduction.
type Deployment struct {
	// Environment is RATELIMIT_ENVIRONMENT.
	Environment string
	// Store names the store, such as "memory" or "redis".
	Store string
	// RedisSetting names the setting that selects Redis, for the message,
	// such as "RATELIMIT_REDIS_URL".
	RedisSetting string
	// MemoryChosen is true when the operator chose the memory store on
	// purpose (RATELIMIT_FALLBACK_TO_MEMORY=true set explicitly), which
	// lifts the rule that production needs Redis.
	MemoryChosen bool
	// TiersConfigured is true when tiered limits are in force.
	TiersConfigured bool
	// Identity holds the identity settings.
	Identity Settings
}

// Errors returned by CheckProduction, each wrapped in a message that names
// the setting and the fix.
var (
	ErrProductionNeedsRedis       = errors.New("production requires a Redis store")
	ErrProductionNeedsJWTKey      = errors.New("production with tiers requires a JWT key")
	ErrProductionUnverifiedTokens = errors.New("production rejects unverified tokens")
	ErrProductionNeedsSecret      = errors.New("production requires a fingerprint secret")
)

// CheckProduction returns an error when d is a production deployment whose
// settings weaken rate limiting. It rejects a memory store, because each
// server would count alone and limits would multiply with servers. It
// rejects tiers without a JWT key, because no token could be verified. It
// rejects the unverified-token switch, and a missing fingerprint secret,
// because keys would be hashed with the public development secret. Other
// environments always pass.
func CheckProduction(d Deployment) error {
	if d.Environment != ProductionEnvironment {
		return nil
	}
	redis := d.RedisSetting
	if redis == "" {
		redis = "RATELIMIT_REDIS_URL"
	}
	if d.Store != "redis" && !d.MemoryChosen {
		return fmt.Errorf("RATELIMIT_ENVIRONMENT=production: %w, but the store is %q: set %s "+
			"so that every server shares one count", ErrProductionNeedsRedis, d.Store, redis)
	}
	if d.TiersConfigured && !d.Identity.JWTConfigured() {
		return fmt.Errorf("RATELIMIT_ENVIRONMENT=production: %w: set RATELIMIT_AUTH_JWT_SECRET, "+
			"RATELIMIT_AUTH_JWT_PUBLIC_KEY_FILE, RATELIMIT_AUTH_JWKS_URL or "+
			"RATELIMIT_AUTH_JWKS_FILE, or remove the tiers", ErrProductionNeedsJWTKey)
	}
	if d.Identity.AllowUnverified {
		return fmt.Errorf("RATELIMIT_ENVIRONMENT=production: %w: set "+
			"RATELIMIT_AUTH_ALLOW_UNVERIFIED_TOKENS=false", ErrProductionUnverifiedTokens)
	}
	if d.Identity.Secret == "" {
		return fmt.Errorf("RATELIMIT_ENVIRONMENT=production: %w: set RATELIMIT_FP_SECRET to a "+
			"random value of at least 32 bytes, the same on every server", ErrProductionNeedsSecret)
	}
	return nil
}
