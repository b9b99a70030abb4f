package main

import (
	"io"
	"log/slog"

	"github.com/calm-limiter/calm/config"
)

// newLogger returns the gateway's logger: text or JSON lines on w at the
// configured level.
func newLogger(w io.Writer, s config.Settings) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevel(s.LogLevel)}
	if s.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func logLevel(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
