// Command benchreport turns `go test -bench` output (read from stdin, repeated runs with
// -count) into one table of medians with min and max per benchmark metric, and writes the
// same as JSON. It never judges: targets are read against the table by people.
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 ./... | go run ./test/benchreport -json bench.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Metric is one benchmark metric over all runs.
type Metric struct {
	Package   string    `json:"package"`
	Benchmark string    `json:"benchmark"`
	Unit      string    `json:"unit"`
	Median    float64   `json:"median"`
	Min       float64   `json:"min"`
	Max       float64   `json:"max"`
	Runs      []float64 `json:"runs"`
}

// benchLine matches "BenchmarkName-2   1   123 ns/op   4.5 unit ...".
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func main() {
	jsonPath := flag.String("json", "bench.json", "where to write the JSON report")
	flag.Parse()
	metrics, notes, err := parse(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	printTable(os.Stdout, metrics, notes)
	data, _ := json.MarshalIndent(struct {
		Metrics []Metric `json:"metrics"`
		Notes   []string `json:"notes,omitempty"`
	}{metrics, notes}, "", "  ")
	if err := os.WriteFile(*jsonPath, append(data, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// parse collects metric values per package/benchmark/unit in first-seen order; it echoes every
// input line to echo (progress), and keeps benchmark log lines marked "NOTE:" and skips.
func parse(r io.Reader, echo io.Writer) ([]Metric, []string, error) {
	var order []string
	byKey := map[string]*Metric{}
	var notes []string
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		case strings.Contains(trimmed, "NOTE: "), strings.HasPrefix(trimmed, "--- SKIP"):
			notes = append(notes, trimmed)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			key := pkg + "\x00" + m[1] + "\x00" + f[i+1]
			if byKey[key] == nil {
				byKey[key] = &Metric{Package: pkg, Benchmark: m[1], Unit: f[i+1]}
				order = append(order, key)
			}
			byKey[key].Runs = append(byKey[key].Runs, v)
		}
	}
	out := make([]Metric, 0, len(order))
	for _, k := range order {
		m := byKey[k]
		s := append([]float64(nil), m.Runs...)
		sort.Float64s(s)
		m.Min, m.Max, m.Median = s[0], s[len(s)-1], s[len(s)/2]
		if len(s)%2 == 0 {
			m.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		out = append(out, *m)
	}
	return out, notes, sc.Err()
}

func printTable(w io.Writer, metrics []Metric, notes []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tMETRIC\tMEDIAN\tMIN\tMAX\tRUNS")
	for _, m := range metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", strings.TrimPrefix(m.Benchmark, "Benchmark"), m.Unit,
			num(m.Median), num(m.Min), num(m.Max), len(m.Runs))
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
