package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseAggregatesRuns(t *testing.T) {
	in := `goos: linux
pkg: example/a
BenchmarkBoot-2   	       1	 5000 ns/op	         2.5 engine-boot-s	         1.10 engine/bare
BenchmarkBoot-2   	       1	 7000 ns/op	         3.5 engine-boot-s	         1.00 engine/bare
BenchmarkBoot-2   	       1	 6000 ns/op	         3.0 engine-boot-s	         1.20 engine/bare
    bench_test.go:9: NOTE: density N=40 (memory allows no more)
--- SKIP: BenchmarkNet
PASS
pkg: example/b
BenchmarkIndex-2	     100	     12.5 ns/op	   3 MB/s
`
	ms, notes, err := parse(strings.NewReader(in), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 {
		t.Fatalf("want 5 metrics, got %d: %+v", len(ms), ms)
	}
	boot := ms[1]
	if boot.Unit != "engine-boot-s" || boot.Median != 3.0 || boot.Min != 2.5 || boot.Max != 3.5 || len(boot.Runs) != 3 {
		t.Fatalf("engine-boot-s aggregated wrong: %+v", boot)
	}
	if ms[4].Package != "example/b" || ms[4].Unit != "MB/s" || ms[4].Median != 3 {
		t.Fatalf("second package metric wrong: %+v", ms[4])
	}
	if len(notes) != 2 {
		t.Fatalf("want the NOTE and SKIP lines kept, got %q", notes)
	}
}
