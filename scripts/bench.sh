#!/usr/bin/env bash
# make bench: the Go micro-benchmarks (default benchtime) and the end-to-end benchmarks (each
# b.N=1, they repeat inside) BENCH_COUNT times, gathered into one table and bench.json.
set -euo pipefail
GO=${GO:-go}
COUNT=${BENCH_COUNT:-3}
BENCH=${BENCH:-.}
{
	$GO test -run '^$' -bench "$BENCH" -count "$COUNT" -timeout 30m ./internal/... ./test/benchreport/...
	$GO test -run '^$' -bench "$BENCH" -benchtime 1x -count "$COUNT" -timeout 180m ./test/e2e/
} 2>&1 | $GO run ./test/benchreport -json bench.json
