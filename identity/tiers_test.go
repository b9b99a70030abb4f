package identity

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDecodeTierConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		ok      bool
		wantErr bool
		levels  int
	}{
		{name: "absent", doc: "other: 1"},
		{name: "full", ok: true, levels: 2, doc: `tiers:
  routes: ["GET /api/tiered"]
  anonymous: [5/minute]
  levels:
    - {name: free, limits: [10/minute]}
    - {name: paid, limits: [100/minute, 1000/hour]}`},
		{name: "unknown key", wantErr: true, doc: "tiers:\n  level: []"},
		{name: "wrong shape", wantErr: true, doc: "tiers: [a, b]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var doc struct {
				Tiers yaml.Node `yaml:"tiers"`
				Other int       `yaml:"other"`
			}
			if err := yaml.Unmarshal([]byte(tt.doc), &doc); err != nil {
				t.Fatal(err)
			}
			cfg, ok, err := DecodeTierConfig(doc.Tiers)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeTierConfig() error = %v, wantErr %v", err, tt.wantErr)
			}
			if ok != tt.ok || len(cfg.Levels) != tt.levels {
				t.Errorf("DecodeTierConfig() = ok %v, %d levels; want %v, %d",
					ok, len(cfg.Levels), tt.ok, tt.levels)
			}
		})
	}
}
