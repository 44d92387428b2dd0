package hypervisor

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
)

// shellSafe matches words a POSIX shell reads back unchanged without quotes.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote quotes one word for a POSIX shell. Hand-written: it is five lines, and no module
// already in go.mod offers it.
func ShellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin renders binary and args as one shell command. Multi-line puts each option with
// its value on its own continuation line, for people to read and edit.
func ShellJoin(binary string, args []string, multiLine bool) string {
	var sb strings.Builder
	sb.WriteString(ShellQuote(binary))
	for _, a := range args {
		if multiLine && strings.HasPrefix(a, "-") {
			sb.WriteString(" \\\n ")
		}
		sb.WriteString(" ")
		sb.WriteString(ShellQuote(a))
	}
	return sb.String()
}

// FileSize is the size of path, 0 when it cannot be read.
func FileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LastLine returns the last non-empty line written to a log after offset: the hypervisor's own
// reason for failing to start ("could not load kernel …").
func LastLine(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "no output"
	}
	defer f.Close()
	const window = 64 << 10
	offset = max(offset, FileSize(path)-window)
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
