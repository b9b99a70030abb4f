package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/calm-limiter/calm/bench/compare
BenchmarkCompare/case=hot/peer=calm-2   	 2135326	       100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCompare/case=hot/peer=xtime-2  	 2414438	       150.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCompare/case=hot/peer=calm-2   	 2135326	       120.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCompare/case=hot/peer=xtime-2  	 2414438	       250.0 ns/op	      24 B/op	       2 allocs/op
BenchmarkCompare/case=hot/peer=calm-2   	 2135326	       110.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCompare/case=hot/peer=calm-limiter-2 	 184359	 1100 ns/op	 728 B/op	 10 allocs/op
BenchmarkHeap/keys=1M/peer=calm-2 	 1	 860342858 ns/op	 10.5 B/key	 8 lost-keys/1000	 33 new-key-denials
BenchmarkHeap/keys=1M/peer=xtime-2 	 1	 959821992 ns/op	 151.8 B/key
BenchmarkHeap/keys=1M/peer=throttled-2 	 1	 959821992 ns/op	 79.8 B/key	 0 lost-keys/1000	 0 new-key-denials
BenchmarkHeap/keys=1M/peer=httprate-2 	 1	 959821992 ns/op	 37.8 B/key
BenchmarkHeap/keys=1M/peer=calm-token_bucket-2 	 1	 860342858 ns/op	 9.5 B/key	 5 lost-keys/1000	 40 new-key-denials
BenchmarkHeap/keys=1M/peer=calm-token_bucket-2 	 1	 860342858 ns/op	 9.7 B/key	 5 lost-keys/1000	 40 new-key-denials
BenchmarkHeap/keys=1M/peer=other-2 	 1	 959821992 ns/op	 20 B/key
BenchmarkOther-2 	 1	 5 ns/op
PASS
`

func TestSummaryLines(t *testing.T) {
	t.Parallel()
	s := newSummary()
	if err := s.read(strings.NewReader(sample), "sample"); err != nil {
		t.Fatalf("read(sample) error: %v", err)
	}
	var out strings.Builder
	if err := s.write(&out, "calm"); err != nil {
		t.Fatalf("write error: %v", err)
	}
	want := []string{
		"compare hot calm ns_per_op=110 allocs_per_op=0 ratio_to_calm=1.00",
		"compare hot xtime ns_per_op=200 allocs_per_op=1 ratio_to_calm=1.82",
		"compare hot calm-limiter ns_per_op=1100 allocs_per_op=10 ratio_to_calm=10.00",
		"compare heap calm keys=1000000 bytes_per_key=10.5 ratio_to_calm=1.00 calm_algorithm=gcra " +
			"new_key_denials=33 lost_per_1000=8",
		"compare heap xtime keys=1000000 bytes_per_key=151.8 ratio_to_calm=15.81 " +
			"calm_algorithm=token_bucket",
		"compare heap throttled keys=1000000 bytes_per_key=79.8 ratio_to_calm=7.60 " +
			"calm_algorithm=gcra new_key_denials=0 lost_per_1000=0",
		"compare heap httprate keys=1000000 bytes_per_key=37.8 ratio_to_calm=n/a " +
			"calm_algorithm=sliding_window",
		"compare heap calm-token_bucket keys=1000000 bytes_per_key=9.6 ratio_to_calm=1.00 " +
			"calm_algorithm=token_bucket new_key_denials=40 lost_per_1000=5",
		"compare heap other keys=1000000 bytes_per_key=20 ratio_to_calm=n/a calm_algorithm=n/a",
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("write printed %d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestSummaryWithoutBase(t *testing.T) {
	t.Parallel()
	s := newSummary()
	input := "BenchmarkCompare/case=hot/peer=xtime-2 \t 10 \t 150 ns/op \t 0 allocs/op\n"
	if err := s.read(strings.NewReader(input), "input"); err != nil {
		t.Fatalf("read error: %v", err)
	}
	var out strings.Builder
	if err := s.write(&out, "calm"); err != nil {
		t.Fatalf("write error: %v", err)
	}
	want := "compare hot xtime ns_per_op=150 allocs_per_op=0 ratio_to_calm=n/a\n"
	if out.String() != want {
		t.Errorf("write printed %q, want %q", out.String(), want)
	}
}

func TestSummaryEmptyInput(t *testing.T) {
	t.Parallel()
	s := newSummary()
	if err := s.read(strings.NewReader("PASS\n"), "input"); err != nil {
		t.Fatalf("read error: %v", err)
	}
	if err := s.write(&strings.Builder{}, "calm"); err != errNoResults {
		t.Errorf("write on empty input = %v, want %v", err, errNoResults)
	}
}

func TestExpandCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{name: "millions", in: "1M", want: "1000000"},
		{name: "thousands", in: "100k", want: "100000"},
		{name: "plain", in: "42", want: "42"},
		{name: "not a number", in: "many", want: "many"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := expandCount(tt.in); got != tt.want {
				t.Errorf("expandCount(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSummaryMarkdown(t *testing.T) {
	t.Parallel()
	s := newSummary()
	if err := s.read(strings.NewReader(sample), "sample"); err != nil {
		t.Fatalf("read(sample) error: %v", err)
	}
	var out strings.Builder
	if err := s.writeMarkdown(&out, "calm"); err != nil {
		t.Fatalf("writeMarkdown error: %v", err)
	}
	want := `| case | calm | xtime | calm-limiter |
|---|---:|---:|---:|
| hot, ns/op | 110, 0 allocs | 200 (1.82×), 1 allocs | 1100 (10.00×), 10 allocs |

| heap, 1000000 keys | calm algorithm | B/key | calm B/key | ratio to calm | new keys denied | lost per 1000 |
|---|---|---:|---:|---:|---:|---:|
| calm | gcra | 10.5 | 10.5 | 1.00× | 33 | 8 |
| xtime | token_bucket | 151.8 | 9.6 | 15.81× | – | – |
| throttled | gcra | 79.8 | 10.5 | 7.60× | 0 | 0 |
| httprate | sliding_window | 37.8 | – | – | – | – |
| calm-token_bucket | token_bucket | 9.6 | 9.6 | 1.00× | 40 | 5 |
| other | n/a | 20 | – | – | – | – |
`
	if out.String() != want {
		t.Errorf("writeMarkdown printed\n%s\nwant\n%s", out.String(), want)
	}
}

func TestSummaryMarkdownHeapOnly(t *testing.T) {
	t.Parallel()
	s := newSummary()
	input := "BenchmarkHeap/keys=1M/peer=httprate-2 \t 1 \t 9 ns/op \t 37.8 B/key\n" +
		"BenchmarkHeap/keys=1M/peer=calm-sliding_window-2 \t 1 \t 9 ns/op \t 9.5 B/key\n"
	if err := s.read(strings.NewReader(input), "input"); err != nil {
		t.Fatalf("read error: %v", err)
	}
	var out strings.Builder
	if err := s.writeMarkdown(&out, "calm"); err != nil {
		t.Fatalf("writeMarkdown error: %v", err)
	}
	want := `| heap, 1000000 keys | calm algorithm | B/key | calm B/key | ratio to calm | new keys denied | lost per 1000 |
|---|---|---:|---:|---:|---:|---:|
| httprate | sliding_window | 37.8 | 9.5 | 3.98× | – | – |
| calm-sliding_window | sliding_window | 9.5 | 9.5 | 1.00× | – | – |
`
	if out.String() != want {
		t.Errorf("writeMarkdown printed\n%s\nwant\n%s", out.String(), want)
	}
}

func TestSummaryHeapRulesAreCases(t *testing.T) {
	t.Parallel()
	s := newSummary()
	input := "BenchmarkHeap/keys=1M/rule=1-per-hour/peer=httprate-2 \t 1 \t 9 ns/op \t 37.8 B/key\n" +
		"BenchmarkHeap/keys=1M/rule=1-per-hour/peer=calm-sliding_window-2 \t 1 \t 9 ns/op \t 3.2 B/key\n" +
		"BenchmarkHeap/keys=1M/rule=100-per-minute/peer=httprate-2 \t 1 \t 9 ns/op \t 37.8 B/key\n" +
		"BenchmarkHeap/keys=1M/rule=100-per-minute/peer=calm-sliding_window-2 \t 1 \t 9 ns/op \t 5.8 B/key\n"
	if err := s.read(strings.NewReader(input), "input"); err != nil {
		t.Fatalf("read error: %v", err)
	}
	var out strings.Builder
	if err := s.write(&out, "calm"); err != nil {
		t.Fatalf("write error: %v", err)
	}
	want := "compare heap-1-per-hour httprate keys=1000000 bytes_per_key=37.8 ratio_to_calm=11.81 " +
		"calm_algorithm=sliding_window\n" +
		"compare heap-1-per-hour calm-sliding_window keys=1000000 bytes_per_key=3.2 " +
		"ratio_to_calm=1.00 calm_algorithm=sliding_window\n" +
		"compare heap-100-per-minute httprate keys=1000000 bytes_per_key=37.8 ratio_to_calm=6.52 " +
		"calm_algorithm=sliding_window\n" +
		"compare heap-100-per-minute calm-sliding_window keys=1000000 bytes_per_key=5.8 " +
		"ratio_to_calm=1.00 calm_algorithm=sliding_window\n"
	if out.String() != want {
		t.Errorf("write printed\n%s\nwant\n%s", out.String(), want)
	}
}
