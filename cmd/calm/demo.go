package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/calm-limiter/calm/policy"
)

// demoHandlers is the demo API that `calm serve` serves without
// --upstream, keyed by ServeMux pattern.
var demoHandlers = map[string]http.HandlerFunc{
	"POST /auth/login":     demoLogin,
	"POST /auth/register":  demoRegister,
	"GET /public/products": demoProducts,
	"GET /public/search":   demoSearch,
	"GET /api/test":        demoTest,
	"GET /api/me":          demoMe,
	"POST /api/upload":     demoUpload,
	"GET /api/export":      demoExport,
	"POST /api/reports":    demoReports,
	"GET /api/tiered":      demoTiered,
}

// demoPolicy returns the limits of the demo API: tight limits on
// credentials, loose ones on public reads, the default limits on /api/test.
// examples/calm.yaml writes the same policy as a config file.
func demoPolicy() policy.Config {
	return policy.Config{
		Exclude: []string{"/healthz", "/readyz", "/metrics"},
		Groups: []policy.Group{{
			Prefix: "/auth",
			Name:   "auth",
			Limits: []string{"20/minute"},
			Routes: []policy.Route{
				{Pattern: "POST /auth/login", Name: "login", Limits: []string{"3/minute", "10/hour"}},
				{Pattern: "POST /auth/register", Name: "register",
					Limits: []string{"2/minute", "5/hour"}},
			},
		}, {
			// Every /api request also spends the client's shared budget of
			// 100 units a minute; a report costs 10 of them.
			Prefix: "/api",
			Name:   "api",
			Budget: []string{"100/minute"},
			Routes: []policy.Route{
				{Pattern: "GET /api/test"},
				{Pattern: "GET /api/me", Limits: []string{"60/minute", "500/hour"}},
				{Pattern: "POST /api/upload", Limits: []string{"10/minute"}},
				{Pattern: "GET /api/export", Limits: []string{"5/minute"}},
				// Own limits, so that a small --default-limit cannot make
				// a report of cost 10 impossible.
				{Pattern: "POST /api/reports", Name: "reports",
					Limits: []string{"100/minute", "1000/hour"}, Cost: costOf(10)},
			},
		}},
		Routes: []policy.Route{
			{Pattern: "GET /public/products", Limits: []string{"100/minute"}},
			{Pattern: "GET /public/search", Limits: []string{"50/minute"}},
			// Outside the /api group, so no group budget caps the tier.
			{Pattern: "GET /api/tiered"},
		},
	}
}

func costOf(n int64) *int64 { return &n }

// newDemoMux returns the demo API's routes.
func newDemoMux() *http.ServeMux {
	mux := http.NewServeMux()
	for pattern, h := range demoHandlers {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{
			"message": "not found",
			"detail":  "the demo API has no " + r.Method + " " + truncate(r.URL.Path, maxEchoedPath),
		})
	})
	return mux
}

// maxEchoedPath bounds how many bytes of the request path a 404 echoes, so
// that a huge path does not produce an equally huge response.
const maxEchoedPath = 200

// truncate returns s cut to at most n bytes on a UTF-8 boundary, with "..."
// appended when it was cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// maxDemoBody bounds what the demo reads from a request body: 1 MiB.
const maxDemoBody = 1 << 20

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// readCredentials decodes an optional JSON body with a username.
func readCredentials(w http.ResponseWriter, r *http.Request) (credentials, bool) {
	var c credentials
	body := http.MaxBytesReader(w, r.Body, maxDemoBody)
	err := json.NewDecoder(body).Decode(&c)
	if err != nil && err != io.EOF {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"message": "bad request",
			"detail":  `want a JSON body such as {"username": "ada", "password": "..."}`,
		})
		return c, false
	}
	if c.Username == "" {
		c.Username = "demo"
	}
	return c, true
}

func demoLogin(w http.ResponseWriter, r *http.Request) {
	c, ok := readCredentials(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"message": "logged in",
		"user":    c.Username,
		"token":   "demo-token-not-valid-anywhere",
	})
}

func demoRegister(w http.ResponseWriter, r *http.Request) {
	c, ok := readCredentials(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"message": "registered", "user": c.Username})
}

type product struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Price int    `json:"price_cents"`
}

var demoCatalog = []product{
	{1, "Chamomile tea", 450},
	{2, "Meditation cushion", 3900},
	{3, "Noise-cancelling headphones", 19900},
	{4, "Weighted blanket", 8900},
}

func demoProducts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"products": demoCatalog})
}

func demoSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(r.URL.Query().Get("q"))
	found := []product{}
	for _, p := range demoCatalog {
		if strings.Contains(strings.ToLower(p.Name), q) {
			found = append(found, p)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"query": q, "results": found})
}

func demoTest(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"message": "ok"})
}

func demoMe(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"user": "demo", "plan": "free"})
}

func demoUpload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxDemoBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{
			"message": "upload too large",
			"detail":  "the demo accepts at most 1 MiB",
		})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"message": "upload failed",
			"detail":  "reading the request body failed",
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": "uploaded", "bytes": n})
}

func demoReports(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusAccepted, map[string]string{
		"message": "report queued",
		"detail":  "a report costs 10 units of the shared /api budget of 100 per minute",
	})
}

func demoExport(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"format": "json", "products": demoCatalog})
}

// writeJSON writes v as the JSON body of a response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
