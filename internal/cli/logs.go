package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
)

func (a *app) vmLogs() *cobra.Command {
	var follow bool
	var tail int
	var since string
	cmd := &cobra.Command{
		Use:   "logs [flags] VM",
		Short: "Print the VM's console log (any guest; no agent needed)",
		Long: `Print the VM's console log: everything its serial console printed, across restarts
(any guest; no agent needed).

--since T prints only output logged at or after T: an RFC 3339 time
(2026-11-30T21:00:00Z), unix seconds (1764536400 or 1764536400.25), or a duration
before now (10m, 1h30m). It combines with --tail (the last N lines of that) and
-f. Times come from the console's timestamp index, exact to about 10 ms; a VM
last started before cocoon kept one must be restarted first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var from time.Time
			if since != "" {
				var err error
				if from, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			var p string
			var offset int64
			if since == "" {
				p, _, err = e.ConsoleLogPath(cmd.Context(), args[0])
			} else {
				var vm *engine.VM
				p, offset, vm, err = e.ConsoleLogSince(cmd.Context(), args[0], from)
				if errors.Is(err, engine.ErrNoConsoleTimes) {
					return fmt.Errorf("--since needs console timestamps, which VM %s (started before cocoon recorded them) does not have: restart it", vm.Name)
				}
			}
			if err != nil {
				return err
			}
			return printLog(cmd.Context(), a.stdout, p, offset, tail, follow)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the console writes (until interrupted)")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "print only the last N lines (-1 = all)")
	cmd.Flags().StringVar(&since, "since", "", "print only output logged at or after this time (RFC 3339, unix seconds, or a duration before now such as 10m)")
	return cmd
}

// parseSince reads a --since value as docker does: an RFC 3339 time, unix seconds (with an
// optional fraction), or a duration counted back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if sec, frac, ok := splitUnix(s); ok {
		return time.Unix(sec, frac), nil
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: use an RFC 3339 time (2026-11-30T21:00:00Z), unix seconds (1764536400.5) or a duration before now (10m)", s)
}

// splitUnix parses "seconds[.fraction]" (up to nanoseconds) exactly, without float rounding.
func splitUnix(s string) (int64, int64, bool) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" || strings.Trim(whole, "0123456789") != "" || len(whole) > 12 {
		return 0, 0, false
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if !hasFrac {
		return sec, 0, true
	}
	if frac == "" || len(frac) > 9 || strings.Trim(frac, "0123456789") != "" {
		return 0, 0, false
	}
	ns, _ := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	return sec, ns, true
}

// printLog copies the log from offset (its last n lines from there when n >= 0), then follows
// it when asked.
func printLog(ctx context.Context, w io.Writer, p string, offset int64, n int, follow bool) error {
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
		err = seekLastLines(f, n, offset)
	} else {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		return err
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

// seekLastLines positions f at the start of its last n lines, but not before floor.
func seekLastLines(f *os.File, n int, floor int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	floor = min(max(floor, 0), size)
	if n == 0 {
		_, err := f.Seek(size, io.SeekStart)
		return err
	}
	pos := size
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err == nil && last[0] == '\n' && pos > floor {
		pos-- // the newline ending the log does not start a line
	}
	buf := make([]byte, 64<<10)
	for count := 0; pos > floor; {
		start := max(pos-int64(len(buf)), floor)
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
	_, err = f.Seek(floor, io.SeekStart)
	return err
}
