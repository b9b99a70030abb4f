package algorithm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/internal/redistest"
)

// respConn is a minimal RESP2 client: enough to load a script and pipeline
// EVALSHA calls whose replies are arrays of integers.
type respConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dialRESP(t *testing.T, addr string) *respConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dialing redis at %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	return &respConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
}

func (c *respConn) send(args ...string) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// read returns one reply: a string, an int64, a []any or an error reply.
func (c *respConn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, fmt.Errorf("redis: %s", body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		items := make([]any, 0, max(n, 0))
		for range n {
			item, err := c.read()
			if err != nil {
				return nil, err
			}
			items = append(items, item)
		}
		return items, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// luaTestScript wraps the function of kind k in a script that takes the ten
// inputs as ARGV and returns the ten outputs as an array.
func luaTestScript(k Kind) string {
	var b strings.Builder
	b.WriteString(LuaSource(k))
	b.WriteString("\nlocal n = {}\nfor i = 1, 10 do n[i] = tonumber(ARGV[i]) end\n")
	fmt.Fprintf(&b, "return {%s(n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10])}\n", LuaFunction(k))
	return b.String()
}

// luaResult is the output of Decide in the order the Lua function returns it.
func luaResult(s State, d Decision) [10]int64 {
	allowed := int64(0)
	if d.Allowed {
		allowed = 1
	}
	return [10]int64{s.A, s.B, s.C, allowed, int64(d.Reason), d.Limit, d.Remaining, d.ResetAfter, d.RetryAfter, d.Wait}
}

func TestLuaMatchesGo(t *testing.T) {
	srv := redistest.Start(t)
	conn := dialRESP(t, srv.Addr)
	for k := SlidingWindow; k <= GCRA; k++ {
		t.Run(k.String(), func(t *testing.T) {
			conn.send("SCRIPT", "LOAD", luaTestScript(k))
			if err := conn.w.Flush(); err != nil {
				t.Fatal(err)
			}
			reply, err := conn.read()
			if err != nil {
				t.Fatalf("SCRIPT LOAD: %v", err)
			}
			sha, _ := reply.(string)
			compareTraces(t, conn, k, sha, rand.New(rand.NewPCG(uint64(k), 42)))
		})
	}
}

// compareTraces runs parallel random traces through Decide and through the
// Lua function, one pipelined batch per step, and requires equal outputs.
func compareTraces(t *testing.T, conn *respConn, k Kind, sha string, r *rand.Rand) {
	const traces, steps = 64, 250
	limits := make([]Limit, traces)
	events := make([][]event, traces)
	states := make([]State, traces)
	for i := range limits {
		limits[i] = randomLimit(r)
		events[i] = randomTrace(r, limits[i], epoch+r.Int64N(hour), steps, true)
		if i%8 == 0 {
			// A state from an earlier life of the key, possibly odd.
			states[i] = State{A: epoch + r.Int64N(hour), B: r.Int64N(limits[i].Quota + 5), C: r.Int64N(3)}
		}
	}

	seen := map[string]int{}
	for step := range steps {
		for i, l := range limits {
			e := events[i][step]
			s := states[i]
			conn.send("EVALSHA", sha, "0",
				itoa(s.A), itoa(s.B), itoa(s.C), itoa(e.now),
				itoa(l.Quota), itoa(l.Window), itoa(l.Burst), itoa(l.Delay), itoa(l.MaxWait), itoa(e.cost))
		}
		if err := conn.w.Flush(); err != nil {
			t.Fatal(err)
		}
		for i, l := range limits {
			e := events[i][step]
			reply, err := conn.read()
			if err != nil {
				t.Fatalf("EVALSHA: %v", err)
			}
			got, err := int64s(reply)
			if err != nil {
				t.Fatalf("EVALSHA reply %v: %v", reply, err)
			}
			next, d := Decide(k, states[i], e.now, l, e.cost)
			if want := luaResult(next, d); got != want {
				t.Fatalf("trace %d step %d: limit %+v, state %+v, now %d, cost %d:\nLua %v\nGo  %v",
					i, step, l, states[i], e.now, e.cost, got, want)
			}
			states[i] = next
			seen[d.Reason.String()]++
			if d.Wait > 0 {
				seen["wait"]++
			}
		}
	}
	t.Logf("identical decisions: %v", seen)
	for _, r := range []Reason{ReasonAllowed, ReasonCostTooLarge, ReasonInvalidCost} {
		if seen[r.String()] == 0 {
			t.Errorf("no decision with reason %v: the traces do not cover it", r)
		}
	}
	if seen[ReasonLimited.String()]+seen[ReasonQueueFull.String()] == 0 {
		t.Error("no denied decision: the traces do not cover the limit")
	}
}

func int64s(reply any) ([10]int64, error) {
	var out [10]int64
	items, ok := reply.([]any)
	if !ok || len(items) != len(out) {
		return out, fmt.Errorf("want an array of %d integers", len(out))
	}
	for i, it := range items {
		v, ok := it.(int64)
		if !ok {
			return out, fmt.Errorf("item %d is %T, want an integer", i, it)
		}
		out[i] = v
	}
	return out, nil
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestLuaSourceComposes checks that a source composed of several kinds
// defines the shared helpers once and every function it needs once,
// including calm_gcra for the buckets, each after the helpers it uses.
func TestLuaSourceComposes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		kinds []Kind
		want  []string // functions defined, in order
	}{
		{"gcra", []Kind{GCRA}, []string{"calm_gcra"}},
		{"token bucket", []Kind{TokenBucket}, []string{"calm_gcra", "calm_token_bucket"}},
		{"buckets", []Kind{LeakyBucket, TokenBucket},
			[]string{"calm_gcra", "calm_leaky_bucket", "calm_token_bucket"}},
		{"windows", []Kind{FixedWindow, SlidingWindow},
			[]string{"calm_fixed_window", "calm_sliding_window"}},
		{"same kind twice", []Kind{LeakyQueue, LeakyQueue}, []string{"calm_leaky_queue"}},
		{"every kind", []Kind{SlidingWindow, FixedWindow, TokenBucket, LeakyBucket, LeakyQueue, GCRA},
			[]string{"calm_sliding_window", "calm_fixed_window", "calm_gcra", "calm_token_bucket",
				"calm_leaky_bucket", "calm_leaky_queue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := LuaSource(tt.kinds...)
			for _, helper := range []string{"tdiv", "floor_div", "clamp", "cost_reason"} {
				if n := strings.Count(src, "\nlocal function "+helper+"("); n != 1 {
					t.Errorf("LuaSource(%v) defines %s %d times, want 1", tt.kinds, helper, n)
				}
			}
			arrival := strings.Index(src, "\nlocal function load_arrival(")
			if uses := strings.Contains(src, "load_arrival(a, b, now, q)"); uses && arrival < 0 {
				t.Errorf("LuaSource(%v) calls load_arrival but does not define it", tt.kinds)
			}
			last := strings.Index(src, "\nlocal function clamp(")
			for _, name := range tt.want {
				if n := luaDefinitions(src, name); n != 1 {
					t.Errorf("LuaSource(%v) defines %s %d times, want 1", tt.kinds, name, n)
					continue
				}
				at := max(strings.Index(src, "\nlocal function "+name+"("),
					strings.Index(src, "\nlocal "+name+"\n"))
				if at < last {
					t.Errorf("LuaSource(%v) defines %s before the functions it follows", tt.kinds, name)
				}
				last = at
			}
			if n := luaDefinitions(src, "calm_"); n != len(tt.want) {
				t.Errorf("LuaSource(%v) defines %d calm_ functions, want %d", tt.kinds, n, len(tt.want))
			}
		})
	}
}

// luaDefinitions counts the top-level local definitions in src whose
// name is or starts with name: "local function name(" or, for a function
// with private helpers in a do block, "local name".
func luaDefinitions(src, name string) int {
	return strings.Count(src, "\nlocal function "+name) + strings.Count(src, "\nlocal "+name)
}

func TestLuaSourceUnknownKind(t *testing.T) {
	t.Parallel()
	if got := LuaSource(); got != "" {
		t.Errorf("LuaSource() = %d bytes, want \"\"", len(got))
	}
	if got := LuaSource(GCRA, GCRA+1); got != "" {
		t.Errorf("LuaSource(gcra, %d) = %d bytes, want \"\"", GCRA+1, len(got))
	}
	if got := LuaFunction(GCRA + 1); got != "" {
		t.Errorf("LuaFunction(%d) = %q, want \"\"", GCRA+1, got)
	}
}

// TestBucketLuaCallsGCRA checks that the buckets' Lua twins hold no math of
// their own and call calm_gcra, as decideBucket calls decideGCRA in Go.
func TestBucketLuaCallsGCRA(t *testing.T) {
	t.Parallel()
	const args = "a, b, c, now, quota, window, burst, delay, max_wait, cost"
	for _, tt := range []struct {
		name string
		kind Kind
		file string
	}{
		{"token bucket", TokenBucket, luaTokenBucket},
		{"leaky bucket", LeakyBucket, luaLeakyBucket},
	} {
		start := strings.Index(tt.file, "\nlocal ")
		if start < 0 {
			t.Fatalf("%s.lua declares no local", tt.kind)
		}
		want := fmt.Sprintf("\nlocal function %s(%s)\n  return calm_gcra(%s)\nend\n",
			LuaFunction(tt.kind), args, args)
		if got := tt.file[start:]; got != want {
			t.Errorf("%s.lua code = %q, want %q", tt.kind, got, want)
		}
	}
}
