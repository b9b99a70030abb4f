// Package compare runs calm and other Go rate limiters behind one small
// interface so that benchmarks can compare them on equal terms: the same
// keys, the same limit and one check per request.
//
// Each adapter uses the peer's in-process store in the configuration its
// documentation suggests, and changes a default only where the default
// would forget keys during a benchmark. The adapters are not a general
// wrapper: they exist to measure, and a test checks that each one allows
// and denies as its library does.
package compare

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/go-chi/httprate"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"
	"github.com/ulule/limiter/v3"
	ulmemory "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"
)

// Limit is a quota of Requests per Window. Every adapter turns it into
// its own library's settings so that Requests requests pass at once on a
// fresh key and the next one is denied.
type Limit struct {
	Requests int64
	Window   time.Duration
	// Keys is the number of distinct keys the caller will use. Adapters of
	// stores with a key cap make room for at least Keys keys; the others
	// ignore it. Zero means the library's default.
	Keys int
}

// Limiter is one rate limiter under test. Allow charges one request to key
// and reports whether it may pass. Implementations are safe for concurrent
// use.
type Limiter interface {
	Allow(key string) bool
	// Close stops background work (sweepers, cleaners) that the library
	// started.
	Close() error
}

// Peer names a rate limiter and builds it for a limit.
type Peer struct {
	// Name is the label in benchmark names and reports, such as "xtime".
	Name string
	// Via says which API of the library the adapter calls.
	Via string
	// Algorithm is calm's algorithm that matches the peer's own best.
	// BenchmarkHeap compares the peer's heap per key with that of calm's
	// memory store under this algorithm, CalmStorePeer(Algorithm).
	Algorithm algorithm.Kind
	New       func(Limit) (Limiter, error)
}

// Peers returns calm's adapters first, then the other libraries in a fixed
// order. Reports take the first entry as the base of every speed ratio.
func Peers() []Peer {
	return append(CalmPeers(), OtherPeers()...)
}

// HeapPeers returns Peers followed by calm's memory store under every
// other algorithm that a peer in OtherPeers runs, in the order of their
// first peer, so that BenchmarkHeap measures each peer and calm under the
// same algorithm.
func HeapPeers() []Peer {
	peers := Peers()
	have := make(map[string]bool)
	for _, p := range peers {
		have[p.Name] = true
	}
	for _, p := range OtherPeers() {
		calm := CalmStorePeer(p.Algorithm)
		if !have[calm.Name] {
			have[calm.Name] = true
			peers = append(peers, calm)
		}
	}
	return peers
}

// PeerAlgorithm returns the Algorithm of the peer in HeapPeers named
// name, and false when no peer has that name.
func PeerAlgorithm(name string) (algorithm.Kind, bool) {
	for _, p := range HeapPeers() {
		if p.Name == name {
			return p.Algorithm, true
		}
	}
	return 0, false
}

// OtherPeers returns the adapters of the libraries calm is compared with.
// The comment above each one says why its Algorithm is the closest of
// calm's, from the library's source at the version in go.mod.
func OtherPeers() []Peer {
	return []Peer{
		// rate.Limiter keeps a token count and the time of its last update,
		// and adds tokens continuously up to the burst.
		{Name: "xtime", Via: "golang.org/x/time/rate.Limiter per key in a map under a sync.Mutex",
			Algorithm: algorithm.TokenBucket, New: newXTime},
		// memorystore refills a key's bucket only when a whole Interval,
		// counted from the key's first request, has passed, and then to
		// full whenever Interval in nanoseconds is at least Tokens². So it
		// is a fixed window that starts at the first request, not a token
		// bucket.
		{Name: "golimiter", Via: "sethvargo/go-limiter memorystore Store.Take",
			Algorithm: algorithm.FixedWindow, New: newGoLimiter},
		// The memory store keeps a count and an expiry per key, sets the
		// expiry to the first request plus Period and restarts the count
		// once it passes: a fixed window that starts at the first request.
		{Name: "ulule", Via: "ulule/limiter/v3 Limiter.Get on the memory store",
			Algorithm: algorithm.FixedWindow, New: newUlule},
		// GCRARateLimiterCtx stores one theoretical arrival time per key.
		{Name: "throttled", Via: "throttled/v2 GCRARateLimiterCtx on memstore (no key cap)",
			Algorithm: algorithm.GCRA, New: newThrottled},
		// The local counter counts each key in the current and previous
		// aligned windows and weights the previous count by the part of it
		// the sliding window still covers, as calm's sliding window does.
		{Name: "httprate", Via: "go-chi/httprate RateLimiter.OnLimit, response headers off",
			Algorithm: algorithm.SlidingWindow, New: newHTTPRate},
	}
}

// xtimeLimiter is the usual way to key golang.org/x/time/rate: a map of
// per-key token buckets under one mutex.
type xtimeLimiter struct {
	mu     sync.Mutex
	keys   map[string]*rate.Limiter
	every  rate.Limit
	bucket int
}

func newXTime(l Limit) (Limiter, error) {
	perSecond := float64(l.Requests) / l.Window.Seconds()
	return &xtimeLimiter{
		keys:   make(map[string]*rate.Limiter),
		every:  rate.Limit(perSecond),
		bucket: int(l.Requests),
	}, nil
}

func (x *xtimeLimiter) Allow(key string) bool {
	x.mu.Lock()
	lim, ok := x.keys[key]
	if !ok {
		lim = rate.NewLimiter(x.every, x.bucket)
		x.keys[key] = lim
	}
	x.mu.Unlock()
	return lim.Allow()
}

func (x *xtimeLimiter) Close() error { return nil }

type goLimiter struct {
	store interface {
		Take(ctx context.Context, key string) (uint64, uint64, uint64, bool, error)
		Close(ctx context.Context) error
	}
}

func newGoLimiter(l Limit) (Limiter, error) {
	st, err := memorystore.New(&memorystore.Config{
		Tokens:   uint64(l.Requests),
		Interval: l.Window,
	})
	if err != nil {
		return nil, fmt.Errorf("creating go-limiter memorystore: %w", err)
	}
	return &goLimiter{store: st}, nil
}

func (g *goLimiter) Allow(key string) bool {
	_, _, _, ok, err := g.store.Take(context.Background(), key)
	return ok && err == nil
}

func (g *goLimiter) Close() error { return g.store.Close(context.Background()) }

type ululeLimiter struct {
	lim *limiter.Limiter
}

func newUlule(l Limit) (Limiter, error) {
	st := ulmemory.NewStore()
	return &ululeLimiter{lim: limiter.New(st, limiter.Rate{Period: l.Window, Limit: l.Requests})}, nil
}

func (u *ululeLimiter) Allow(key string) bool {
	res, err := u.lim.Get(context.Background(), key)
	return err == nil && !res.Reached
}

// Close does nothing: the memory store stops its cleaner when the garbage
// collector frees the store.
func (u *ululeLimiter) Close() error { return nil }

type throttledLimiter struct {
	lim *throttled.GCRARateLimiterCtx
}

func newThrottled(l Limit) (Limiter, error) {
	// maxKeys 0 keeps every key in a plain map. A bounded memstore would
	// evict keys in the 100k- and 1M-key cases and measure its LRU instead.
	st, err := memstore.NewCtx(0)
	if err != nil {
		return nil, fmt.Errorf("creating throttled memstore: %w", err)
	}
	quota := throttled.RateQuota{
		MaxRate:  throttled.PerDuration(int(l.Requests), l.Window),
		MaxBurst: int(l.Requests) - 1, // throttled admits MaxBurst+1 at once
	}
	lim, err := throttled.NewGCRARateLimiterCtx(st, quota)
	if err != nil {
		return nil, fmt.Errorf("creating throttled GCRA limiter: %w", err)
	}
	return &throttledLimiter{lim: lim}, nil
}

func (t *throttledLimiter) Allow(key string) bool {
	limited, _, err := t.lim.RateLimitCtx(context.Background(), key, 1)
	return err == nil && !limited
}

func (t *throttledLimiter) Close() error { return nil }

// httprateLimiter calls the public per-key method of httprate's limiter.
// OnLimit needs a request (for its context) and a response writer (for
// headers); the adapter passes one request built up front and a writer
// that discards everything, and turns the response headers off so that
// no peer pays for headers.
type httprateLimiter struct {
	lim *httprate.RateLimiter
	req *http.Request
}

func newHTTPRate(l Limit) (Limiter, error) {
	lim := httprate.NewRateLimiter(int(l.Requests), l.Window,
		httprate.WithResponseHeaders(httprate.ResponseHeaders{}))
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("building request for httprate: %w", err)
	}
	return &httprateLimiter{lim: lim, req: req}, nil
}

func (h *httprateLimiter) Allow(key string) bool {
	return !h.lim.OnLimit(discardWriter{}, h.req, key)
}

func (h *httprateLimiter) Close() error { return nil }

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (discardWriter) WriteHeader(int)             {}
