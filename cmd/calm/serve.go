package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/policy"
)

func init() {
	register(command{
		name:    "serve",
		summary: "run the gateway: the demo API, or a reverse proxy with --upstream",
		run:     runServe,
	})
}

// serveFlags are the command-line flags of `calm serve`.
type serveFlags struct {
	addr            string
	configPath      string
	upstream        *url.URL
	drainDelay      time.Duration
	shutdownTimeout time.Duration
	// settings maps config.Var keys to the flags that set them.
	settings map[string]config.Flag
	// extensions are this run's extensions, whose flags are parsed.
	extensions []*extension
}

// Server timeouts. Headers must arrive quickly; bodies may stream for as
// long as the client and the upstream keep them moving.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// demoTimeout bounds reading a request and writing a response of the
	// demo API, whose responses are small.
	demoTimeout = 30 * time.Second
	// defaultDrainDelay is the default of --drain-delay: long enough for a
	// load balancer that polls /readyz every few seconds, or for Kubernetes
	// to remove the pod from its endpoints, to stop sending new requests.
	defaultDrainDelay = 5 * time.Second
)

func parseServeFlags(c *cli) (serveFlags, error) {
	fs := newFlagSet(c, "serve", "[flags]")
	addr := fs.String("addr", ":8420", "listen `address` (host:port; port 0 picks a free port)")
	configPath := fs.String("config", "", "YAML config `file` with settings and policies")
	defaultLimit := fs.String("default-limit", "",
		"default `rules`, comma separated, such as 100/minute,1000/hour "+
			"(overrides RATELIMIT_DEFAULT_LIMIT and the config file)")
	upstream := fs.String("upstream", "", "proxy every request to this `URL` instead of "+
		"serving the demo API")
	logFormat := fs.String("log-format", "", "log `format`: text or json "+
		"(overrides RATELIMIT_LOG_FORMAT; default text)")
	drainDelay := fs.Duration("drain-delay", defaultDrainDelay,
		"how long to keep serving after SIGTERM, with /readyz answering 503, before the "+
			"listener closes; SIGINT skips it")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second,
		"how long to let open requests finish after SIGINT or SIGTERM")
	exts := newExtensions()
	for _, e := range exts {
		if e.flags != nil {
			e.flags(fs)
		}
	}
	if err := parseFlags(fs, c); err != nil {
		return serveFlags{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "calm serve: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return serveFlags{}, errUsage
	}

	f := serveFlags{
		addr:            *addr,
		configPath:      *configPath,
		drainDelay:      *drainDelay,
		shutdownTimeout: *shutdown,
		settings:        map[string]config.Flag{},
		extensions:      exts,
	}
	set := flagsSet(fs)
	if set["default-limit"] {
		f.settings["default_limit"] = config.Flag{Name: "--default-limit", Value: *defaultLimit}
	}
	if set["log-format"] {
		f.settings["log_format"] = config.Flag{Name: "--log-format", Value: *logFormat}
	}
	if *upstream != "" {
		u, err := parseUpstream(*upstream)
		if err != nil {
			return serveFlags{}, err
		}
		f.upstream = u
	}
	if f.drainDelay < 0 {
		return serveFlags{}, fmt.Errorf("--drain-delay=%v: invalid: want 0 or a positive duration",
			f.drainDelay)
	}
	if f.shutdownTimeout <= 0 {
		return serveFlags{}, fmt.Errorf("--shutdown-timeout=%v: invalid: want a positive duration",
			f.shutdownTimeout)
	}
	return f, nil
}

func runServe(ctx context.Context, c *cli) error {
	flags, err := parseServeFlags(c)
	if err != nil {
		return err
	}
	gw, err := newGateway(ctx, c, flags)
	if err != nil {
		return err
	}
	defer gw.close()

	ln, err := net.Listen("tcp", flags.addr)
	if err != nil {
		return fmt.Errorf("--addr=%q: listening failed: %w", flags.addr, err)
	}
	if gw.listen != nil {
		ln = gw.listen(ln)
	}
	if gw.tlsConfig != nil {
		ln = tls.NewListener(ln, gw.tlsConfig)
	}
	srv := gw.server()
	gw.logStart(ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	delay := flags.drainDelay
	if interrupted(ctx) {
		delay = 0
	}
	return gw.shutdown(srv, delay, flags.shutdownTimeout)
}

// server returns the HTTP server with the gateway's timeouts.
func (gw *gateway) server() *http.Server {
	srv := &http.Server{
		Handler:           gw.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(gw.logger.Handler(), slog.LevelDebug),
		ConnContext:       gw.connContext,
	}
	if gw.upstream == nil {
		// A request may wait for its turn in a leaky queue before the
		// demo handler reads its body and writes the response.
		srv.ReadTimeout = demoTimeout + gw.longestWait()
		srv.WriteTimeout = demoTimeout + gw.longestWait()
	}
	return srv
}

// longestWait returns the longest time the middleware may hold a request
// in a leaky queue: RATELIMIT_MAX_WAIT or a route's longer max_wait.
func (gw *gateway) longestWait() time.Duration {
	longest := gw.settings.MaxWait
	for _, r := range routesOf(gw.policy) {
		if d, err := policy.ParseMaxWait(r.MaxWait); err == nil {
			longest = max(longest, d)
		}
	}
	return longest
}

// shutdown reports not ready, keeps serving for drainDelay so that load
// balancers see /readyz fail and stop sending requests, then stops
// accepting requests, waits up to timeout for open requests and closes the
// store.
func (gw *gateway) shutdown(srv *http.Server, drainDelay, timeout time.Duration) error {
	gw.ready.Store(false)
	gw.logger.Info("calm stopping", "component", "gateway",
		"drain_delay", drainDelay.String(), "timeout", timeout.String())
	if drainDelay > 0 {
		// A second SIGINT or SIGTERM ends the process during this wait.
		time.Sleep(drainDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if gw.limits != nil {
		// Requests held in a leaky queue whose turn comes before the
		// deadline are served. The rest get a 503 just before it, because
		// Close would drop their connections without a response.
		stop := time.AfterFunc(timeout-stopWaitingMargin(timeout), gw.limits.StopWaiting)
		defer stop.Stop()
	}
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		gw.logger.Warn("open requests did not finish in time; closing them",
			"component", "gateway", "timeout", timeout.String())
		err = srv.Close()
	}
	if cerr := gw.close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	gw.logger.Info("calm stopped", "component", "gateway")
	return nil
}

// stopWaitingMargin returns how long before the shutdown deadline the
// requests still held in a leaky queue get their 503: a tenth of the
// timeout, at most 1s, which leaves time to write the responses.
func stopWaitingMargin(timeout time.Duration) time.Duration {
	return min(timeout/10, time.Second)
}

// logStart writes the one start-up line.
func (gw *gateway) logStart(addr net.Addr) {
	mode, target := "demo", ""
	if gw.upstream != nil {
		mode, target = "proxy", gw.upstream.Redacted()
	}
	rules := make([]string, len(gw.settings.DefaultLimit))
	for i, r := range gw.settings.DefaultLimit {
		rules[i] = r.String()
	}
	attrs := []any{
		"component", "gateway",
		"addr", addr.String(),
		"mode", mode,
		"enabled", gw.settings.Enabled,
		"algorithm", gw.settings.Algorithm.String(),
		"store", gw.storeName,
		"tls", gw.tlsConfig != nil,
		"default_limit", strings.Join(rules, ","),
		"max_wait", gw.settings.MaxWait.String(),
		"routes", routeCount(gw.policy),
		"status_code", gw.settings.StatusCode,
		"header_mode", gw.settings.HeaderMode,
		"environment", gw.settings.Environment,
	}
	if target != "" {
		attrs = append(attrs, "upstream", target)
	}
	attrs = append(attrs, gw.startAttrs...)
	gw.logger.Info("calm started", attrs...)
}

// routeCount returns the number of routes a policy names.
func routeCount(pc policy.Config) int {
	return len(routesOf(pc))
}

// routesOf returns the routes of a policy, those of its groups included.
func routesOf(pc policy.Config) []policy.Route {
	routes := slices.Clone(pc.Routes)
	for _, g := range pc.Groups {
		routes = append(routes, g.Routes...)
	}
	return routes
}
