package httplimit_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/calm-limiter/calm"
	"github.com/calm-limiter/calm/httplimit"
	"github.com/calm-limiter/calm/policy"
	"github.com/calm-limiter/calm/store/memory"
)

func newLimiter(cfg httplimit.Config) *httplimit.Limiter {
	store := memory.New(memory.Config{})
	limiter, err := calm.New(calm.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	cfg.Limiter = limiter
	lim, err := httplimit.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return lim
}

func hello(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }

func ExampleLimiter_Middleware() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", hello)
	mux.HandleFunc("POST /auth/login", hello)

	lim := newLimiter(httplimit.Config{
		Mux: mux, // keys use route patterns: /users/1 and /users/2 share one budget
		Policy: policy.Config{
			DefaultLimits: []string{"2/minute"},
			Groups: []policy.Group{{
				Prefix: "/auth",
				Routes: []policy.Route{{Pattern: "POST /auth/login", Limits: []string{"3/minute"}}},
			}},
		},
	})
	handler := lim.Middleware(mux)

	for _, path := range []string{"/users/1", "/users/2", "/users/3"} {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		fmt.Println(path, w.Code, w.Header().Get("RateLimit-Remaining"), w.Header().Get("X-RateLimit-Policy"))
	}
	// Output:
	// /users/1 200 1 default
	// /users/2 200 0 default
	// /users/3 420 0 default
}

func ExampleLimiter_Limit() {
	lim := newLimiter(httplimit.Config{})
	rows := func(r *http.Request) (int64, error) {
		return strconv.ParseInt(r.URL.Query().Get("rows"), 10, 64)
	}

	mux := http.NewServeMux()
	mux.Handle("POST /auth/login", lim.Limit("3/minute,10/hour", http.HandlerFunc(hello)))
	mux.Handle("POST /api/reports", lim.Limit("100/minute", http.HandlerFunc(hello), httplimit.Cost(10)))
	mux.Handle("GET /api/export", lim.Limit("1000/hour", http.HandlerFunc(hello), httplimit.CostFunc(rows)))

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("POST", "/api/reports", nil))
	fmt.Println(w.Code, w.Header().Get("RateLimit-Remaining"))
	// Output: 200 90
}

func ExampleLimiter_Check() {
	lim := newLimiter(httplimit.Config{Policy: policy.Config{DefaultLimits: []string{"1/minute"}}})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := lim.Check(r)
		if err != nil {
			log.Print(err) // the store failed; res.Allowed follows Config.FailClosed
		}
		if !res.Allowed {
			lim.Deny(w, res)
			return
		}
		lim.WriteHeaders(w, res)
		fmt.Fprintln(w, "done")
	})

	for range 2 {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("POST", "/jobs", nil))
		fmt.Println(w.Code, w.Header().Get("Retry-After") != "")
	}
	// Output:
	// 200 false
	// 420 true
}

func ExampleLimiter_SlowDown() {
	lim := newLimiter(httplimit.Config{Policy: policy.Config{DefaultLimits: []string{"10/second"}}})
	slow, err := lim.SlowDown(httplimit.SlowDownConfig{MaxDelay: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/", slow(http.HandlerFunc(hello)))
}
