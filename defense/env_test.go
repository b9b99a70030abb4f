package defense

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
)

func lookupFrom(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{name: "empty", env: map[string]string{}, want: Config{}},
		{
			name: "every setting",
			env: map[string]string{
				EnvMode:               "Lockdown",
				EnvEndpointMultiplier: "5",
				EnvGlobalLimit:        "1000/second,50000/minute",
				EnvThreshold:          "2000",
				EnvWindow:             "30",
				EnvRecoveryTime:       "10s",
				EnvMaxJitter:          "0",
				EnvHalfOpenProbes:     "4",
				EnvSyncInterval:       "20ms",
				EnvReductionFactor:    "0.25",
				EnvAllowKnownGood:     "true",
			},
			want: Config{
				Mode:               Lockdown,
				EndpointMultiplier: 5,
				GlobalRules:        calm.MustParseRules("1000/second,50000/minute"),
				Threshold:          2000,
				Window:             30 * time.Second,
				RecoveryTime:       10 * time.Second,
				MaxJitter:          -1,
				HalfOpenProbes:     4,
				SyncInterval:       20 * time.Millisecond,
				ReductionFactor:    0.25,
				AllowKnownGood:     true,
			},
		},
		{name: "threshold alias", env: map[string]string{EnvThresholdAlias: "77"}, want: Config{Threshold: 77}},
		{
			name: "long name wins over alias",
			env:  map[string]string{EnvThresholdAlias: "77", EnvThreshold: "88"},
			want: Config{Threshold: 88},
		},
		{name: "threshold off", env: map[string]string{EnvThreshold: "0"}, want: Config{Threshold: -1}},
		{name: "layers off", env: map[string]string{EnvEndpointMultiplier: "0", EnvGlobalLimit: "off"},
			want: Config{EndpointMultiplier: -1, GlobalRules: []calm.Rule{}}},
		{name: "global as a number", env: map[string]string{EnvGlobalLimit: "1200"},
			want: Config{GlobalRules: calm.MustParseRules("1200/minute")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ConfigFromEnv(lookupFrom(tt.env))
			if err != nil {
				t.Fatalf("ConfigFromEnv() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ConfigFromEnv() = %+v, want %+v", got, tt.want)
			}
			if _, err := New(got); err != nil {
				t.Errorf("New(ConfigFromEnv()) error = %v", err)
			}
		})
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		value string
	}{
		{name: "unknown mode", key: EnvMode, value: "panic"},
		{name: "negative multiplier", key: EnvEndpointMultiplier, value: "-2"},
		{name: "global garbage", key: EnvGlobalLimit, value: "lots"},
		{name: "negative global", key: EnvGlobalLimit, value: "-5"},
		{name: "threshold text", key: EnvThreshold, value: "many"},
		{name: "alias negative", key: EnvThresholdAlias, value: "-1"},
		{name: "window too short", key: EnvWindow, value: "500ms"},
		{name: "window unit missing", key: EnvWindow, value: "1 minute"},
		{name: "recovery zero", key: EnvRecoveryTime, value: "0"},
		{name: "probes zero", key: EnvHalfOpenProbes, value: "0"},
		{name: "factor zero", key: EnvReductionFactor, value: "0"},
		{name: "factor above one", key: EnvReductionFactor, value: "2"},
		{name: "factor NaN", key: EnvReductionFactor, value: "NaN"},
		{name: "known-good word", key: EnvAllowKnownGood, value: "sometimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ConfigFromEnv(lookupFrom(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("ConfigFromEnv(%s=%q) error = nil, want one", tt.key, tt.value)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.key) || !strings.Contains(msg, tt.value) || !strings.Contains(msg, "use") {
				t.Errorf("ConfigFromEnv(%s=%q) error = %q, want the name, the value and a fix", tt.key, tt.value, msg)
			}
		})
	}
}

func FuzzConfigFromEnv(f *testing.F) {
	for _, seed := range []string{"30", "30s", "0.5", "true", "50000/minute", "off", "-1", "1e400", "\n"} {
		f.Add(EnvWindow, seed)
		f.Add(EnvGlobalLimit, seed)
		f.Add(EnvReductionFactor, seed)
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		cfg, err := ConfigFromEnv(lookupFrom(map[string]string{key: value}))
		if err != nil {
			return
		}
		if _, err := New(cfg); err != nil {
			t.Errorf("New(ConfigFromEnv(%s=%q)) error = %v, want the parsed config to be valid", key, value, err)
		}
	})
}
