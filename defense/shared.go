package defense

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/sync.lua
	syncLua string
	//go:embed lua/settle.lua
	settleLua string
	//go:embed lua/force.lua
	forceLua string
)

// The scripts run with EVALSHA and fall back to EVAL after a NOSCRIPT
// answer (a restarted Redis or SCRIPT FLUSH).
var (
	syncScript   = rueidis.NewLuaScript(commonLua + syncLua)
	settleScript = rueidis.NewLuaScript(commonLua + settleLua)
	forceScript  = rueidis.NewLuaScript(commonLua + forceLua)
)

// forcedTTL is how long a forced open survives without any server to
// refresh the state hash.
const forcedTTL = 24 * time.Hour

// errNoClient is the cause of a failed call before a client is connected.
var errNoClient = errors.New("not connected to redis")

// sharedBackend runs the breaker on the Redis state hash.
type sharedBackend struct {
	key     string
	channel string
	params  circuitParams
	// ttl is the lifetime of the hash while closed or opened automatically:
	// two windows plus the longest open, refreshed by every call.
	ttl  time.Duration
	dial func() (rueidis.Client, error)
	// nowArg returns the time for the scripts in Unix ms, or "" for the
	// Redis clock. Only tests set it.
	nowArg func() string

	mu     sync.Mutex // guards client and owned
	client rueidis.Client
	owned  bool // the backend dialed the client and closes it

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newSharedBackend(key, channel string, p circuitParams, cfg Config) *sharedBackend {
	return &sharedBackend{
		key:     key,
		channel: channel,
		params:  p,
		ttl:     2*cfg.Window + cfg.RecoveryTime + max(cfg.MaxJitter, 0) + cfg.ProbeWindow,
		dial:    cfg.Dial,
		nowArg:  func() string { return "" },
		client:  cfg.Redis,
	}
}

// connection returns the client, dialing one when the backend has none.
func (b *sharedBackend) connection() (rueidis.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	if b.dial == nil {
		return nil, errNoClient
	}
	c, err := b.dial()
	if err != nil {
		return nil, fmt.Errorf("connecting to redis: %w", err)
	}
	b.client, b.owned = c, true
	return c, nil
}

// run executes one operation as a script. For a sync, epoch is the epoch of
// the state this server saw while it counted the arrivals in arg; the script
// drops them when the shared state has moved to another epoch since, so
// arrivals from before a close never count after it. -1 skips that check.
func (b *sharedBackend) run(ctx context.Context, kind callKind, arg, epoch int64) (snapshot, error) {
	c, err := b.connection()
	if err != nil {
		return snapshot{}, err
	}
	script := syncScript
	switch kind {
	case callSettle:
		script = settleScript
	case callForce:
		script = forceScript
	}
	args := []string{
		b.nowArg(),
		strconv.FormatInt(b.params.threshold, 10),
		strconv.FormatInt(b.params.windowMs, 10),
		strconv.FormatInt(b.params.recoveryMs, 10),
		strconv.FormatInt(b.ttl.Milliseconds(), 10),
		strconv.FormatInt(forcedTTL.Milliseconds(), 10),
		b.channel,
		strconv.FormatInt(arg, 10),
		strconv.FormatInt(epoch, 10),
	}
	res, err := script.Exec(ctx, c, []string{b.key}, args).ToArray()
	if err != nil {
		return snapshot{}, fmt.Errorf("running circuit script: %w", err)
	}
	return parseReply(res)
}

// parseReply reads {is_open, forced, epoch, gen, trip_time, count,
// trip_count, now, changed, cause}.
func parseReply(res []rueidis.RedisMessage) (snapshot, error) {
	if len(res) != 10 {
		return snapshot{}, fmt.Errorf("circuit script returned %d values, want 10", len(res))
	}
	var n [9]int64
	for i := range n {
		v, err := res[i].AsInt64()
		if err != nil {
			return snapshot{}, fmt.Errorf("circuit script value %d: %w", i, err)
		}
		n[i] = v
	}
	cause, err := res[9].ToString()
	if err != nil {
		return snapshot{}, fmt.Errorf("circuit script cause: %w", err)
	}
	return snapshotOf(n, cause), nil
}

func snapshotOf(n [9]int64, cause string) snapshot {
	return snapshot{
		Open:      n[0] == 1,
		Forced:    n[1] == 1,
		Epoch:     n[2],
		Gen:       n[3],
		TripTime:  n[4],
		Count:     n[5],
		TripCount: n[6],
		Now:       n[7],
		Changed:   n[8] == 1,
		Cause:     cause,
	}
}

// parseEvent reads a published event: the nine integers of a script reply
// and the cause, separated by spaces.
func parseEvent(payload string) (snapshot, error) {
	fields := strings.Fields(payload)
	if len(fields) != 10 {
		return snapshot{}, fmt.Errorf("circuit event has %d fields, want 10", len(fields))
	}
	var n [9]int64
	for i := range n {
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return snapshot{}, fmt.Errorf("circuit event field %d: %w", i, err)
		}
		n[i] = v
	}
	return snapshotOf(n, fields[9]), nil
}

// subscribe starts delivering published changes to apply until close. The
// subscription is made again after a Redis outage; changes published while
// it was down reach the server through the next sync instead.
func (b *sharedBackend) subscribe(apply func(snapshot), retry time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for ctx.Err() == nil {
			b.receive(ctx, apply)
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
		}
	}()
}

// receive holds one subscription until it fails or ctx ends.
func (b *sharedBackend) receive(ctx context.Context, apply func(snapshot)) {
	b.mu.Lock()
	c := b.client
	b.mu.Unlock()
	if c == nil {
		return // the sync loop dials; try again later
	}
	_ = c.Receive(ctx, c.B().Subscribe().Channel(b.channel).Build(), func(msg rueidis.PubSubMessage) {
		if snap, err := parseEvent(msg.Message); err == nil {
			apply(snap)
		}
	})
}

func (b *sharedBackend) close() {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.owned && b.client != nil {
		b.client.Close()
	}
}

// Status is the shared circuit state as the state hash holds it.
type Status struct {
	Key          string // the state hash
	Exists       bool   // false when no server has written the hash yet
	Open         bool
	Forced       bool
	TripTime     time.Time // zero while closed
	LastTripTime time.Time
	FailureCount int64 // arrivals in the window at the last sync
	TripCount    int64 // arrivals in the window when the last open began
	Epoch        int64
	Cause        string
	ChangedAt    time.Time
	TTL          time.Duration
}

// ForceShared opens or closes the circuit in Redis for every server, as
// `calm circuit open|close` does, and returns the state after the change.
// Unlike Defense.Force it never falls back to a local breaker: a Redis
// failure is returned.
func ForceShared(ctx context.Context, client rueidis.Client, cfg Config, open bool) (Status, error) {
	cfg.Redis, cfg.Dial = client, nil
	d, err := New(cfg)
	if err != nil {
		return Status{}, err
	}
	defer d.Close()
	arg := int64(0)
	if open {
		arg = 1
	}
	if _, err := d.remote.run(ctx, callForce, arg, -1); err != nil {
		return Status{}, err
	}
	return ReadShared(ctx, client, d.cfg.KeyStart)
}

// ReadShared reads the shared circuit state under keyStart (such as
// "development:ratelimit:v1:") without changing it.
func ReadShared(ctx context.Context, client rueidis.Client, keyStart string) (Status, error) {
	st := Status{Key: keyStart + "circuit:state"}
	fields, err := client.Do(ctx, client.B().Hgetall().Key(st.Key).Build()).AsStrMap()
	if err != nil {
		return st, fmt.Errorf("reading %s: %w", st.Key, err)
	}
	ttl, err := client.Do(ctx, client.B().Pttl().Key(st.Key).Build()).AsInt64()
	if err != nil {
		return st, fmt.Errorf("reading the TTL of %s: %w", st.Key, err)
	}
	st.Exists = len(fields) > 0
	st.TTL = time.Duration(max(ttl, 0)) * time.Millisecond
	number := func(name string) int64 {
		n, _ := strconv.ParseInt(fields[name], 10, 64)
		return n
	}
	stamp := func(name string) time.Time {
		if ms := number(name); ms > 0 {
			return time.UnixMilli(ms)
		}
		return time.Time{}
	}
	st.Open = fields["is_open"] == "1"
	st.Forced = fields["forced"] == "1"
	st.TripTime, st.LastTripTime, st.ChangedAt = stamp("trip_time"), stamp("last_trip_time"), stamp("changed_at")
	st.FailureCount, st.TripCount, st.Epoch = number("failure_count"), number("trip_count"), number("epoch")
	st.Cause = fields["cause"]
	return st, nil
}
