// Command calm is the calm rate-limiting gateway.
//
//	calm serve [flags]          run the gateway (demo API or reverse proxy)
//	calm check-config FILE      validate a config file and print its limits
//	calm token [flags]          mint a signed test token for tiered limits
//	calm circuit open|close|status
//	                            force or read the shared circuit breaker
//	calm help [COMMAND]         show help
//
// Each subcommand lives in its own file and registers itself in commands
// from an init function, so adding a subcommand means adding one file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// command is one subcommand of calm.
type command struct {
	name    string
	summary string // one line for `calm help`
	// run executes the subcommand. An error is printed on stderr as one
	// line and makes calm exit with status 1; errUsage makes it exit with 2.
	run func(ctx context.Context, cli *cli) error
}

// commands holds every subcommand by name. Files register theirs in init.
var commands = map[string]command{}

// register adds c to commands. It panics on a duplicate name, which is a
// programming error caught by any test run.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("calm: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

// cli is the part of the process a subcommand uses: arguments, output
// streams and environment.
type cli struct {
	args   []string // arguments after the subcommand name
	stdout io.Writer
	stderr io.Writer
	// lookupEnv reads the environment; tests replace it.
	lookupEnv func(string) (string, bool)
}

// errUsage reports a command line that could not be parsed; the flag
// package has already printed why.
var errUsage = errors.New("usage error")

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		// The first signal starts a graceful shutdown. The default handling
		// comes back first, so a second SIGINT or SIGTERM ends calm at once.
		signal.Stop(signals)
		cancel(stopSignal{sig})
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	signal.Stop(signals)
	os.Exit(code)
}

// stopSignal is the cause of the context cancellation that a signal
// starts, so that a subcommand can tell SIGINT from SIGTERM.
type stopSignal struct{ os.Signal }

func (s stopSignal) Error() string { return "received " + s.Signal.String() }

// interrupted reports whether ctx was canceled by SIGINT, as Ctrl-C at a
// terminal sends.
func interrupted(ctx context.Context) bool {
	var sig stopSignal
	return errors.As(context.Cause(ctx), &sig) && sig.Signal == os.Interrupt
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer,
	lookupEnv func(string) (string, bool)) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				// Help that was asked for goes to stdout, so it can be paged.
				return runCommand(ctx, c, []string{"-h"}, stdout, stdout, lookupEnv)
			}
		}
		printUsage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "calm: unknown command %q\n", name)
		printUsage(stderr)
		return 2
	}
	return runCommand(ctx, c, args[1:], stdout, stderr, lookupEnv)
}

func runCommand(ctx context.Context, c command, args []string, stdout, stderr io.Writer,
	lookupEnv func(string) (string, bool)) int {
	err := c.run(ctx, &cli{args: args, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv})
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "calm %s: %v\n", c.name, err)
	return 1
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "calm is a rate-limiting gateway.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\tcalm COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "\t%-14s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "calm help COMMAND" for the flags of a command.`)
	fmt.Fprintln(w, "Settings come from RATELIMIT_* environment variables; see docs/CONFIG.md.")
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its help on the cli's stderr.
func newFlagSet(c *cli, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("calm "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: calm %s %s\n\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses c.args with fs and maps a parse failure to errUsage.
func parseFlags(fs *flag.FlagSet, c *cli) error {
	if err := fs.Parse(c.args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
