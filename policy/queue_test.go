package policy

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/calm-limiter/calm/algorithm"
)

func TestParseMaxWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want time.Duration
		err  string
	}{
		{"duration", "1500ms", 1500 * time.Millisecond, ""},
		{"seconds", "2", 2 * time.Second, ""},
		{"spaces", " 3s ", 3 * time.Second, ""},
		{"limit", "1h", time.Hour, ""},
		{"smallest", "1ms", time.Millisecond, ""},
		{"zero", "0", 0, `max wait "0" is outside 1ms to 1h`},
		{"negative", "-2s", 0, `max wait "-2s" is outside 1ms to 1h`},
		{"negative seconds", "-2", 0, `max wait "-2" is outside`},
		{"too long", "2h", 0, `max wait "2h" is outside`},
		{"huge seconds", "99999999999999999", 0, "is outside"},
		{"below 1ms", "10us", 0, "is outside"},
		{"word", "soon", 0, `max wait "soon" is not a duration: write one such as 2s or 500ms`},
		{"fraction of seconds", "1.5", 0, "is not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMaxWait(tt.in)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Errorf("ParseMaxWait(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMaxWait(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
		})
	}
}

// queueRoute is a leaky-queue route on /q.
func queueRoute(delay int64, maxWait string) Route {
	return Route{Pattern: "/q", Limits: []string{"5/second"}, Algorithm: "leaky_queue",
		Delay: delay, MaxWait: maxWait}
}

func TestQueueSettingsReachChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		delay   int64
		maxWait time.Duration
	}{
		{"route", Config{Routes: []Route{queueRoute(2, "1500ms")}}, 2, 1500 * time.Millisecond},
		{"nodelay", Config{Routes: []Route{queueRoute(5, "")}}, 5, 0},
		{"burst raises the capacity", Config{Routes: []Route{{Pattern: "/q", Limits: []string{"5/second"},
			Algorithm: "leaky_queue", Burst: 12, Delay: 8}}}, 8, 0},
		{"default queue algorithm", Config{DefaultAlgorithm: kindp(algorithm.LeakyQueue),
			Routes: []Route{{Pattern: "/q", Delay: 3, MaxWait: "2"}}}, 3, 2 * time.Second},
		{"unknown default algorithm", Config{Routes: []Route{{Pattern: "/q", MaxWait: "1s"}}},
			0, time.Second},
		{"group algorithm", Config{Groups: []Group{{Prefix: "/q", Algorithm: "leaky_queue",
			Routes: []Route{{Pattern: "/q", Delay: 1}}}}}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(tt.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			checks := p.Match(httptest.NewRequest("GET", "/q", nil), "").AppendChecks(nil, "c")
			if len(checks) == 0 {
				t.Fatalf("no checks for /q")
			}
			if checks[0].Delay != tt.delay || checks[0].MaxWait != tt.maxWait {
				t.Errorf("check Delay, MaxWait = %d, %v; want %d, %v",
					checks[0].Delay, checks[0].MaxWait, tt.delay, tt.maxWait)
			}
		})
	}
}

// TestQueueSettingsKeepOthers checks that a route's queue settings do not
// leak into the limits it inherits from.
func TestQueueSettingsKeepOthers(t *testing.T) {
	t.Parallel()
	p, err := New(Config{DefaultAlgorithm: kindp(algorithm.LeakyQueue),
		Routes: []Route{{Pattern: "/q", Delay: 3, MaxWait: "2s"}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	checks := p.Match(httptest.NewRequest("GET", "/other", nil), "").AppendChecks(nil, "c")
	if checks[0].Delay != 0 || checks[0].MaxWait != 0 {
		t.Errorf("default limits: Delay, MaxWait = %d, %v; want 0, 0",
			checks[0].Delay, checks[0].MaxWait)
	}
}

func TestQueueSettingsInvalid(t *testing.T) {
	t.Parallel()
	const fixQueue = "set the route's algorithm to leaky_queue"
	tests := []struct {
		name string
		cfg  Config
		want []string // every fragment must appear in the one error line
	}{
		{"negative delay", Config{Routes: []Route{queueRoute(-1, "")}},
			[]string{"routes[0].delay: ", "delay -1 is negative", "remove delay"}},
		{"delay above capacity", Config{Routes: []Route{queueRoute(6, "")}},
			[]string{"routes[0].delay: ", "delay 6 exceeds the capacity 5 of rule 5/second",
				"routes[0].limits", "at most 5", "nodelay", "raise burst"}},
		{"delay above burst", Config{Routes: []Route{{Pattern: "/q", Limits: []string{"5/second"},
			Algorithm: "leaky_queue", Burst: 8, Delay: 9}}},
			[]string{"routes[0].delay: ", "capacity 8", "at most 8"}},
		{"delay above second rule", Config{Routes: []Route{{Pattern: "/q",
			Limits: []string{"10/second", "3/minute"}, Algorithm: "leaky_queue", Delay: 5}}},
			[]string{"routes[0].delay: ", "capacity 3 of rule 3/minute"}},
		{"bad max wait", Config{Routes: []Route{queueRoute(0, "soon")}},
			[]string{"routes[0].max_wait: ", `"soon"`, "such as 2s"}},
		{"zero max wait", Config{Routes: []Route{queueRoute(0, "0s")}},
			[]string{"routes[0].max_wait: ", `"0s"`, "outside 1ms to 1h", "remove it"}},
		{"delay on gcra", Config{Routes: []Route{{Pattern: "/q", Limits: []string{"5/second"},
			Algorithm: "gcra", Delay: 2}}},
			[]string{"routes[0].delay: ", "delay 2 has no effect with algorithm gcra", fixQueue}},
		{"max wait on default window", Config{DefaultAlgorithm: kindp(algorithm.SlidingWindow),
			Routes: []Route{{Pattern: "/q", MaxWait: "2s"}}},
			[]string{"routes[0].max_wait: ", `max_wait "2s" has no effect with the default algorithm ` +
				"sliding_window (RATELIMIT_ALGORITHM)", fixQueue}},
		{"delay on group bucket", Config{Groups: []Group{{Prefix: "/g", Algorithm: "token_bucket",
			Routes: []Route{{Pattern: "/g/q", Delay: 1}}}}},
			[]string{"groups[0].routes[0].delay: ", "groups[0].algorithm token_bucket", fixQueue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("Validate() = %q, want one line", msg)
			}
			for _, frag := range tt.want {
				if !strings.Contains(msg, frag) {
					t.Errorf("Validate() = %q, want it to contain %q", msg, frag)
				}
			}
		})
	}
}

func TestQueueSettingsFromYAML(t *testing.T) {
	t.Parallel()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(`
routes:
  - pattern: GET /q
    limits: [5/second]
    algorithm: leaky_queue
    burst: 13
    delay: 8
    max_wait: 2
`))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	p, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	checks := p.Match(httptest.NewRequest("GET", "/q", nil), "").AppendChecks(nil, "c")
	if c := checks[0]; c.Burst != 13 || c.Delay != 8 || c.MaxWait != 2*time.Second {
		t.Errorf("check Burst, Delay, MaxWait = %d, %d, %v; want 13, 8, 2s", c.Burst, c.Delay, c.MaxWait)
	}
}

func TestDeclareQueueSettings(t *testing.T) {
	t.Parallel()
	d, err := Declare(Route{Limits: []string{"5/second"}, Algorithm: "leaky_queue",
		Delay: 2, MaxWait: "300ms"})
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	checks := d.Match("GET /x").AppendChecks(nil, "c")
	if checks[0].Delay != 2 || checks[0].MaxWait != 300*time.Millisecond {
		t.Errorf("check Delay, MaxWait = %d, %v; want 2, 300ms", checks[0].Delay, checks[0].MaxWait)
	}
	_, err = Declare(Route{Limits: []string{"5/second"}, Algorithm: "gcra", Delay: 2})
	if err == nil || !strings.Contains(err.Error(), "delay: delay 2 has no effect with algorithm gcra") {
		t.Errorf("Declare(delay on gcra) = %v, want an error about the delay", err)
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 2 * time.Minute: "2m",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
