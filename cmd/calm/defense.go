package main

import (
	"context"
	"errors"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/defense"
	"github.com/calm-limiter/calm/httplimit"
)

func init() { addExtension(newDefenseExtension) }

// defenseExtension adds the endpoint and global layers and the circuit
// breaker to calm serve. With a Redis store the breaker is shared by every
// server on that Redis.
type defenseExtension struct {
	cfg defense.Config
}

func newDefenseExtension() *extension { return (&defenseExtension{}).extension() }

func (e *defenseExtension) extension() *extension {
	return &extension{
		name:  "defense",
		vars:  e.vars,
		setup: e.setup,
	}
}

// vars binds the defense settings to e.cfg.
func (e *defenseExtension) vars() []config.Var {
	settings := defense.Settings()
	vars := make([]config.Var, len(settings))
	for i, s := range settings {
		vars[i] = config.Var{
			Env:     s.Env,
			Key:     s.Key,
			Default: s.Default,
			Usage:   s.Usage,
			Parse:   func(v string) error { return s.Parse(&e.cfg, v) },
		}
	}
	return vars
}

// setup checks the settings now and starts the breaker once every
// extension has run, when the Redis connection, if any, is known.
func (e *defenseExtension) setup(ctx context.Context, gw *gateway) error {
	if _, err := defense.New(e.cfg); err != nil {
		return err
	}
	if !gw.settings.Enabled {
		return nil
	}
	gw.validate = append(gw.validate, func() error { return e.start(ctx, gw) })
	return nil
}

// start creates the Defense and reads the shared state before serving.
func (e *defenseExtension) start(ctx context.Context, gw *gateway) error {
	cfg := e.cfg
	cfg.KeyStart = keyStart(gw.settings)
	cfg.Logger = gw.logger
	cfg.Dial = gw.redisDial
	d, err := defense.New(cfg)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return errors.Join(err, d.Close())
	}
	gw.closers = append(gw.closers, d.Close)
	gw.configure = append(gw.configure, func(c *httplimit.Config) {
		c.Defense = defense.HTTP{Defense: d}
	})
	gw.startAttrs = append(gw.startAttrs, "defense_mode", d.Mode().String(),
		"circuit_shared", gw.redisDial != nil, "circuit_state", d.State().String())
	return nil
}

// keyStart returns the "environment:prefix:version:" text that starts every
// store key, as calm.Limiter.KeyStart would.
func keyStart(s config.Settings) string {
	or := func(v, fallback string) string {
		if v == "" {
			return fallback
		}
		return v
	}
	return or(s.Environment, "development") + ":" + or(s.KeyPrefix, "ratelimit") + ":" +
		or(s.KeyVersion, "v1") + ":"
}
