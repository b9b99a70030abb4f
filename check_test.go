package calm

import "testing"

func TestCheckNoDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		check Check
		want  int64
	}{
		{"widest rule", Check{Rules: MustParseRules("10/second,300/minute")}, 300},
		{"burst above rules", Check{Rules: MustParseRules("10/second"), Burst: 50}, 50},
		{"no rules", Check{}, 0},
	}
	for _, tt := range tests {
		if got := tt.check.NoDelay(); got != tt.want {
			t.Errorf("%s: NoDelay() = %d, want %d", tt.name, got, tt.want)
		}
	}
}
