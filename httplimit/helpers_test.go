package httplimit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/store/memory"
)

// epoch is a minute boundary, so fixed windows start at the test's start.
var epoch = time.Unix(1_700_000_040, 0)

// testClock is a clock that moves only when a test advances it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: epoch} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is a Limiter on a real memory store with a test clock, and a
// buffer that collects its log.
type fixture struct {
	lim   *Limiter
	calm  *calm.Limiter
	clock *testClock
	store *memory.Store
	log   *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newFixture builds a Limiter with fixed-window limits, whose numbers do not
// depend on the sliding-window weighting.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := &fixture{clock: newTestClock(), log: &syncBuffer{}}
	f.store = memory.New(memory.Config{Clock: f.clock.Now})
	t.Cleanup(func() { f.store.Close() })
	var err error
	f.calm, err = calm.New(calm.Config{Store: f.store, Algorithm: algorithm.FixedWindow})
	if err != nil {
		t.Fatalf("calm.New: %v", err)
	}
	cfg.Limiter = f.calm
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.lim, err = New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// okHandler responds 200 "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("ok"))
})

// do sends one request through h from the given client address.
func do(h http.Handler, method, target, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decodeBody decodes a denied answer's body.
func decodeBody(t *testing.T, w *httptest.ResponseRecorder) Body {
	t.Helper()
	var b Body
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("decoding body %q: %v", w.Body.String(), err)
	}
	return b
}
