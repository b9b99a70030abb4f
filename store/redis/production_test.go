package redis

import (
	"errors"
	"testing"
)

func TestCheckProduction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		environment  string
		url          string
		memoryChosen bool
		wantErr      bool
	}{
		{name: "production without redis", environment: "production", wantErr: true},
		{name: "production with redis", environment: "production", url: "redis://r:6379"},
		{name: "production with memory chosen", environment: "production", memoryChosen: true},
		{name: "development without redis", environment: "development"},
		{name: "staging without redis", environment: "staging"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckProduction(tt.environment, tt.url, tt.memoryChosen)
			if got := errors.Is(err, ErrProductionNeedsRedis); got != tt.wantErr {
				t.Errorf("CheckProduction(%q, %q, %v) = %v, want error %v",
					tt.environment, tt.url, tt.memoryChosen, err, tt.wantErr)
			}
		})
	}
}
