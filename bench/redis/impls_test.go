package main

import (
	"context"
	"testing"

	"github.com/calm-limiter/calm/internal/redistest"
)

// TestImplementationsLimit checks that every adapter admits benchQuota
// requests of one key and then denies, as its library does. GCRA refills
// one request every 60 ms, so a slow run may admit one or two more.
func TestImplementationsLimit(t *testing.T) {
	srv := redistest.Start(t)
	url := "redis://" + srv.Addr + "/0"
	cfg := benchConfig{concurrency: 4}
	builders := []func(string, benchConfig) (implementation, string, error){
		newCalm, newCalmStacked, newRedisRate, newUlule,
	}
	for _, build := range builders {
		impl, _, err := build(url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(impl.name, func(t *testing.T) {
			defer impl.close()
			limit := benchQuota
			if impl.name == "calm_stacked" {
				limit = 100 // its tightest rule, 100 per second
			}
			admitted := 0
			for i := 0; i < limit+5; i++ {
				ok, err := impl.check(context.Background(), "one-key")
				if err != nil {
					t.Fatalf("check %d: %v", i, err)
				}
				if ok {
					admitted++
				}
			}
			if admitted < limit || admitted >= limit+5 {
				t.Errorf("%s admitted %d of %d requests on a limit of %d, want %d and a few denials",
					impl.name, admitted, limit+5, limit, limit)
			}
		})
	}
}
