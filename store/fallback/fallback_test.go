package fallback

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
	"github.com/calm-limiter/calm/store/redis"
)

// manualTimer replaces time.After: each wait blocks until the test calls
// Fire, and waits reports every backoff asked for.
type manualTimer struct {
	waits chan time.Duration
	fire  chan time.Time
}

func newManualTimer() *manualTimer {
	return &manualTimer{waits: make(chan time.Duration, 16), fire: make(chan time.Time)}
}

func (m *manualTimer) After(d time.Duration) <-chan time.Time {
	m.waits <- d
	ch := make(chan time.Time, 1)
	go func() {
		if t, ok := <-m.fire; ok {
			ch <- t
		}
	}()
	return ch
}

// nextWait returns the next backoff the probe waits for.
func (m *manualTimer) nextWait(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-m.waits:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the probe did not wait for its next backoff within 10s")
		return 0
	}
}

// syncBuffer is a log destination safe for concurrent writes.
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

type fixture struct {
	srv      *redistest.Server
	primary  *redis.Store
	store    *Store
	timer    *manualTimer
	log      *syncBuffer
	changes  chan bool
	redisURL string
}

// newFixture starts redis-server and a fallback store over a Redis store
// with the given timeout and a memory store.
func newFixture(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	f := &fixture{srv: redistest.Start(t), timer: newManualTimer(), log: &syncBuffer{}, changes: make(chan bool, 16)}
	f.redisURL = "redis://" + f.srv.Addr
	var err error
	f.primary, err = redis.New(redis.Config{URL: f.redisURL, Timeout: timeout, SocketTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.store, err = New(Config{
		Primary:   f.primary,
		Secondary: memory.New(memory.Config{}),
		Name:      "redis",
		Logger:    slog.New(slog.NewTextHandler(f.log, nil)),
		After:     f.timer.After,
		OnChange:  func(degraded bool) { f.changes <- degraded },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	return f
}

func (f *fixture) waitChange(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-f.changes:
		if got != want {
			t.Fatalf("transition to degraded=%v, want degraded=%v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no transition to degraded=%v within 10s", want)
	}
}

// testTimeout is the Redis timeout of tests that do not measure it: `make
// test` runs every package at once under the race detector on two cores,
// where a round trip can take longer than the 50ms default.
const testTimeout = 5 * time.Second

var testCheck = store.Check{
	Key:       "test:fallback:{c}:60",
	Algorithm: algorithm.FixedWindow,
	Limit:     algorithm.Limit{Quota: 100, Window: time.Minute.Microseconds()},
}

func applyOK(t *testing.T, s store.Store) algorithm.Decision {
	t.Helper()
	out := make([]algorithm.Decision, 1)
	ok, err := s.Apply(context.Background(), []store.Check{testCheck}, 1, out)
	if err != nil || !ok {
		t.Fatalf("Apply = %v, %v, want true, nil", ok, err)
	}
	return out[0]
}

func TestFallbackAndRecovery(t *testing.T) {
	f := newFixture(t, testTimeout)
	if d := applyOK(t, f.store); d.Remaining != 99 {
		t.Fatalf("Apply on redis Remaining = %d, want 99", d.Remaining)
	}

	f.srv.Stop()
	start := time.Now()
	d := applyOK(t, f.store)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("first Apply after redis died took %v, want well under 1s", elapsed)
	}
	if d.Remaining != 99 {
		t.Errorf("Apply on the fallback Remaining = %d, want 99 (fresh memory state)", d.Remaining)
	}
	f.waitChange(t, true)
	for i := 0; i < 20; i++ {
		applyOK(t, f.store)
	}
	if n := strings.Count(f.log.String(), "level=WARN"); n != 1 {
		t.Errorf("log has %d warnings after 21 failed-over checks, want 1:\n%s", n, f.log)
	}
	if !f.store.Degraded() {
		t.Fatal("Degraded() = false while redis is down")
	}

	// A failed probe doubles the backoff.
	if got := f.timer.nextWait(t); got != DefaultMinBackoff {
		t.Errorf("first probe backoff = %v, want %v", got, DefaultMinBackoff)
	}
	f.timer.fire <- time.Now()
	if got := f.timer.nextWait(t); got != 2*DefaultMinBackoff {
		t.Errorf("second probe backoff = %v, want %v", got, 2*DefaultMinBackoff)
	}

	f.srv.Restart(t)
	f.timer.fire <- time.Now()
	f.waitChange(t, false)
	if f.store.Degraded() {
		t.Fatal("Degraded() = true after a successful probe")
	}
	if d := applyOK(t, f.store); d.Remaining != 99 {
		t.Errorf("Apply after recovery Remaining = %d, want 99 (a fresh redis)", d.Remaining)
	}
	if n := strings.Count(f.log.String(), "store recovered"); n != 1 {
		t.Errorf("log has %d recovery lines, want 1:\n%s", n, f.log)
	}
}

// TestHungRedisFallsBackWithinTimeout pauses redis-server so that it keeps
// its connections but replies to nothing.
func TestHungRedisFallsBackWithinTimeout(t *testing.T) {
	f := newFixture(t, 100*time.Millisecond)
	applyOK(t, f.store)
	if err := f.srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Resume() })

	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			applyOK(t, f.store)
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The bound is the 100ms timeout plus scheduling slack on a busy
	// machine; without the timeout a request would wait for the 10s socket
	// timeout.
	if slowest > 2*time.Second {
		t.Errorf("slowest Apply against a hung redis took %v, want about 100ms", slowest)
	}
	f.waitChange(t, true)

	if err := f.srv.Resume(); err != nil {
		t.Fatal(err)
	}
	f.timer.nextWait(t)
	f.timer.fire <- time.Now()
	f.waitChange(t, false)
}

func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	primary, err := redis.New(redis.Config{URL: "redis://" + srv.Addr, SocketTimeout: 200 * time.Millisecond, Timeout: testTimeout})
	if err != nil {
		t.Fatalf("redis.New with redis down = %v, want a store that connects later", err)
	}
	timer := newManualTimer()
	changes := make(chan bool, 4)
	s, err := New(Config{
		Primary: primary, Secondary: memory.New(memory.Config{}),
		After: timer.After, OnChange: func(d bool) { changes <- d },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	applyOK(t, s)
	if !s.Degraded() {
		t.Fatal("Degraded() = false with redis down at start")
	}
	srv.Restart(t)
	timer.nextWait(t)
	timer.fire <- time.Now()
	select {
	case d := <-changes:
		if d {
			<-changes
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no recovery within 10s of redis starting")
	}
	if s.Degraded() {
		t.Fatal("Degraded() = true after redis started")
	}
	if d := applyOK(t, s); d.Remaining != 99 {
		t.Errorf("Apply on redis after start Remaining = %d, want 99", d.Remaining)
	}
}

func TestInvalidCheckDoesNotFallBack(t *testing.T) {
	f := newFixture(t, testTimeout)
	bad := testCheck
	bad.Limit.Quota = 0
	out := make([]algorithm.Decision, 1)
	_, err := f.store.Apply(context.Background(), []store.Check{bad}, 1, out)
	if !errors.Is(err, algorithm.ErrInvalidLimit) {
		t.Errorf("Apply(invalid limit) = %v, want ErrInvalidLimit", err)
	}
	if f.store.Degraded() {
		t.Error("Degraded() = true after an invalid check, want false")
	}
}

func TestCanceledRequestDoesNotFallBack(t *testing.T) {
	f := newFixture(t, testTimeout)
	f.srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make([]algorithm.Decision, 1)
	if _, err := f.store.Apply(ctx, []store.Check{testCheck}, 1, out); err == nil {
		t.Error("Apply(canceled context) = nil error, want the context's error")
	}
	if f.store.Degraded() {
		t.Error("Degraded() = true after a canceled request, want false")
	}
}

func TestNewRequiresProbe(t *testing.T) {
	mem := memory.New(memory.Config{})
	defer mem.Close()
	if _, err := New(Config{Primary: mem, Secondary: mem}); err == nil {
		t.Error("New(primary without Ping) = nil error, want an error naming Config.Probe")
	}
	if _, err := New(Config{Secondary: mem}); err == nil {
		t.Error("New(no primary) = nil error, want an error")
	}
}

func TestCloseStopsProbe(t *testing.T) {
	f := newFixture(t, testTimeout)
	f.srv.Stop()
	applyOK(t, f.store)
	f.timer.nextWait(t)
	done := make(chan error)
	go func() { done <- f.store.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s while the probe waited")
	}
	out := make([]algorithm.Decision, 1)
	if _, err := f.store.Apply(context.Background(), []store.Check{testCheck}, 1, out); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
}
