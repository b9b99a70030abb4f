package jwtverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"sync"
	"time"
)

// Defaults of JWKSConfig.
const (
	DefaultJWKSRefreshInterval    = 10 * time.Minute
	DefaultJWKSMinRefreshInterval = 30 * time.Second
	DefaultJWKSTimeout            = 5 * time.Second
	DefaultJWKSMaxBytes           = 1 << 20
	DefaultJWKSMaxKeys            = 64
)

// JWKSConfig configures a JWKS key source. Exactly one of URL and File
// must be set.
type JWKSConfig struct {
	// URL is fetched with GET (RATELIMIT_AUTH_JWKS_URL).
	URL string
	// File is read from disk (RATELIMIT_AUTH_JWKS_FILE).
	File string
	// RefreshInterval is how old the keys may get before a lookup starts a
	// background refresh. Default 10 minutes.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two refreshes, so that
	// tokens with unknown key IDs cannot make the server fetch on every
	// request. Default 30 seconds.
	MinRefreshInterval time.Duration
	// Timeout bounds one fetch. Default 5 seconds.
	Timeout time.Duration
	// MaxBytes bounds the size of the key set document. Default 1 MiB.
	MaxBytes int64
	// MaxKeys bounds the number of keys kept; further keys are ignored.
	// Default 64.
	MaxKeys int
	// Client fetches URL. Nil means a client with Timeout and no redirects
	// to other hosts.
	Client *http.Client
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// JWKS is a key source backed by a JSON Web Key Set (RFC 7517). It keeps
// the last good set: a failed refresh leaves the previous keys in force.
// It is safe for concurrent use; Close stops a refresh in flight.
type JWKS struct {
	cfg    JWKSConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	keys        []Key
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last fetch started
	refreshing  bool
	closed      bool
	lastErr     error
}

// NewJWKS fetches the key set once and returns the source. An error means
// the first fetch failed or the set holds no usable key.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if (cfg.URL == "") == (cfg.File == "") {
		return nil, errors.New("jwtverify: set exactly one of the JWKS URL and the JWKS file")
	}
	setDefault(&cfg.RefreshInterval, DefaultJWKSRefreshInterval)
	setDefault(&cfg.MinRefreshInterval, DefaultJWKSMinRefreshInterval)
	setDefault(&cfg.Timeout, DefaultJWKSTimeout)
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultJWKSMaxBytes
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultJWKSMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout, CheckRedirect: sameHostRedirect}
	}
	base, cancel := context.WithCancel(context.Background())
	j := &JWKS{cfg: cfg, ctx: base, cancel: cancel}
	if err := j.Refresh(ctx); err != nil {
		cancel()
		return nil, err
	}
	return j, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 || req.URL.Host != via[0].URL.Host {
		return errors.New("jwtverify: JWKS redirect to another host or too many redirects")
	}
	return nil
}

// Keys returns the keys with the given ID, or every key when id is "". It
// starts a background refresh when the keys are older than the refresh
// interval, or when id is unknown and the last refresh is older than the
// minimum refresh interval; the current lookup uses the keys at hand.
func (j *JWKS) Keys(id string) []Key {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Key
	for _, k := range j.keys {
		if id == "" || k.ID == id {
			out = append(out, k)
		}
	}
	now := j.cfg.Now()
	stale := now.Sub(j.fetchedAt) >= j.cfg.RefreshInterval
	unknown := id != "" && len(out) == 0
	due := now.Sub(j.attemptedAt) >= j.cfg.MinRefreshInterval
	if (stale || unknown) && due && !j.refreshing && !j.closed {
		j.refreshing = true
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			_ = j.Refresh(j.ctx) // the error is kept in lastErr
		}()
	}
	return out
}

// Refresh fetches the key set now and replaces the keys when it holds at
// least one usable key.
func (j *JWKS) Refresh(ctx context.Context) error {
	j.mu.Lock()
	j.attemptedAt = j.cfg.Now()
	j.mu.Unlock()

	keys, err := j.fetch(ctx)

	j.mu.Lock()
	defer j.mu.Unlock()
	j.refreshing = false
	j.lastErr = err
	if err != nil {
		return err
	}
	j.keys = keys
	j.fetchedAt = j.cfg.Now()
	return nil
}

// Err returns the error of the last refresh, or nil when it succeeded.
func (j *JWKS) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lastErr
}

// Close cancels a refresh in flight and waits for it to end.
func (j *JWKS) Close() error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
	return nil
}

func (j *JWKS) fetch(ctx context.Context) ([]Key, error) {
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	var (
		body []byte
		err  error
	)
	if j.cfg.File != "" {
		body, err = readFileLimited(j.cfg.File, j.cfg.MaxBytes)
	} else {
		body, err = j.get(ctx)
	}
	if err != nil {
		return nil, err
	}
	keys, err := ParseJWKS(body, j.cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("jwtverify: JWKS holds no usable signing key")
	}
	return keys, nil
}

func (j *JWKS) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("jwtverify: invalid JWKS URL %q: %w", j.cfg.URL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwtverify: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwtverify: fetching JWKS: status %s", resp.Status)
	}
	return readLimited(resp.Body, j.cfg.MaxBytes)
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwtverify: reading JWKS file: %w", err)
	}
	defer f.Close()
	return readLimited(f, limit)
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("jwtverify: reading JWKS: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("jwtverify: JWKS larger than %d bytes", limit)
	}
	return body, nil
}

// jwk is the subset of RFC 7517/7518/8037 members that public signing
// keys use.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS parses a JSON Web Key Set and returns up to maxKeys public
// signing keys. Keys for encryption ("use": "enc"), symmetric keys ("oct"),
// private members are not read, and keys of unknown types or with invalid
// parameters are skipped, so one bad key does not disable the others.
func ParseJWKS(data []byte, maxKeys int) ([]Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("jwtverify: invalid JWKS: %w", err)
	}
	var keys []Key
	for _, raw := range set.Keys {
		if len(keys) == maxKeys {
			break
		}
		var k jwk
		if json.Unmarshal(raw, &k) != nil || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if key, ok := k.publicKey(); ok {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

func (k jwk) publicKey() (Key, bool) {
	out := Key{ID: k.Kid, Algorithm: k.Alg}
	switch k.Kty {
	case "RSA":
		n, okN := decodeBig(k.N)
		e, okE := decodeBig(k.E)
		if !okN || !okE || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return Key{}, false
		}
		out.Public = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		curve := map[string]elliptic.Curve{
			"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521(),
		}[k.Crv]
		if curve == nil {
			return Key{}, false
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := base64.RawURLEncoding.DecodeString(k.X)
		y, errY := base64.RawURLEncoding.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return Key{}, false
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return Key{}, false
		}
		out.Public = pub
	case "OKP":
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return Key{}, false
		}
		out.Public = ed25519.PublicKey(x)
	default:
		return Key{}, false
	}
	if checkPublicKey(out.Public) != nil {
		return Key{}, false
	}
	return out, true
}

func decodeBig(s string) (*big.Int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return new(big.Int).SetBytes(b), true
}
