// Package logging sets up the CLI's log/slog logger: human text (or JSON) on stderr, or a
// rotated log file. stdout is never used, so it carries only command output.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/cocoonstack/cocoon/internal/config"
)

// Setup installs the default slog logger described by c and returns a closer for the log file.
func Setup(c config.Log, stderr io.Writer) (io.Closer, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	out, closer := stderr, io.Closer(nopCloser{})
	if c.File != "" {
		if err := os.MkdirAll(filepath.Dir(c.File), 0o750); err != nil {
			return nil, fmt.Errorf("create log file dir for %s: %w (fix log.file)", c.File, err)
		}
		lj := &lumberjack.Logger{Filename: c.File, MaxSize: c.MaxSizeMB, MaxAge: c.MaxAgeDays, MaxBackups: c.MaxBackups}
		out, closer = lj, lj
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.Format == "json" {
		h = slog.NewJSONHandler(out, opts)
	} else {
		h = slog.NewTextHandler(out, opts)
	}
	slog.SetDefault(slog.New(h))
	return closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
