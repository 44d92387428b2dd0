package qemu

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
)

// shellSafe matches words a POSIX shell reads back unchanged without quotes.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes one word for a POSIX shell. Hand-written: it is five lines, and no module
// already in go.mod offers it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin renders binary and args as one shell command. Multi-line puts each option with
// its value on its own continuation line, for people to read and edit.
func shellJoin(binary string, args []string, multiLine bool) string {
	var sb strings.Builder
	sb.WriteString(shellQuote(binary))
	for _, a := range args {
		if multiLine && strings.HasPrefix(a, "-") {
			sb.WriteString(" \\\n ")
		}
		sb.WriteString(" ")
		sb.WriteString(shellQuote(a))
	}
	return sb.String()
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// lastLine returns the last non-empty line written to a log after offset: QEMU's own reason
// for failing to start ("could not load kernel …").
func lastLine(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "no output"
	}
	defer f.Close()
	const window = 64 << 10
	offset = max(offset, fileSize(path)-window)
	data, err := io.ReadAll(io.NewSectionReader(f, offset, window))
	if err != nil {
		return "no output"
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if last := strings.TrimSpace(string(lines[len(lines)-1])); last != "" {
		return last
	}
	return "no output"
}
