package cli

import (
	"fmt"
	"strings"
	"testing"
)

// countingWriter counts Write calls (each is one write(2) on a terminal or pipe).
type countingWriter struct {
	calls int
	strings.Builder
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.Builder.Write(p)
}

// `vm list` prints 1000 rows in a handful of writes, not one per cell and pad (tabwriter's
// own output is unbuffered: about 18 writes a row).
func TestPrintTableIsBuffered(t *testing.T) {
	var rows [][]string
	for i := range 1000 {
		rows = append(rows, []string{fmt.Sprintf("ID%024d", i), fmt.Sprintf("vm%d", i), "created", "1", "512MiB", "-", "example/tiny:1", "2026-11-30 21:00:00"})
	}
	w := &countingWriter{}
	if err := printTable(w, []string{"ID", "NAME", "STATE", "CPU", "MEMORY", "IP", "IMAGE", "CREATED"}, rows); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(w.String(), "\n"); lines != 1001 {
		t.Fatalf("%d lines printed, want 1001", lines)
	}
	if max := len(w.String())/(64<<10) + 2; w.calls > max {
		t.Fatalf("%d write calls for %d bytes, want at most %d (output must be buffered)", w.calls, len(w.String()), max)
	}
}
