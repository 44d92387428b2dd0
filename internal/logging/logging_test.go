package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/config"
)

func TestLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	c, err := Setup(config.Log{Level: "warn", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	slog.Info("hidden")
	slog.Warn("shown", "k", 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want only the warn line, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["msg"] != "shown" {
		t.Fatalf("not JSON or wrong message: %q (%v)", lines[0], err)
	}
}

// The rotation keys must reach lumberjack: with a 1 MiB limit and 2 backups, writing ~5 MiB
// leaves the live file plus at most two rotated ones.
func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cocoon.log")
	c, err := Setup(config.Log{Level: "info", Format: "text", File: file, MaxSizeMB: 1, MaxBackups: 2}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1000)
	for range 5000 {
		slog.Info(line)
	}
	c.Close()
	// lumberjack prunes old backups in a background goroutine: wait for it to settle.
	var entries []os.DirEntry
	for range 100 {
		if entries, _ = os.ReadDir(dir); len(entries) <= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(entries) < 2 || len(entries) > 3 {
		t.Fatalf("want live file + 1..2 backups, got %d files", len(entries))
	}
	st, err := os.Stat(file)
	if err != nil || st.Size() > 1<<20 {
		t.Fatalf("live log not rotated at 1 MiB: %v %v", st, err)
	}
}
