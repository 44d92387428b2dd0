package apicheck

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FormatRecords renders records one per line, "METHOD PATH [BODY]" with "  # rejected: why"
// for an invalid request, after replacing each key of replace (e.g. a temp dir) by its value
// (e.g. "$DIR"); longer keys go first so nested paths stay whole. Bodies are compact JSON,
// so a key is only found in a body when JSON escapes none of its characters.
func FormatRecords(recs []Record, replace map[string]string) string {
	keys := make([]string, 0, len(replace))
	for k := range replace {
		if k != "" {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, replace[k])
	}
	rep := strings.NewReplacer(pairs...)
	var b strings.Builder
	for _, r := range recs {
		line := r.Method + " " + r.Path
		if len(r.Body) > 0 {
			line += " " + string(r.Body)
		}
		if r.Error != "" {
			// The checker's message repeats method and path; the line already has them.
			line += "  # rejected: " + strings.TrimPrefix(r.Error, r.Method+" "+r.Path+": ")
		}
		b.WriteString(rep.Replace(line))
		b.WriteByte('\n')
	}
	return b.String()
}

// CompareGolden compares the request sequence got with goldenPath (see FormatRecords for
// the format and replace). With update it rewrites the golden file instead; callers pass
// their own -update flag (test/e2e already defines one, and a second would clash in the
// same test binary). A mismatch fails t with a line diff.
func CompareGolden(t testing.TB, got []Record, goldenPath string, replace map[string]string, update bool) {
	t.Helper()
	text := FormatRecords(got, replace)
	if update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		if err := os.WriteFile(goldenPath, []byte(text), 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if text != string(want) {
		t.Errorf("requests differ from %s (-want +got; rerun with -update if the change is intended):\n%s", goldenPath, lineDiff(string(want), text))
	}
}

// lineDiff is a longest-common-subsequence line diff: " " kept, "-" want only, "+" got only.
func lineDiff(want, got string) string {
	a, b := splitLines(want), splitLines(got)
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&out, "  %s\n", a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+ %s\n", b[j])
			j++
		default:
			fmt.Fprintf(&out, "- %s\n", a[i])
			i++
		}
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if !strings.HasSuffix(s, "\n") {
		lines[len(lines)-1] += " (no newline at end)"
	}
	return lines
}
