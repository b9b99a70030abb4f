package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDemoNotFoundBoundsPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path string
		want       string // the detail's path part
	}{
		{"short path", "/nope", "/nope"},
		{"10000 segments", strings.Repeat("/a", 10000), strings.Repeat("/a", 100) + "..."},
		{"cut inside a rune", "/" + strings.Repeat("é", 150), "/" + strings.Repeat("é", 99) + "..."},
	}
	mux := newDemoMux()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			if rec.Code != http.StatusNotFound {
				t.Fatalf("GET %.40s... = %d, want 404", tt.path, rec.Code)
			}
			if n := rec.Body.Len(); n > 1024 {
				t.Errorf("404 body is %d bytes, want at most 1024", n)
			}
			var body struct{ Detail string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("decoding the 404 body: %v", err)
			}
			if want := "the demo API has no GET " + tt.want; body.Detail != want {
				t.Errorf("detail = %q, want %q", body.Detail, want)
			}
			if !utf8.ValidString(body.Detail) {
				t.Errorf("detail %q is not valid UTF-8", body.Detail)
			}
		})
	}
}
