package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm/algorithm"
)

// MaxWaitLimit is the largest maximum wait that Route.MaxWait (and
// RATELIMIT_MAX_WAIT in the gateway) may set: 1h.
const MaxWaitLimit = time.Hour

// minMaxWait is the smallest maximum wait that Route.MaxWait may set.
const minMaxWait = time.Millisecond

// ParseMaxWait parses a maximum wait written as a Go duration ("2s",
// "500ms") or as a whole number of seconds ("2"), from 1ms to
// MaxWaitLimit.
func ParseMaxWait(s string) (time.Duration, error) {
	text := strings.TrimSpace(s)
	d, err := time.ParseDuration(text)
	if err != nil {
		secs, serr := strconv.ParseInt(text, 10, 64)
		if serr != nil {
			return 0, fmt.Errorf("max wait %q is not a duration: write one such as 2s or 500ms, "+
				"or a whole number of seconds", s)
		}
		d = time.Duration(min(max(secs, -1), int64(MaxWaitLimit/time.Second)+1)) * time.Second
	}
	if d < minMaxWait || d > MaxWaitLimit {
		return 0, fmt.Errorf("max wait %q is outside 1ms to %s: set a wait in that range, "+
			"or remove it to use the default maximum wait", s, shortDuration(MaxWaitLimit))
	}
	return d, nil
}

// shortDuration formats d as time.Duration.String does, without the zero
// minutes and seconds of a whole hour: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	text := d.String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

// withQueue returns s with a route's delay and maximum wait for the leaky
// queue. prefix starts the setting names, such as "routes[0].". A negative
// delay, a delay above the capacity of a rule, a malformed or out-of-range
// wait, and either one on a route that another algorithm decides are
// reported and leave s unchanged.
func (b *builder) withQueue(prefix string, delay int64, maxWait string, s *ruleSet) *ruleSet {
	if s == nil || delay == 0 && maxWait == "" {
		return s
	}
	errsBefore := len(b.errs)
	out := *s
	if delay < 0 {
		b.fail(prefix+"delay", fmt.Errorf("delay %d is negative: set how many requests beyond "+
			"the rate pass without waiting, or remove delay to hold every one of them", delay))
	}
	if maxWait != "" {
		d, err := ParseMaxWait(maxWait)
		if err != nil {
			b.fail(prefix+"max_wait", err)
		}
		out.maxWait = d
	}
	if b.queueApplies(prefix, delay, maxWait, s) && delay > 0 {
		b.checkDelay(prefix+"delay", delay, s)
	}
	if len(b.errs) > errsBefore {
		return s
	}
	out.delay = delay
	return &out
}

// queueApplies reports whether the rules of s run under the leaky queue,
// and reports the settings of a route that another algorithm decides. An
// unknown algorithm (no Config.DefaultAlgorithm) may be the leaky queue.
func (b *builder) queueApplies(prefix string, delay int64, maxWait string, s *ruleSet) bool {
	kind, chosenBy := b.algorithmOf(s)
	if kind == nil || *kind == algorithm.LeakyQueue {
		return true
	}
	chosenBy = strings.TrimPrefix(chosenBy, prefix)
	if delay != 0 {
		b.fail(prefix+"delay", fmt.Errorf("delay %d has no effect with %s, which does not "+
			"queue requests: remove delay, or set the route's algorithm to leaky_queue",
			delay, chosenBy))
	}
	if maxWait != "" {
		b.fail(prefix+"max_wait", fmt.Errorf("max_wait %q has no effect with %s, which does not "+
			"queue requests: remove max_wait, or set the route's algorithm to leaky_queue",
			maxWait, chosenBy))
	}
	return false
}

// checkDelay reports a delay above the capacity of a rule of s, naming the
// first such rule.
func (b *builder) checkDelay(setting string, delay int64, s *ruleSet) {
	kind := algorithm.LeakyQueue
	for _, r := range s.rules {
		capacity := s.capacity(r, &kind)
		if delay <= capacity {
			continue
		}
		b.fail(setting, fmt.Errorf("delay %d exceeds the capacity %d of rule %s in %s: lower "+
			"delay to at most %d (%d lets every request within the capacity pass without "+
			"waiting, as nginx's nodelay), or raise burst", delay, capacity, r, s.setting,
			capacity, capacity))
		return
	}
}
