package identity

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/calm-limiter/calm/config"
)

// Bounds on an API key file.
const (
	maxAPIKeyFile    = 1 << 20
	maxAPIKeyEntries = 10000
)

// apiKeyEntry is one entry of an API key file.
type apiKeyEntry struct {
	SHA256      string   `yaml:"sha256"`
	Subject     string   `yaml:"subject"`
	Tier        string   `yaml:"tier"`
	Permissions []string `yaml:"permissions"`
}

// LoadAPIKeys reads an API key file (RATELIMIT_AUTH_API_KEYS_FILE) and
// returns a lookup for Config.APIKeys. The file is a YAML list of entries
// with the keys sha256 (the SHA-256 of the API key in hexadecimal, never
// the key itself), subject, tier and permissions.
func LoadAPIKeys(path string) (APIKeyLookup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading API key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAPIKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading API key file %s: %w", path, err)
	}
	if len(data) > maxAPIKeyFile {
		return nil, fmt.Errorf("API key file %s: larger than %d bytes", path, maxAPIKeyFile)
	}
	return parseAPIKeys(path, data)
}

func parseAPIKeys(path string, data []byte) (APIKeyLookup, error) {
	// The shape check names the entry, the key and the fix where the
	// decoder's own messages name Go types.
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("API key file %s: invalid YAML: %s", path,
			strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := config.CheckSection(path, "keys", &node, []apiKeyEntry{}); err != nil {
		return nil, fmt.Errorf("API key file %w", err)
	}
	var entries []apiKeyEntry
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil && err != io.EOF {
		return nil, fmt.Errorf("API key file %s: invalid: %v", path, err)
	}
	if len(entries) > maxAPIKeyEntries {
		return nil, fmt.Errorf("API key file %s: %d entries, want at most %d", path,
			len(entries), maxAPIKeyEntries)
	}
	keys := make(map[string]Principal, len(entries))
	for i, e := range entries {
		sum := strings.ToLower(strings.TrimSpace(e.SHA256))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			return nil, fmt.Errorf("API key file %s: entry %d: invalid sha256 %q: want 64 "+
				"hexadecimal digits, the SHA-256 of the key", path, i, e.SHA256)
		}
		if strings.TrimSpace(e.Subject) == "" {
			return nil, fmt.Errorf("API key file %s: entry %d: missing subject", path, i)
		}
		if _, dup := keys[sum]; dup {
			return nil, fmt.Errorf("API key file %s: entry %d: sha256 listed twice", path, i)
		}
		keys[sum] = Principal{Subject: e.Subject, Tier: e.Tier, Permissions: e.Permissions}
	}
	return func(sha256Hex string) (Principal, bool) {
		p, ok := keys[sha256Hex]
		return p, ok
	}, nil
}
