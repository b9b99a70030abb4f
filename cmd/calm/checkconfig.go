package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/calm-limiter/calm/config"
)

func init() {
	register(command{
		name:    "check-config",
		summary: "validate a config file and print what it would enforce",
		run:     runCheckConfig,
	})
}

func runCheckConfig(ctx context.Context, c *cli) error {
	fs := newFlagSet(c, "check-config", "FILE")
	if err := parseFlags(fs, c); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(c.stderr, "calm check-config: want exactly one FILE")
		fs.Usage()
		return errUsage
	}
	path := fs.Arg(0)
	file, err := config.ReadFile(path)
	if err != nil {
		return err
	}
	_, values, err := config.LoadSettings(config.Sources{Lookup: c.lookupEnv, File: file})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: valid\n\n", path)
	printSettings(c.stdout, values)
	return nil
}

// printSettings writes one line per setting with its value and source.
func printSettings(w io.Writer, values []config.Value) {
	fmt.Fprintln(w, "Settings:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range values {
		fmt.Fprintf(tw, "  %s\t%s\t(%s)\n", v.Var.Env, v.Raw, v.Source)
	}
	tw.Flush()
}
