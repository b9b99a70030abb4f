package policy

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// CatchAllEndpoint is the endpoint of requests that match no route, no
// group and no application pattern.
const CatchAllEndpoint = "*"

// Policy is a compiled Config. It is immutable and safe for concurrent use.
type Policy struct {
	defaults *ruleSet
	exclude  *patternSet
	include  *patternSet
	routes   *patternSet
	byRoute  map[string]*route
	groups   []*group // longest prefix first
	// foldCase is Config.FoldCase; foldedPatterns is true when a pattern
	// has an upper-case letter in its path, so the folded sets differ.
	foldCase       bool
	foldedPatterns bool
}

// ruleSet is a compiled set of stacked rules.
type ruleSet struct {
	// setting names where the rules are written, such as "routes[0].limits",
	// for errors about them.
	setting   string
	policy    string
	scope     calm.Scope
	rules     []calm.Rule
	algorithm *algorithm.Kind
	// algorithmSetting names where algorithm was chosen, such as
	// "groups[0].algorithm"; empty when algorithm is nil.
	algorithmSetting string
	burst            int64
	// delay and maxWait are the leaky queue's Route.Delay and
	// Route.MaxWait; zero when not set.
	delay   int64
	maxWait time.Duration
	// endpoint, when set, replaces the match's endpoint in keys; a group
	// budget uses it so that every endpoint of the group shares one key.
	endpoint string
	// keyPrefix starts the endpoint in keys, so that declared routes never
	// share state with the policy's rules for the same pattern.
	keyPrefix string
}

type route struct {
	pattern  string
	limits   *ruleSet
	group    *group // nil outside groups
	cost     int64
	costFunc func(*http.Request) (int64, error)
}

type group struct {
	prefix string
	// foldedPrefix is prefix in lower case, for Config.FoldCase.
	foldedPrefix string
	limits       *ruleSet
	budget       *ruleSet // nil without a budget
	cost         int64
}

// patternSet matches requests against ServeMux patterns.
type patternSet struct {
	mux      *http.ServeMux
	patterns map[string]bool
	// folded holds the patterns with their paths in lower case, and
	// original maps each back; nil unless Config.FoldCase is set and a
	// pattern has an upper-case letter.
	folded   *patternSet
	original map[string]string
}

// New validates c and compiles it. The error lists every invalid setting,
// one per line, each naming the setting, the value and the fix.
func New(c Config) (*Policy, error) {
	b := builder{p: &Policy{byRoute: make(map[string]*route)}, seen: make(map[string]string),
		defaultKind: c.DefaultAlgorithm}
	b.p.defaults = b.ruleSet("default_limits", c.DefaultLimits, DefaultLimits, calm.DefaultPolicy,
		"", "")

	exclude := c.Exclude
	if exclude == nil {
		exclude = DefaultExclude
	}
	b.p.exclude = b.patterns("exclude", exclude)
	b.p.include = b.patterns("include", c.Include)
	b.p.routes = &patternSet{mux: http.NewServeMux(), patterns: make(map[string]bool)}

	for i, g := range c.Groups {
		b.group(fmt.Sprintf("groups[%d]", i), g)
	}
	for i, r := range c.Routes {
		b.route(fmt.Sprintf("routes[%d]", i), r, nil)
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	if c.FoldCase {
		b.p.foldCase = true
		for _, set := range []*patternSet{b.p.include, b.p.routes} {
			if set.buildFolded() {
				b.p.foldedPatterns = true
			}
		}
	}
	for _, set := range []*patternSet{b.p.exclude, b.p.include, b.p.routes} {
		set.addCatchAll()
	}
	slices.SortStableFunc(b.p.groups, func(x, y *group) int { return len(y.prefix) - len(x.prefix) })
	return b.p, nil
}

// builder collects the compiled parts and every error of a Config.
type builder struct {
	p    *Policy
	errs []error
	seen map[string]string // route pattern or group prefix → setting that declared it
	// defaultKind is Config.DefaultAlgorithm.
	defaultKind *algorithm.Kind
}

// fail records an error of setting. An error already recorded, such as a
// group's algorithm that both its limits and its budget use, is kept once.
func (b *builder) fail(setting string, err error) {
	err = fmt.Errorf("%s: %w", setting, err)
	for _, have := range b.errs {
		if have.Error() == err.Error() {
			return
		}
	}
	b.errs = append(b.errs, err)
}

// ruleSet compiles limits; fallback is used when entries is empty and may be
// "" to mean "no limits" (nil result).
func (b *builder) ruleSet(setting string, entries []string, fallback, name, scope, alg string) *ruleSet {
	if len(entries) == 0 && fallback != "" {
		entries = []string{fallback}
	}
	if len(entries) == 0 {
		return nil
	}
	rules, err := ParseLimits(entries)
	if err != nil {
		b.fail(setting, err)
	}
	// The scope and algorithm belong to the owner of the rules: "limits"
	// and "budget" of "groups[0]" share "groups[0].algorithm".
	owner := setting[:strings.LastIndexByte(setting, '.')+1]
	s := &ruleSet{setting: setting, policy: name, rules: rules}
	if s.scope, err = ParseScope(scope); err != nil {
		b.fail(owner+"scope", err)
	}
	if s.algorithm, err = parseAlgorithm(alg); err != nil {
		b.fail(owner+"algorithm", err)
	}
	if s.algorithm != nil {
		s.algorithmSetting = owner + "algorithm"
	}
	return s
}

func (b *builder) patterns(setting string, patterns []string) *patternSet {
	if len(patterns) == 0 {
		return nil
	}
	set := &patternSet{mux: http.NewServeMux(), patterns: make(map[string]bool)}
	for i, p := range patterns {
		if set.patterns[p] {
			continue
		}
		if err := register(set.mux, p); err != nil {
			b.fail(fmt.Sprintf("%s[%d]", setting, i), err)
			continue
		}
		set.patterns[p] = true
	}
	return set
}

func (b *builder) group(setting string, g Group) {
	prefix, err := normalizePrefix(g.Prefix)
	if err != nil {
		b.fail(setting+".prefix", err)
		return
	}
	if other, dup := b.seen["group "+prefix]; dup {
		b.fail(setting+".prefix", fmt.Errorf("prefix %q is also used by %s: merge the groups", prefix, other))
		return
	}
	b.seen["group "+prefix] = setting

	name := b.name(setting+".name", g.Name, prefix)
	gr := &group{prefix: prefix, foldedPrefix: strings.ToLower(prefix),
		cost: b.cost(setting+".cost", g.Cost, 1)}
	if len(g.Limits) > 0 {
		gr.limits = b.ruleSet(setting+".limits", g.Limits, "", name, g.Scope, g.Algorithm)
	} else {
		gr.limits = b.inherit(setting, b.p.defaults, "", g.Scope, g.Algorithm)
	}
	gr.budget = b.ruleSet(setting+".budget", g.Budget, "", name+"-budget", g.Scope, g.Algorithm)
	if gr.budget != nil {
		gr.budget.endpoint = "budget " + prefix
	}
	if g.Cost != nil {
		b.checkCapacity(setting+".cost", gr.cost, gr.limits, gr.budget)
	}
	b.p.groups = append(b.p.groups, gr)

	for i, r := range g.Routes {
		b.route(fmt.Sprintf("%s.routes[%d]", setting, i), r, gr)
	}
}

func (b *builder) route(setting string, r Route, g *group) {
	if r.Pattern == "" {
		b.fail(setting+".pattern", errors.New(`pattern is missing: set a ServeMux pattern such as "POST /auth/login"`))
		return
	}
	if other, dup := b.seen[r.Pattern]; dup {
		b.fail(setting+".pattern", fmt.Errorf("pattern %q is also used by %s: keep one of them", r.Pattern, other))
		return
	}
	b.seen[r.Pattern] = setting
	if g != nil && !underPrefix(patternPath(r.Pattern), g.prefix) {
		b.fail(setting+".pattern", fmt.Errorf("pattern %q lies outside the group prefix %q: move it to routes or to its own group",
			r.Pattern, g.prefix))
		return
	}
	if err := register(b.p.routes.mux, r.Pattern); err != nil {
		b.fail(setting+".pattern", err)
		return
	}
	b.p.routes.patterns[r.Pattern] = true

	rt := &route{pattern: r.Pattern, group: g, costFunc: r.CostFunc}
	groupCost := int64(1)
	inherited := b.p.defaults
	if g != nil {
		groupCost, inherited = g.cost, g.limits
	}
	rt.cost = b.cost(setting+".cost", r.Cost, groupCost)
	errsBefore := len(b.errs)
	if len(r.Limits) > 0 {
		name := b.name(setting+".name", r.Name, r.Pattern)
		rt.limits = b.ruleSet(setting+".limits", r.Limits, "", name, r.Scope, r.Algorithm)
		if r.Algorithm == "" && g != nil {
			// The route's own rules still run under the group's algorithm.
			rt.limits.algorithm = g.limits.algorithm
			rt.limits.algorithmSetting = g.limits.algorithmSetting
		}
	} else {
		rt.limits = b.inherit(setting, inherited, r.Scope, "", r.Algorithm)
		if r.Name != "" {
			renamed := *rt.limits
			renamed.policy = b.name(setting+".name", r.Name, "")
			rt.limits = &renamed
		}
	}
	rt.limits = b.withBurst(setting+".burst", r.Burst, rt.limits)
	b.p.byRoute[r.Pattern] = rt
	rulesValid := len(b.errs) == errsBefore
	rt.limits = b.withQueue(setting+".", r.Delay, r.MaxWait, rt.limits)
	if rulesValid && r.CostFunc == nil &&
		(r.Cost != nil || len(r.Limits) > 0 || r.Burst != 0 || r.Algorithm != "") {
		// A group's cost on the group's own rules was checked with the
		// group; a route that changes the cost or the rules is checked here.
		// A route whose rules, algorithm or burst are invalid already has
		// its error, and a capacity computed from them would be wrong.
		var budget *ruleSet
		if g != nil {
			budget = g.budget
		}
		b.checkCapacity(setting+".cost", rt.cost, rt.limits, budget)
	}
}

// checkCapacity reports a static cost that exceeds the capacity of a rule
// in sets, because such requests could never pass. Nil sets are skipped.
//
// NOTE: the check cannot see tiers of package identity, which may replace
// the rules of an endpoint for verified clients with larger ones.
func (b *builder) checkCapacity(setting string, cost int64, sets ...*ruleSet) {
	for _, s := range sets {
		if s == nil {
			continue
		}
		kind, _ := b.algorithmOf(s)
		for _, r := range s.rules {
			capacity := s.capacity(r, kind)
			if cost <= capacity {
				continue
			}
			fix := "raise the rule's request count"
			if kind == nil || !isWindowKind(*kind) {
				fix += " or burst"
			}
			b.fail(setting, fmt.Errorf("cost %d exceeds the capacity %d of rule %s in %s, "+
				"so these requests can never pass: lower the cost to at most %d or %s",
				cost, capacity, r, s.setting, capacity, fix))
			return
		}
	}
}

// capacity returns the largest cost that can pass rule r of s under the
// algorithm kind. When kind is nil (unknown), s may run under a window
// algorithm, which ignores the burst, or a bucket one, which uses it, so
// the larger bound counts.
func (s *ruleSet) capacity(r calm.Rule, kind *algorithm.Kind) int64 {
	switch {
	case s.burst == 0:
		return r.Requests
	case kind == nil:
		return max(r.Requests, s.burst)
	case isWindowKind(*kind):
		return r.Requests
	}
	return s.burst
}

// algorithmOf returns the algorithm that decides the rules of s and a
// description of where it was chosen for messages, such as
// "groups[0].algorithm fixed_window". The algorithm is nil when neither s
// nor Config.DefaultAlgorithm names one.
func (b *builder) algorithmOf(s *ruleSet) (*algorithm.Kind, string) {
	switch {
	case s.algorithm != nil:
		return s.algorithm, s.algorithmSetting + " " + s.algorithm.String()
	case b.defaultKind != nil:
		return b.defaultKind, "the default algorithm " + b.defaultKind.String() +
			" (RATELIMIT_ALGORITHM)"
	}
	return nil, ""
}

// withBurst returns s with a route's burst as its capacity. A negative
// burst, or one that the algorithm of s ignores, is reported and leaves s
// unchanged.
func (b *builder) withBurst(setting string, burst int64, s *ruleSet) *ruleSet {
	if burst == 0 || s == nil {
		return s
	}
	if burst < 0 {
		b.fail(setting, fmt.Errorf("burst %d is negative: set a positive capacity, "+
			"or remove burst to use the rule's request count", burst))
		return s
	}
	kind, chosenBy := b.algorithmOf(s)
	if kind != nil && isWindowKind(*kind) {
		// The route's own algorithm reads better without its setting name,
		// which the message starts with already.
		chosenBy = strings.TrimPrefix(chosenBy, strings.TrimSuffix(setting, "burst"))
		b.fail(setting, fmt.Errorf("burst %d has no effect with %s, which ignores a burst: "+
			"remove burst, or set the route's algorithm to %s, which use it",
			burst, chosenBy, burstKinds))
		return s
	}
	withBurst := *s
	withBurst.burst = burst
	return &withBurst
}

// burstKinds lists the algorithms that use a burst, for messages.
const burstKinds = "token_bucket, leaky_bucket, leaky_queue or gcra"

// isWindowKind reports whether k ignores a burst and lets at most the
// rule's request count pass at once.
func isWindowKind(k algorithm.Kind) bool {
	return k == algorithm.SlidingWindow || k == algorithm.FixedWindow
}

// inherit returns parent, or a copy of it with the given overrides. Empty
// strings mean "keep the parent's".
func (b *builder) inherit(setting string, parent *ruleSet, scope, groupScope, alg string) *ruleSet {
	if parent == nil {
		return nil
	}
	if scope == "" {
		scope = groupScope
	}
	if scope == "" && alg == "" {
		return parent
	}
	s := *parent
	var err error
	if scope != "" {
		if s.scope, err = ParseScope(scope); err != nil {
			b.fail(setting+".scope", err)
		}
	}
	if alg != "" {
		if s.algorithm, err = parseAlgorithm(alg); err != nil {
			b.fail(setting+".algorithm", err)
		}
		s.algorithmSetting = setting + ".algorithm"
	}
	return &s
}

func (b *builder) name(setting, name, fallback string) string {
	if name == "" {
		name = fallback
	}
	if err := ValidateName(name); err != nil {
		b.fail(setting, err)
	}
	return name
}

func (b *builder) cost(setting string, cost *int64, fallback int64) int64 {
	if cost == nil {
		return fallback
	}
	if err := ValidateCost(*cost); err != nil {
		b.fail(setting, err)
	}
	return *cost
}

// registrationSite matches the "(registered at file:line)" notes in
// ServeMux's conflict messages, which point into this package.
var registrationSite = regexp.MustCompile(` \(registered at [^)]*\)`)

// register adds pattern to mux and turns ServeMux's panic on an invalid or
// conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			msg := registrationSite.ReplaceAllString(fmt.Sprint(v), "")
			msg = strings.ReplaceAll(strings.TrimPrefix(msg, "http: "), "\n", " ")
			err = fmt.Errorf("pattern %q is not usable: %s", pattern, msg)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// addCatchAll registers "/" as a pattern that counts as no match, unless
// a configured pattern already covers every path. ServeMux then never
// searches for the methods of a "405 Method Not Allowed", which allocates.
func (s *patternSet) addCatchAll() {
	if s == nil || s.patterns["/"] {
		return
	}
	// A configured pattern such as "/{path...}" conflicts with "/"; the set
	// then works without the shortcut.
	_ = register(s.mux, "/")
}

// match returns the registered pattern that r matches, or "".
func (s *patternSet) match(r *http.Request) string {
	if s == nil {
		return ""
	}
	_, pattern := s.mux.Handler(r)
	// ServeMux can return a redirect target for CONNECT requests, and "/"
	// may be the catch-all; only a configured pattern counts as a match.
	if !s.patterns[pattern] {
		return ""
	}
	return pattern
}

// patternPath returns the path part of a ServeMux pattern
// "[METHOD ][HOST]/PATH".
func patternPath(pattern string) string {
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(rest, " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return pattern
}

// underPrefix reports whether the path p equals prefix or lies below it.
func underPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// cleanPath returns the canonical form of p that ServeMux matches: rooted,
// without "." and ".." elements or repeated slashes, and with a trailing
// slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned
}
