package main

import (
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
	settings config.Settings
	file     *config.File // nil without --config
	logger   *slog.Logger
	upstream *url.URL // nil in demo mode

	store     store.Store
	storeName string
	limiter   *calm.Limiter
	policy    policy.Config
	handler   http.Handler

	// ready is false until the server runs and again once it drains.
	ready     atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// loadSettings reads the config file named by the flags, if any, and loads
// the settings from defaults, environment, file and flags.
func loadSettings(c *cli, flags serveFlags) (config.Settings, *config.File, error) {
	var file *config.File
	if flags.configPath != "" {
		f, err := config.ReadFile(flags.configPath)
		if err != nil {
			return config.Settings{}, nil, err
		}
		file = f
	}
	s, _, err := config.LoadSettings(config.Sources{
		Lookup: c.lookupEnv,
		File:   file,
		Flags:  flags.settings,
	})
	if err != nil {
		return config.Settings{}, nil, err
	}
	return s, file, nil
}

// newGateway builds everything `calm serve` runs, or returns the first
// configuration error.
func newGateway(c *cli, flags serveFlags) (*gateway, error) {
	s, file, err := loadSettings(c, flags)
	if err != nil {
		return nil, err
	}
	gw := &gateway{
		settings: s,
		file:     file,
		logger:   newLogger(c.stderr, s),
		upstream: flags.upstream,
	}
	if err := gw.openStore(); err != nil {
		return nil, err
	}
	lim, err := calm.New(calm.Config{
		Store:       gw.store,
		Algorithm:   s.Algorithm,
		Environment: s.Environment,
		KeyPrefix:   s.KeyPrefix,
		KeyVersion:  s.KeyVersion,
	})
	if err != nil {
		gw.close()
		return nil, fmt.Errorf("creating the limiter: %w", err)
	}
	gw.limiter = lim

	app, mux := gw.application()
	gw.policy = gw.choosePolicy()
	if err := gw.policy.Validate(); err != nil {
		gw.close()
		return nil, policyError(gw.file, err)
	}
	limited := app
	if s.Enabled {
		hl, err := httplimit.New(gw.httplimitConfig(mux))
		if err != nil {
			gw.close()
			return nil, err
		}
		limited = hl.Middleware(app)
	}
	gw.handler = gw.routes(limited)
	gw.ready.Store(true)
	return gw, nil
}

// application returns the handler behind the limiter: the proxy, or the
// demo API with its router.
func (gw *gateway) application() (http.Handler, *http.ServeMux) {
	if gw.upstream != nil {
		return newProxy(gw.upstream, gw.logger), nil
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
	return pc
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
	return httplimit.Config{
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
	}
}

// openStore opens the memory store.
func (gw *gateway) openStore() error {
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

// serveMetrics writes gauges in the Prometheus text format.
func (gw *gateway) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintln(w, "# HELP calm_up Whether the gateway serves requests (1) or is stopping (0).")
	fmt.Fprintln(w, "# TYPE calm_up gauge")
	up := 0
	if gw.ready.Load() {
		up = 1
	}
	fmt.Fprintf(w, "calm_up %d\n", up)
	if m, ok := gw.store.(*memory.Store); ok {
		fmt.Fprintln(w, "# HELP calm_memory_keys Keys held by the memory store.")
		fmt.Fprintln(w, "# TYPE calm_memory_keys gauge")
		fmt.Fprintf(w, "calm_memory_keys %d\n", m.Len())
	}
}

// close closes the store once.
func (gw *gateway) close() error {
	gw.closeOnce.Do(func() {
		if gw.store != nil {
			gw.closeErr = gw.store.Close()
		}
	})
	return gw.closeErr
}

// allVars returns every setting the gateway reads, in documentation order.
func allVars() []config.Var {
	var s config.Settings
	return s.Vars()
}
