package apicheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// failRecorder is a real testing.TB whose Errorf/Fatalf are captured, to prove that
// CompareGolden fails on a mismatch.
type failRecorder struct {
	testing.TB
	msgs []string
}

func (f *failRecorder) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *failRecorder) Fatalf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	panic(f) // Fatalf must not return; recovered by capture.
}

func capture(t *testing.T, fn func(tb testing.TB)) []string {
	f := &failRecorder{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		fn(f)
	}()
	return f.msgs
}

func TestCompareGoldenRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "vm")
	recs := []Record{
		NewRecord("PUT", "/api/v1/vm.snapshot", []byte(`{"destination_url":"file://`+dir+`/snap"}`), nil),
		NewRecord("PUT", "/api/v1/vm.add-net", []byte(`{"tap":1}`), fmt.Errorf(`PUT /api/v1/vm.add-net: body field "tap": value must be a string`)),
		NewRecord("GET", "/api/v1/vm.info", nil, nil),
	}
	replace := map[string]string{tmp: "$TMP", dir: "$DIR"} // the longer key wins
	golden := filepath.Join(tmp, "testdata", "seq.golden")

	if msgs := capture(t, func(tb testing.TB) { CompareGolden(tb, recs, golden, replace, false) }); len(msgs) != 1 || !strings.Contains(msgs[0], "-update") {
		t.Fatalf("missing golden must fail and name -update: %q", msgs)
	}
	CompareGolden(t, recs, golden, replace, true)
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := `PUT /api/v1/vm.snapshot {"destination_url":"file://$DIR/snap"}
PUT /api/v1/vm.add-net {"tap":1}  # rejected: body field "tap": value must be a string
GET /api/v1/vm.info
`
	if string(data) != want {
		t.Fatalf("golden file:\n%s\nwant:\n%s", data, want)
	}
	CompareGolden(t, recs, golden, replace, false)

	// The same requests from another temp dir compare equal after replacement.
	tmp2 := t.TempDir()
	other := []Record{NewRecord("PUT", "/api/v1/vm.snapshot", []byte(`{"destination_url":"file://`+tmp2+`/vm/snap"}`), nil), recs[1], recs[2]}
	CompareGolden(t, other, golden, map[string]string{tmp2 + "/vm": "$DIR"}, false)

	// A changed sequence fails with a diff naming the lines.
	changed := []Record{recs[0], NewRecord("PUT", "/api/v1/vm.pause", nil, nil), recs[2]}
	msgs := capture(t, func(tb testing.TB) { CompareGolden(tb, changed, golden, replace, false) })
	if len(msgs) != 1 || !strings.Contains(msgs[0], "\n- PUT /api/v1/vm.add-net") || !strings.Contains(msgs[0], "\n+ PUT /api/v1/vm.pause\n") ||
		!strings.Contains(msgs[0], "\n  GET /api/v1/vm.info") {
		t.Fatalf("mismatch report: %q", msgs)
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc\n", "a\nc\nd\n")
	if got != "  a\n- b\n  c\n+ d\n" {
		t.Fatalf("diff:\n%s", got)
	}
	if got := lineDiff("a\n", "a"); !strings.Contains(got, "no newline") {
		t.Fatalf("trailing newline difference not shown:\n%s", got)
	}
}
