package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/defense"
)

func init() {
	register(command{
		name:    "circuit",
		summary: "open, close or show the circuit breaker that servers share through Redis",
		run:     runCircuit,
	})
}

// circuitTimeout bounds the Redis calls of calm circuit.
const circuitTimeout = 5 * time.Second

func runCircuit(ctx context.Context, c *cli) error {
	fs := newFlagSet(c, "circuit", "open|close|status [flags]\n\n"+
		"open forces the circuit open on every server until close; close also clears the\n"+
		"arrival count. Redis, key prefix and environment come from the same settings as\n"+
		"calm serve (RATELIMIT_REDIS_URL, RATELIMIT_ENVIRONMENT, ...).")
	configPath := fs.String("config", "", "YAML config `file` with settings, as for calm serve")
	if len(c.args) == 0 {
		fs.Usage()
		return errUsage
	}
	// The action may come before or after the flags.
	action, rest := c.args[0], 1
	if strings.HasPrefix(action, "-") {
		action, rest = "", 0
	}
	c.args = c.args[rest:]
	if err := parseFlags(fs, c); err != nil {
		return err
	}
	if action == "" && fs.NArg() == 1 {
		action = fs.Arg(0)
	} else if fs.NArg() > 0 {
		action = "" // extra arguments
	}
	if action != "open" && action != "close" && action != "status" {
		fmt.Fprintf(c.stderr, "calm circuit: unknown action %q: use open, close or status\n", action)
		fs.Usage()
		return errUsage
	}

	rx, dx := &redisExtension{}, &defenseExtension{}
	exts := newExtensions()
	for i, e := range exts {
		switch e.name {
		case "redis":
			exts[i] = rx.extension()
		case "defense":
			exts[i] = dx.extension()
		}
	}
	settings, _, _, err := loadSettings(c, *configPath, nil, exts)
	if err != nil {
		return err
	}
	if rx.url == "" {
		return errors.New("RATELIMIT_REDIS_URL is not set: the circuit breaker is shared " +
			"through Redis; set it to the URL the servers use")
	}
	opt, err := rueidis.ParseURL(rx.url)
	if err != nil {
		return fmt.Errorf("RATELIMIT_REDIS_URL: invalid URL: %w", err)
	}
	opt.DisableCache = true
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return fmt.Errorf("connecting to redis: %w", err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(ctx, circuitTimeout)
	defer cancel()
	cfg := dx.cfg
	cfg.KeyStart = keyStart(settings)
	var st defense.Status
	switch action {
	case "status":
		st, err = defense.ReadShared(ctx, client, cfg.KeyStart)
	default:
		st, err = defense.ForceShared(ctx, client, cfg, action == "open")
	}
	if err != nil {
		return err
	}
	printStatus(c.stdout, st)
	return nil
}

// printStatus writes the shared state, one field per line.
func printStatus(w io.Writer, st defense.Status) {
	state := "closed"
	if st.Open {
		state = "open"
	}
	if !st.Exists {
		state = "closed (no server has written the state yet)"
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	fmt.Fprintf(w, "key            %s\n", st.Key)
	fmt.Fprintf(w, "state          %s\n", state)
	fmt.Fprintf(w, "forced         %t\n", st.Forced)
	fmt.Fprintf(w, "trip_time      %s\n", stamp(st.TripTime))
	fmt.Fprintf(w, "last_trip_time %s\n", stamp(st.LastTripTime))
	fmt.Fprintf(w, "failure_count  %d\n", st.FailureCount)
	fmt.Fprintf(w, "trip_count     %d\n", st.TripCount)
	fmt.Fprintf(w, "cause          %s\n", st.Cause)
	fmt.Fprintf(w, "changed_at     %s\n", stamp(st.ChangedAt))
	fmt.Fprintf(w, "epoch          %d\n", st.Epoch)
	fmt.Fprintf(w, "ttl            %s\n", st.TTL.Round(time.Second))
}
