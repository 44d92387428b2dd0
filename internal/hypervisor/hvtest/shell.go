package hvtest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// Shell runs commands in the guest's console shell: it types into the serial console's unix
// socket and reads the answer from the console log (which holds guest output only).
type Shell struct {
	Socket, Log string
}

// Run runs cmd in the guest and returns its output, trimmed. The output is framed by markers
// that the console's echo of the typed line cannot match (the quotes split them there).
func (s Shell) Run(t testing.TB, cmd string) string {
	t.Helper()
	deadline := time.Now().Add(BootTimeout)
	for attempt := 0; ; attempt++ {
		// Input typed while the guest's shell is still starting is echoed by the tty and then
		// partly flushed when the shell sets up its terminal: if no answer comes, clear the
		// line (^C) and type the command again.
		out, data, ok := s.try(t, cmd, attempt > 0, 30*time.Second)
		if ok {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest did not answer %q within %v; console ends with:\n%s", cmd, BootTimeout, tail(data, 2000))
		}
	}
}

// try types cmd once and waits up to wait for its framed output.
func (s Shell) try(t testing.TB, cmd string, clear bool, wait time.Duration) (out, log string, ok bool) {
	t.Helper()
	conn, err := net.Dial("unix", s.Socket)
	if err != nil {
		t.Fatalf("connect to guest console: %v", err)
	}
	defer conn.Close()
	nonce := RandomID(8)
	begin, end := "@@B"+nonce, "@@E"+nonce
	// Guest output can still be arriving from before: read only what follows our command.
	offset := int64(0)
	if fi, err := os.Stat(s.Log); err == nil {
		offset = fi.Size()
	}
	// One line (the shell echoes each line it reads, which would land inside the output);
	// eval lets cmd end in & or contain separators of its own.
	quoted := "'" + strings.ReplaceAll(cmd, "'", `'\''`) + "'"
	line := `echo "@@"B` + nonce + `; eval ` + quoted + `; echo "@@"E` + nonce + "\n"
	if clear {
		line = "\x03" + line
	}
	if _, err := conn.Write([]byte(line)); err != nil {
		t.Fatalf("type into guest console: %v", err)
	}
	deadline := time.Now().Add(wait)
	for {
		data, _ := os.ReadFile(s.Log)
		if int64(len(data)) >= offset {
			out := string(data[offset:])
			if i := strings.Index(out, begin+"\r\n"); i >= 0 {
				rest := out[i+len(begin)+2:]
				if j := strings.Index(rest, end); j >= 0 {
					return strings.TrimSpace(strings.ReplaceAll(rest[:j], "\r", "")), "", true
				}
			}
		}
		if time.Now().After(deadline) {
			return "", string(data), false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
