package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printJSON writes v as 2-space indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes a header (unless nil) and rows aligned with tabwriter (padding 2, like docker).
// tabwriter emits every cell and pad as its own write: buffer them into few write calls.
func printTable(w io.Writer, header []string, rows [][]string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// checkFormat validates a --format/-o value for list commands.
func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return fmt.Errorf("invalid --format %q: use table or json", f)
	}
	return nil
}
