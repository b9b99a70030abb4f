// Command benchsummary turns the output of the compare benchmarks into one
// line per case and peer, each with the peer's median and its ratio to
// calm's median:
//
//	compare <case> <peer> ns_per_op=<n> allocs_per_op=<n> ratio_to_calm=<x>
//	compare heap-<rule> <peer> keys=<n> bytes_per_key=<n> ratio_to_calm=<x> calm_algorithm=<kind> new_key_denials=<n> lost_per_1000=<n>
//
// where <rule> is the rule= part of the heap benchmark's name, such as
// 1-per-hour; a heap benchmark without one is the case heap.
// A speed ratio divides the peer's median by the median of the -base
// peer. A heap ratio divides it by the median of calm's memory store
// under the peer's own algorithm, named by calm_algorithm (see Peer.Algorithm
// in package compare), so the heap of a sliding window counter is
// compared with calm's sliding window. A peer that package compare does
// not know, or whose calm run is missing, gets ratio_to_calm=n/a.
//
// new_key_denials counts new keys denied on their first request and
// lost_per_1000 the sampled keys whose state the store no longer held
// (see BenchmarkHeap in package compare).
//
// A ratio above 1 means calm is faster (peer ns / calm ns) or smaller
// (peer bytes / calm bytes). Input is `go test -bench` output, from files
// named as arguments or from standard input.
//
// With -markdown it prints the same medians as Markdown tables instead,
// for docs/BENCHMARKS.md: one row per speed case with one column per peer,
// then one row per peer of the heap case.
//
// Usage:
//
//	benchsummary [-base calm] [-markdown] [file ...]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/bench/compare"
	"golang.org/x/perf/benchfmt"
)

func main() {
	base := flag.String("base", "calm",
		"peer whose medians are the denominator of every speed ratio")
	markdown := flag.Bool("markdown", false, "print a Markdown table instead of summary lines")
	flag.Parse()

	summary, err := readFiles(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
	write := summary.write
	if *markdown {
		write = summary.writeMarkdown
	}
	if err := write(os.Stdout, *base); err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
}

func readFiles(names []string) (*summary, error) {
	s := newSummary()
	if len(names) == 0 {
		return s, s.read(os.Stdin, "stdin")
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("opening benchmark output: %w", err)
		}
		err = s.read(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// series holds every measurement of one case and peer.
type series struct {
	ns, allocs, bytesPerKey    []float64
	newKeyDenials, lostPer1000 []float64
}

// summary collects series by case, then peer, in the order they first
// appear in the input.
type summary struct {
	cases  []string
	peers  []string
	series map[[2]string]*series
	keys   map[string]string // heap case name -> value of its keys= setting
}

func newSummary() *summary {
	return &summary{series: make(map[[2]string]*series), keys: make(map[string]string)}
}

// errNoResults is returned when the input holds no compare benchmarks.
var errNoResults = errors.New("no results with case= or keys= and peer= in the input")

func (s *summary) read(r io.Reader, fileName string) error {
	reader := benchfmt.NewReader(r, fileName)
	for reader.Scan() {
		res, ok := reader.Result().(*benchfmt.Result)
		if !ok {
			continue // syntax errors and unit lines
		}
		s.add(res)
	}
	if err := reader.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", fileName, err)
	}
	return nil
}

func (s *summary) add(res *benchfmt.Result) {
	settings := nameSettings(res.Name)
	peer := settings["peer"]
	name := settings["case"]
	if keys, ok := settings["keys"]; ok && name == "" {
		name = "heap"
		if rule := settings["rule"]; rule != "" {
			name += "-" + rule
		}
		s.keys[name] = keys
	}
	if peer == "" || name == "" {
		return
	}
	id := [2]string{name, peer}
	ser, ok := s.series[id]
	if !ok {
		ser = new(series)
		s.series[id] = ser
		if !slices.Contains(s.cases, name) {
			s.cases = append(s.cases, name)
		}
		if !slices.Contains(s.peers, peer) {
			s.peers = append(s.peers, peer)
		}
	}
	if v, ok := res.Value("sec/op"); ok {
		ser.ns = append(ser.ns, v*1e9)
	}
	if v, ok := res.Value("allocs/op"); ok {
		ser.allocs = append(ser.allocs, v)
	}
	if v, ok := res.Value("B/key"); ok {
		ser.bytesPerKey = append(ser.bytesPerKey, v)
	}
	if v, ok := res.Value("new-key-denials"); ok {
		ser.newKeyDenials = append(ser.newKeyDenials, v)
	}
	if v, ok := res.Value("lost-keys/1000"); ok {
		ser.lostPer1000 = append(ser.lostPer1000, v)
	}
}

// nameSettings returns the key=value parts of a benchmark name, such as
// case=hot and peer=calm in BenchmarkCompare/case=hot/peer=calm-2.
func nameSettings(name benchfmt.Name) map[string]string {
	settings := make(map[string]string)
	_, parts := name.Parts()
	for _, part := range parts {
		key, value, ok := strings.Cut(strings.TrimPrefix(string(part), "/"), "=")
		if ok {
			settings[key] = value
		}
	}
	return settings
}

func (s *summary) write(w io.Writer, base string) error {
	if len(s.series) == 0 {
		return errNoResults
	}
	for _, name := range s.cases {
		baseSeries := s.series[[2]string{name, base}]
		for _, peer := range s.peers {
			ser, ok := s.series[[2]string{name, peer}]
			if !ok {
				continue
			}
			var line string
			if keys, ok := s.keys[name]; ok {
				line = s.heapLine(name, peer, keys, ser)
			} else {
				line = speedLine(name, peer, ser, baseSeries)
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return fmt.Errorf("writing summary: %w", err)
			}
		}
	}
	return nil
}

func speedLine(name, peer string, ser, base *series) string {
	ns := median(ser.ns)
	ratio := "n/a"
	if base != nil && len(base.ns) > 0 {
		ratio = strconv.FormatFloat(ns/median(base.ns), 'f', 2, 64)
	}
	return fmt.Sprintf("compare %s %s ns_per_op=%s allocs_per_op=%s ratio_to_calm=%s",
		name, peer, formatNumber(ns), formatNumber(median(ser.allocs)), ratio)
}

// heapPair is a peer's heap figure next to calm's under the same
// algorithm.
type heapPair struct {
	bytes     float64
	calmBytes float64 // NaN when calm's run under the algorithm is missing
	algorithm string  // "n/a" for a peer that package compare does not know
}

// ratio returns bytes / calmBytes with two decimals, or "n/a".
func (p heapPair) ratio() string {
	if math.IsNaN(p.calmBytes) {
		return "n/a"
	}
	return strconv.FormatFloat(p.bytes/p.calmBytes, 'f', 2, 64)
}

// pairHeap looks up the heap series of calm's memory store under the
// algorithm of peer in case name.
func (s *summary) pairHeap(name, peer string, ser *series) heapPair {
	pair := heapPair{bytes: median(ser.bytesPerKey), calmBytes: math.NaN(), algorithm: "n/a"}
	kind, ok := compare.PeerAlgorithm(peer)
	if !ok {
		return pair
	}
	pair.algorithm = kind.String()
	if calm := s.calmSeries(name, kind); calm != nil && len(calm.bytesPerKey) > 0 {
		pair.calmBytes = median(calm.bytesPerKey)
	}
	return pair
}

func (s *summary) calmSeries(name string, kind algorithm.Kind) *series {
	return s.series[[2]string{name, compare.CalmStoreName(kind)}]
}

func (s *summary) heapLine(name, peer, keys string, ser *series) string {
	pair := s.pairHeap(name, peer, ser)
	line := fmt.Sprintf("compare %s %s keys=%s bytes_per_key=%s ratio_to_calm=%s calm_algorithm=%s",
		name, peer, expandCount(keys), formatNumber(pair.bytes), pair.ratio(), pair.algorithm)
	if len(ser.newKeyDenials) > 0 {
		line += " new_key_denials=" + formatNumber(median(ser.newKeyDenials))
	}
	if len(ser.lostPer1000) > 0 {
		line += " lost_per_1000=" + formatNumber(median(ser.lostPer1000))
	}
	return line
}

// writeMarkdown prints a table of the speed cases, then one of each heap
// case.
func (s *summary) writeMarkdown(w io.Writer, base string) error {
	if len(s.series) == 0 {
		return errNoResults
	}
	var b strings.Builder
	s.writeSpeedTable(&b, base)
	for _, name := range s.cases {
		if keys, ok := s.keys[name]; ok {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			s.writeHeapTable(&b, name, keys)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing summary: %w", err)
	}
	return nil
}

// writeSpeedTable prints one row per speed case and one column per peer
// with speed results, each cell with the peer's median and, for peers
// other than base, its ratio to base. It prints nothing without speed
// results.
func (s *summary) writeSpeedTable(b *strings.Builder, base string) {
	var cases, peers []string
	for _, name := range s.cases {
		if _, heap := s.keys[name]; heap {
			continue
		}
		cases = append(cases, name)
		for _, peer := range s.peers {
			if _, ok := s.series[[2]string{name, peer}]; ok && !slices.Contains(peers, peer) {
				peers = append(peers, peer)
			}
		}
	}
	if len(cases) == 0 {
		return
	}

	b.WriteString("| case |")
	for _, peer := range peers {
		fmt.Fprintf(b, " %s |", peer)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", len(peers)))
	b.WriteString("\n")
	for _, name := range cases {
		fmt.Fprintf(b, "| %s, ns/op |", name)
		baseSeries := s.series[[2]string{name, base}]
		for _, peer := range peers {
			fmt.Fprintf(b, " %s |", speedCell(s.series[[2]string{name, peer}], baseSeries, peer == base))
		}
		b.WriteString("\n")
	}
}

// speedCell formats one median as "812 (1.53×), 3 allocs".
func speedCell(ser, base *series, isBase bool) string {
	if ser == nil {
		return "–"
	}
	cell := formatNumber(median(ser.ns))
	if !isBase && base != nil && len(base.ns) > 0 {
		cell += fmt.Sprintf(" (%.2f×)", median(ser.ns)/median(base.ns))
	}
	return cell + ", " + formatNumber(median(ser.allocs)) + " allocs"
}

// writeHeapTable prints one row per peer of heap case name: its bytes per
// key, calm's under the same algorithm, the ratio of the two, and the
// peer's new keys denied and sampled keys lost.
func (s *summary) writeHeapTable(b *strings.Builder, name, keys string) {
	fmt.Fprintf(b, "| %s, %s keys | calm algorithm | B/key | calm B/key | ratio to calm |"+
		" new keys denied | lost per 1000 |\n", name, expandCount(keys))
	b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
	for _, peer := range s.peers {
		ser, ok := s.series[[2]string{name, peer}]
		if !ok {
			continue
		}
		pair := s.pairHeap(name, peer, ser)
		calmBytes, ratio := "–", "–"
		if !math.IsNaN(pair.calmBytes) {
			calmBytes, ratio = formatNumber(pair.calmBytes), pair.ratio()+"×"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", peer, pair.algorithm,
			formatNumber(pair.bytes), calmBytes, ratio,
			optionalNumber(ser.newKeyDenials), optionalNumber(ser.lostPer1000))
	}
}

// optionalNumber formats the median of xs, or "–" when there is none.
func optionalNumber(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	return formatNumber(median(xs))
}

// expandCount writes counts such as "1M" and "100k" in full digits.
func expandCount(s string) string {
	multiplier := int64(1)
	switch {
	case strings.HasSuffix(s, "M"):
		multiplier, s = 1_000_000, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "k"):
		multiplier, s = 1_000, strings.TrimSuffix(s, "k")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return strconv.FormatInt(n*multiplier, 10)
}

// median returns the middle value of xs, or the mean of the two middle
// values when len(xs) is even, and NaN for no values.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

// formatNumber rounds x to one decimal and drops the decimal of whole
// numbers.
func formatNumber(x float64) string {
	rounded := math.Round(x*10) / 10
	if rounded == math.Trunc(rounded) {
		return strconv.FormatFloat(rounded, 'f', 0, 64)
	}
	return strconv.FormatFloat(rounded, 'f', 1, 64)
}
