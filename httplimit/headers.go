package httplimit

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Header field names, written in the canonical form that http.Header
// stores, so that setting them needs no conversion. Field names are
// case-insensitive: "Ratelimit-Limit" is the RateLimit-Limit field.
const (
	headerLimit       = "Ratelimit-Limit"
	headerRemaining   = "Ratelimit-Remaining"
	headerReset       = "Ratelimit-Reset"
	headerPolicyName  = "X-Ratelimit-Policy"
	headerScope       = "X-Ratelimit-Scope"
	headerDraftPolicy = "Ratelimit-Policy"
	headerDraftState  = "Ratelimit"
	headerRetryAfter  = "Retry-After"
)

// WriteHeaders sets the rate-limit header fields of res on w as
// Config.Headers chooses, and Retry-After when res is denied. Call it
// before the status is written.
//
// RateLimit-Reset and the draft's t parameter count whole seconds, rounded
// up, until the rule's budget is back. On a denied response, the reset of
// every exhausted rule is the time until it admits a request again, so
// that Retry-After is never earlier than a reset the response reports.
func (l *Limiter) WriteHeaders(w http.ResponseWriter, res calm.Result) {
	setHeaders(w.Header(), l.headers, res)
}

func setHeaders(h http.Header, mode HeaderMode, res calm.Result) {
	retry := retryAfterSeconds(res)
	if mode != HeadersNone {
		if mode == HeadersBoth || mode == HeadersLegacy {
			h.Set(headerLimit, strconv.FormatInt(res.Limit, 10))
			h.Set(headerRemaining, strconv.FormatInt(max(res.Remaining, 0), 10))
			h.Set(headerReset, strconv.FormatInt(clampReset(ceilSeconds(res.ResetAfter), retry), 10))
		}
		if mode == HeadersBoth || mode == HeadersDraft {
			if len(res.Quotas) > 0 {
				policies, states := renderDraft(res, retry)
				h.Set(headerDraftPolicy, policies)
				h.Set(headerDraftState, states)
			}
		}
		h.Set(headerPolicyName, fieldValue(res.Policy))
		h.Set(headerScope, fieldValue(string(res.Scope)))
	}
	if retry > 0 {
		h.Set(headerRetryAfter, strconv.FormatInt(retry, 10))
	}
}

// retryAfterSeconds returns the Retry-After value of res in whole seconds,
// rounded up and at least 1. It returns 0, meaning no Retry-After, when res
// is allowed and when waiting cannot help: the cost or the limit is
// invalid, or the cost exceeds the capacity.
func retryAfterSeconds(res calm.Result) int64 {
	if res.Allowed {
		return 0
	}
	switch res.Reason {
	case algorithm.ReasonCostTooLarge, algorithm.ReasonInvalidCost, algorithm.ReasonInvalidLimit:
		return 0
	}
	return max(ceilSeconds(res.RetryAfter), 1)
}

// ceilSeconds rounds d up to whole seconds; negative durations give 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// clampReset caps a reset at the Retry-After value when there is one.
func clampReset(reset, retry int64) int64 {
	if retry > 0 && reset > retry {
		return retry
	}
	return reset
}

// renderDraft renders the RateLimit-Policy and RateLimit field values: RFC
// 9651 lists with one item per quota, such as
// `"default-60s";q=100;w=60, "default-3600s";q=1000;w=3600`.
func renderDraft(res calm.Result, retry int64) (policies, states string) {
	names := draftNames(res.Quotas)
	var p, s strings.Builder
	p.Grow(32 * len(names))
	s.Grow(32 * len(names))
	for i, q := range res.Quotas {
		if i > 0 {
			p.WriteString(", ")
			s.WriteString(", ")
		}
		writeSFString(&p, names[i])
		p.WriteString(";q=")
		p.WriteString(sfInteger(q.Rule.Requests))
		p.WriteString(";w=")
		p.WriteString(sfInteger(max(ceilSeconds(q.Rule.Window), 1)))

		reset := ceilSeconds(q.ResetAfter)
		if q.Remaining <= 0 || deciding(res, q) {
			reset = clampReset(reset, retry)
		}
		writeSFString(&s, names[i])
		s.WriteString(";r=")
		s.WriteString(sfInteger(q.Remaining))
		s.WriteString(";t=")
		s.WriteString(sfInteger(reset))
	}
	return p.String(), s.String()
}

// maxSFInteger is the largest Integer RFC 9651 allows: 15 digits.
const maxSFInteger = 999_999_999_999_999

// sfInteger formats n as a non-negative RFC 9651 Integer, clamped to the
// range the format allows.
func sfInteger(n int64) string {
	return strconv.FormatInt(min(max(n, 0), maxSFInteger), 10)
}

// deciding reports whether q is the rule that decided res.
func deciding(res calm.Result, q calm.Quota) bool {
	return q.Policy == res.Policy && q.Scope == res.Scope && q.Rule == res.Rule
}

// draftNames gives each quota a distinct list item name, starting from
// the policy name. A policy found in several scopes gets "-endpoint" or
// "-global" on its non-user items. A policy with several rules gets the
// window in seconds ("default-60s"). A name that is still taken gets "-2",
// "-3" and so on.
func draftNames(quotas []calm.Quota) []string {
	names := make([]string, len(quotas))
	for i, q := range quotas {
		multiScope, multiRule := false, false
		for j, o := range quotas {
			if j == i || o.Policy != q.Policy {
				continue
			}
			if o.Scope != q.Scope {
				multiScope = true
			} else {
				multiRule = true
			}
		}
		name := q.Policy
		if multiScope && q.Scope != calm.ScopeUser {
			name += "-" + string(q.Scope)
		}
		if multiRule {
			name += "-" + strconv.FormatInt(max(ceilSeconds(q.Rule.Window), 1), 10) + "s"
		}
		names[i] = name
	}
	for i := range names {
		base, n := names[i], 1
		for taken(names[:i], names[i]) {
			n++
			names[i] = base + "-" + strconv.Itoa(n)
		}
	}
	return names
}

func taken(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// writeSFString writes s as an RFC 9651 String: printable ASCII in
// quotes, with quotes and backslashes escaped. Other bytes become '?'.
func writeSFString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch < 0x20 || ch > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('"')
}

// fieldValue replaces bytes that may not appear in a header field value,
// and non-ASCII bytes, with '?'.
func fieldValue(s string) string {
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch < 0x20 || ch > 0x7e {
			return sanitize(s)
		}
	}
	return s
}

func sanitize(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
