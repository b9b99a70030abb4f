package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/policy"
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
	settings, values, file, err := loadSettings(c, path, nil, newExtensions())
	if err != nil {
		return err
	}
	pc := file.Policy
	pc.DefaultLimits = ruleStrings(settings.DefaultLimit)
	pc.DefaultAlgorithm = &settings.Algorithm
	if err := pc.Validate(); err != nil {
		return policyError(file, err)
	}
	tiers, err := fileTiers(file)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: valid\n\n", path)
	printSettings(c.stdout, values)
	fmt.Fprintln(c.stdout)
	printPolicy(c.stdout, pc)
	printTiers(c.stdout, tiers)
	return nil
}

// printSettings writes one line per setting with its value and source. An
// empty value prints as "(empty)"; a secret that is set prints as
// "<secret>", never as its value.
func printSettings(w io.Writer, values []config.Value) {
	fmt.Fprintln(w, "Settings (name, source, value):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range values {
		value := v.Raw
		if value == "" {
			value = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Var.Env, v.Source, value)
	}
	tw.Flush()
}

// printPolicy writes the limits a policy enforces, one endpoint per line.
func printPolicy(w io.Writer, pc policy.Config) {
	fmt.Fprintln(w, "Limits per client (the most restrictive rule of a line decides):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  any other request\t%s\tpolicy %s\n", limitsText(pc.DefaultLimits, nil),
		calm.DefaultPolicy)
	for _, g := range pc.Groups {
		// A group without limits of its own uses the default limits, and
		// reports them as the default policy.
		groupPolicy := calm.DefaultPolicy
		if len(g.Limits) > 0 {
			groupPolicy = nameOr(g.Name, g.Prefix)
		}
		fmt.Fprintf(tw, "  %s/*\t%s\tpolicy %s%s\n", strings.TrimSuffix(g.Prefix, "/"),
			limitsText(g.Limits, pc.DefaultLimits), groupPolicy,
			extras(g.Scope, g.Cost, g.Algorithm))
		if len(g.Budget) > 0 {
			fmt.Fprintf(tw, "    budget shared by %s/*\t%s\tpolicy %s-budget\n",
				strings.TrimSuffix(g.Prefix, "/"), limitsText(g.Budget, nil), nameOr(g.Name, g.Prefix))
		}
		for _, r := range g.Routes {
			printRoute(tw, r, "    ", limitsOr(g.Limits, pc.DefaultLimits), groupPolicy)
		}
	}
	for _, r := range pc.Routes {
		printRoute(tw, r, "  ", pc.DefaultLimits, calm.DefaultPolicy)
	}
	tw.Flush()

	exclude := pc.Exclude
	if exclude == nil {
		exclude = policy.DefaultExclude
	}
	fmt.Fprintf(w, "\nNever limited: %s\n", listOrNone(exclude))
	if len(pc.Include) > 0 {
		fmt.Fprintf(w, "Only limited: %s\n", strings.Join(pc.Include, ", "))
	}
}

// printRoute writes one route; inherited and inheritedPolicy are the limits
// and policy name it uses when it has no limits of its own.
func printRoute(w io.Writer, r policy.Route, indent string, inherited []string,
	inheritedPolicy string) {
	name := nameOr(r.Name, r.Pattern)
	if len(r.Limits) == 0 {
		name = inheritedPolicy
	}
	var queue []string
	if r.Burst != 0 {
		queue = append(queue, fmt.Sprintf("burst %d", r.Burst))
	}
	if r.Delay != 0 {
		queue = append(queue, fmt.Sprintf("delay %d", r.Delay))
	}
	if r.MaxWait != "" {
		// Validate accepted the wait, so it parses, and "2" prints as 2s.
		wait, err := policy.ParseMaxWait(r.MaxWait)
		text := config.FormatDuration(wait)
		if err != nil {
			text = r.MaxWait
		}
		queue = append(queue, "max wait "+text)
	}
	fmt.Fprintf(w, "%s%s\t%s\tpolicy %s%s\n", indent, r.Pattern, limitsText(r.Limits, inherited),
		name, extras(r.Scope, r.Cost, r.Algorithm, queue...))
}

// limitsText joins rules, or the inherited ones when there are none.
func limitsText(limits, inherited []string) string {
	return strings.Join(limitsOr(limits, inherited), ", ")
}

func limitsOr(limits, inherited []string) []string {
	if len(limits) == 0 {
		return inherited
	}
	return limits
}

func nameOr(name, fallback string) string {
	if name == "" {
		return fallback
	}
	return name
}

// extras describes the optional scope, cost and algorithm of a route,
// followed by more, such as its burst.
func extras(scope string, cost *int64, alg string, more ...string) string {
	var parts []string
	if scope == string(calm.ScopeEndpoint) {
		parts = append(parts, "shared by all clients")
	}
	if cost != nil && *cost != 1 {
		parts = append(parts, fmt.Sprintf("cost %d", *cost))
	}
	if alg != "" {
		parts = append(parts, alg)
	}
	parts = append(parts, more...)
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "nothing"
	}
	return strings.Join(items, ", ")
}
