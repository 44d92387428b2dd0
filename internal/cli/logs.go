package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
)

func (a *app) vmLogs() *cobra.Command {
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs [flags] VM",
		Short: "Print the VM's console log (any guest; no agent needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			p, _, err := e.ConsoleLogPath(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printLog(cmd.Context(), a.stdout, p, tail, follow)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the console writes (until interrupted)")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "print only the last N lines (-1 = all)")
	return cmd
}

// printLog copies the log (its last n lines when n >= 0), then follows it when asked.
func printLog(ctx context.Context, w io.Writer, p string, n int, follow bool) error {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil // the VM never started: no console output yet
		}
		for err != nil && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			f, err = os.Open(p)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("open console log: %w", err)
	}
	defer f.Close()
	if n >= 0 {
		if err := seekLastLines(f, n); err != nil {
			return err
		}
	}
	r := bufio.NewReader(f)
	for {
		if _, err := io.Copy(w, r); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// seekLastLines positions f at the start of its last n lines.
func seekLastLines(f *os.File, n int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if n == 0 {
		_, err := f.Seek(size, io.SeekStart)
		return err
	}
	pos := size
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err == nil && last[0] == '\n' {
		pos-- // the newline ending the log does not start a line
	}
	buf := make([]byte, 64<<10)
	for count := 0; pos > 0; {
		start := max(pos-int64(len(buf)), 0)
		chunk := buf[:pos-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] == '\n' {
				if count++; count == n {
					_, err := f.Seek(start+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
		pos = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
