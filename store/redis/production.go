package redis

import (
	"errors"
	"fmt"
)

// ProductionEnvironment is the RATELIMIT_ENVIRONMENT value that
// CheckProduction applies to.
const ProductionEnvironment = "production"

// ErrProductionNeedsRedis is wrapped by the error of CheckProduction.
var ErrProductionNeedsRedis = errors.New("production requires a Redis store")

// CheckProduction returns an error that wraps ErrProductionNeedsRedis when
// environment is "production", redisURL is empty and the operator did not
// choose the in-memory store explicitly (RATELIMIT_FALLBACK_TO_MEMORY=true
// set, not defaulted). In-memory limits multiply with the number of
// servers, which a production deployment should not get by accident. Other
// environments always pass.
func CheckProduction(environment, redisURL string, memoryChosen bool) error {
	if environment == ProductionEnvironment && redisURL == "" && !memoryChosen {
		return fmt.Errorf("RATELIMIT_ENVIRONMENT=production: %w that every server shares: "+
			"set RATELIMIT_REDIS_URL, such as redis://redis:6379/0, or set "+
			"RATELIMIT_FALLBACK_TO_MEMORY=true to accept that each server counts on its own",
			ErrProductionNeedsRedis)
	}
	return nil
}
