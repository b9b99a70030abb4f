package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadAPIKeys(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("s3cret-key"))
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{name: "valid", file: "- sha256: " + strings.ToUpper(good) +
			"\n  subject: svc\n  tier: paid\n  permissions: [circuit.bypass]\n"},
		{name: "empty file", file: ""},
		{name: "raw key instead of hash", file: "- sha256: s3cret-key\n  subject: svc\n",
			wantErr: "invalid sha256"},
		{name: "missing subject", file: "- sha256: " + good + "\n", wantErr: "missing subject"},
		{name: "duplicate", file: "- {sha256: " + good + ", subject: a}\n- {sha256: " + good +
			", subject: b}\n", wantErr: "listed twice"},
		{name: "unknown key", file: "- {sha256: " + good + ", subject: a, key: x}\n",
			wantErr: `keys.yaml: line 1: keys[0]: unknown setting "key": ` +
				`use sha256, subject, tier or permissions`},
		{name: "misspelt key", file: "- sha256: " + good + "\n  subjct: a\n",
			wantErr: `keys.yaml: line 2: keys[0]: unknown setting "subjct" (did you mean "subject"?)`},
		{name: "permissions not a list", file: "- sha256: " + good + "\n  subject: a\n" +
			"  permissions: circuit.bypass\n",
			wantErr: `keys.yaml: line 3: keys[0].permissions="circuit.bypass": invalid: want a ` +
				`list, such as [circuit.bypass]`},
		{name: "not a list", file: "sha256: " + good + "\n",
			wantErr: `keys.yaml: line 1: keys: invalid: want a list, each item starting with "- ", ` +
				`not a mapping`},
		{name: "not YAML", file: "- [\n", wantErr: "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "keys.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			lookup, err := LoadAPIKeys(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadAPIKeys() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadAPIKeys() error = %v", err)
			}
			p, ok := lookup(good)
			if tt.name == "valid" && (!ok || p.Subject != "svc" || p.Tier != "paid") {
				t.Errorf("lookup(good) = %+v, %v; want svc, paid", p, ok)
			}
			if _, ok := lookup(strings.Repeat("0", 64)); ok {
				t.Error("lookup(unknown) = true, want false")
			}
		})
	}
}
