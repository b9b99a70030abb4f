package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/policy"
	"github.com/calm-limiter/calm/store"
	"github.com/calm-limiter/calm/store/memory"
)

// gateway is a configured `calm serve`: settings, store, limiter and the
// HTTP handler that puts them in front of the demo API or the upstream.
type gateway struct {
	hooks
	settings config.Settings
	file     *config.File // nil without --config
	logger   *slog.Logger
	upstream *url.URL // nil in demo mode

	store   store.Store
	limiter *calm.Limiter
	policy  policy.Config
	handler http.Handler
	// limits is the middleware; nil when rate limiting is disabled.
	limits *httplimit.Limiter
	// responses counts the responses of limited paths for /metrics.
	responses statusCounter

	// ready is false until the server runs and again once it drains.
	ready     atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// loadSettings reads the config file named by path, if any, and loads the
// shared settings and those of exts from defaults, environment, file and
// flags.
func loadSettings(c *cli, path string, flags map[string]config.Flag, exts []*extension) (
	config.Settings, []config.Value, *config.File, error) {
	var file *config.File
	if path != "" {
		f, err := config.ReadFile(path)
		if err != nil {
			return config.Settings{}, nil, nil, err
		}
		file = f
	}
	s, values, err := config.LoadSettings(config.Sources{
		Lookup: c.lookupEnv,
		File:   file,
		Flags:  flags,
	}, extensionVars(exts)...)
	if err != nil {
		return config.Settings{}, nil, nil, err
	}
	return s, values, file, nil
}

// newGateway builds everything `calm serve` runs, or returns the first
// configuration error.
func newGateway(ctx context.Context, c *cli, flags serveFlags) (*gateway, error) {
	s, _, file, err := loadSettings(c, flags.configPath, flags.settings, flags.extensions)
	if err != nil {
		return nil, err
	}
	gw := &gateway{
		settings: s,
		file:     file,
		logger:   newLogger(c.stderr, s),
		upstream: flags.upstream,
	}
	if err := gw.build(ctx, flags.extensions); err != nil {
		gw.close()
		return nil, err
	}
	gw.ready.Store(true)
	return gw, nil
}

// build runs the extensions' setup, opens the store and assembles the
// handler.
func (gw *gateway) build(ctx context.Context, exts []*extension) error {
	for _, e := range exts {
		if e.setup == nil {
			continue
		}
		if err := e.setup(ctx, gw); err != nil {
			return err
		}
	}
	if gw.store == nil {
		if err := gw.openMemoryStore(); err != nil {
			return err
		}
	}
	for _, validate := range gw.validate {
		if err := validate(); err != nil {
			return err
		}
	}
	lim, err := calm.New(calm.Config{
		Store:       gw.store,
		Algorithm:   gw.settings.Algorithm,
		Environment: gw.settings.Environment,
		KeyPrefix:   gw.settings.KeyPrefix,
		KeyVersion:  gw.settings.KeyVersion,
	})
	if err != nil {
		return fmt.Errorf("creating the limiter: %w", err)
	}
	gw.limiter = lim

	app, mux := gw.application()
	gw.policy = gw.choosePolicy()
	if err := gw.policy.Validate(); err != nil {
		return firstPolicyError(gw.file, err)
	}
	limited := app
	if gw.settings.Enabled {
		hl, err := httplimit.New(gw.httplimitConfig(mux))
		if err != nil {
			return err
		}
		gw.limits = hl
		limited = hl.Middleware(app)
	}
	for i := len(gw.middleware) - 1; i >= 0; i-- {
		limited = gw.middleware[i](limited)
	}
	gw.handler = gw.routes(gw.responses.wrap(limited))
	return nil
}

// application returns the handler behind the limiter: the proxy, or the
// demo API with its router.
func (gw *gateway) application() (http.Handler, *http.ServeMux) {
	if gw.upstream != nil {
		return newProxy(gw.upstream, gw.logger, gw.trustForwarded), nil
	}
	mux := newDemoMux()
	return mux, mux
}

// choosePolicy returns the config file's policy, or else the demo API's in
// demo mode and the default limits alone in proxy mode. The default limits
// always come from the settings, where flags, file and environment meet.
func (gw *gateway) choosePolicy() policy.Config {
	var pc policy.Config
	switch {
	case gw.file != nil && gw.file.HasPolicy:
		pc = gw.file.Policy
	case gw.upstream == nil:
		pc = demoPolicy()
	}
	pc.DefaultLimits = ruleStrings(gw.settings.DefaultLimit)
	pc.DefaultAlgorithm = &gw.settings.Algorithm
	return pc
}

// firstPolicyError is policyError cut to its first line, so that start-up
// fails with one message; it points to check-config for the others.
func firstPolicyError(file *config.File, err error) error {
	lines := strings.Split(policyError(file, err).Error(), "\n")
	if len(lines) == 1 {
		return errors.New(lines[0])
	}
	hint := "run calm check-config on the file to list them"
	if file == nil || !file.HasPolicy {
		hint = "the built-in policy is invalid"
	}
	more := fmt.Sprintf("%d more errors", len(lines)-1)
	if len(lines) == 2 {
		more = "1 more error"
	}
	return fmt.Errorf("%s (and %s: %s)", lines[0], more, hint)
}

// policyError prefixes every line of a policy's validation error with the
// config file's path, so each line names where to fix it.
func policyError(file *config.File, err error) error {
	source := "built-in demo policy"
	if file != nil && file.HasPolicy {
		source = file.Path
	}
	lines := strings.Split(err.Error(), "\n")
	for i, line := range lines {
		lines[i] = source + ": " + line
	}
	return errors.New(strings.Join(lines, "\n"))
}

// ruleStrings formats rules as a policy's limits.
func ruleStrings(rules []calm.Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

// httplimitConfig maps the settings onto the middleware's configuration.
func (gw *gateway) httplimitConfig(mux *http.ServeMux) httplimit.Config {
	s := gw.settings
	headers, err := httplimit.ParseHeaderMode(s.HeaderMode)
	if err != nil || !s.IncludeHeaders {
		headers = httplimit.HeadersNone
	}
	cfg := httplimit.Config{
		Limiter:         gw.limiter,
		Policy:          gw.policy,
		Mux:             mux,
		StatusCode:      s.StatusCode,
		Message:         s.Message,
		Detail:          s.Detail,
		Headers:         headers,
		FailClosed:      !s.FailOpen,
		Logger:          gw.logger,
		QuietViolations: !s.LogViolations,
		KeyFunc:         gw.keyFunc,
		MaxWait:         s.MaxWait,
	}
	for _, configure := range gw.configure {
		configure(&cfg)
	}
	return cfg
}

// openMemoryStore opens the memory store, used when no extension opened
// another.
func (gw *gateway) openMemoryStore() error {
	cfg := memory.Config{
		MaxKeys:         gw.settings.MemoryMaxKeys,
		CleanupInterval: gw.settings.MemoryCleanupInterval,
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	gw.store, gw.storeName = memory.New(cfg), "memory"
	return nil
}

// routes puts the health and metrics endpoints, which are never limited, in
// front of the limited application.
func (gw *gateway) routes(app http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !gw.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stopping"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /metrics", gw.serveMetrics)
	mux.Handle("/", app)
	return mux
}

// close runs the extensions' closers, last added first, and then closes
// the store, once. It returns the first error.
func (gw *gateway) close() error {
	gw.closeOnce.Do(func() {
		var errs []error
		for i := len(gw.closers) - 1; i >= 0; i-- {
			errs = append(errs, gw.closers[i]())
		}
		if gw.store != nil {
			errs = append(errs, gw.store.Close())
		}
		gw.closeErr = errors.Join(errs...)
	})
	return gw.closeErr
}
