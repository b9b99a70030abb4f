package httplimit

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/algorithm"
)

// Body is the JSON body of a denied response.
type Body struct {
	Message   string    `json:"message"`
	Detail    string    `json:"detail"`
	LimitInfo LimitInfo `json:"limit_info"`
}

// LimitInfo describes the rule that denied a request. Times are whole
// seconds, rounded up, as in the headers.
type LimitInfo struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	Reset     int64 `json:"reset"`
	// RetryAfter is null when the request can never pass, because its
	// cost exceeds the rule's capacity.
	RetryAfter *int64 `json:"retry_after"`
	Policy     string `json:"policy"`
	Scope      string `json:"scope"`
	// Reason is "limited", "cost_exceeds_capacity", "queue_full",
	// "invalid_cost" or "invalid_limit".
	Reason string `json:"reason"`
}

// Deny writes the response to a denied request: the rate-limit headers of res, the
// configured status (420 by default) and the JSON Body. Use it with Check.
func (l *Limiter) Deny(w http.ResponseWriter, res calm.Result) {
	l.WriteHeaders(w, res)
	l.writeDenied(w, res)
}

// writeDenied writes the status and body; the headers are already set.
func (l *Limiter) writeDenied(w http.ResponseWriter, res calm.Result) {
	retry := retryAfterSeconds(res)
	info := LimitInfo{
		Limit:     res.Limit,
		Remaining: max(res.Remaining, 0),
		Reset:     clampReset(ceilSeconds(res.ResetAfter), retry),
		Policy:    res.Policy,
		Scope:     string(res.Scope),
		Reason:    res.Reason.String(),
	}
	if retry > 0 {
		info.RetryAfter = &retry
	}
	writeJSON(w, l.status, Body{Message: l.message, Detail: l.deniedDetail(res), LimitInfo: info})
}

// deniedDetail returns the body's detail for a denial: the configured one
// when the client may retry, a fixed one when the request can never pass.
func (l *Limiter) deniedDetail(res calm.Result) string {
	switch res.Reason {
	case algorithm.ReasonCostTooLarge:
		return DetailCostExceedsCapacity
	case algorithm.ReasonInvalidLimit:
		return DetailInvalidLimit
	}
	return l.detail
}

// errorBody is the JSON body of error responses other than rate-limit
// denials.
type errorBody struct {
	Message string `json:"message"`
	Detail  string `json:"detail"`
	Reason  string `json:"reason"`
}

// writeInvalidCost responds 400 to a request whose cost function failed,
// because the cost comes from the request, such as a row count.
func (l *Limiter) writeInvalidCost(w http.ResponseWriter, res calm.Result) {
	writeJSON(w, http.StatusBadRequest, errorBody{
		Message: http.StatusText(http.StatusBadRequest),
		Detail:  "The cost of this request could not be computed from its parameters.",
		Reason:  res.Reason.String(),
	})
}

// writeUnavailable responds 503 to a request that could not be checked while the
// limiter fails closed.
func (l *Limiter) writeUnavailable(w http.ResponseWriter) {
	writeJSON(w, http.StatusServiceUnavailable, errorBody{
		Message: http.StatusText(http.StatusServiceUnavailable),
		Detail:  "The rate limiter cannot reach its store. Retry shortly.",
		Reason:  "store_unavailable",
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Marshal fails only on unsupported types and values, and the bodies
		// contain only strings and integers.
		body = []byte(`{"message":"internal error"}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
