package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"--api-sock", "/r/api.sock", "--log-path=/l/fc.log", "--level", "Warning", "--id", "vm-1", "--show-level"})
	if err != nil || o.apiSock != "/r/api.sock" || o.logPath != "/l/fc.log" || o.id != "vm-1" || o.level != "Warning" {
		t.Fatalf("parseArgs = %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "wasn't expected"},
		{[]string{"api.sock"}, "wasn't expected"},
		{[]string{"--api-sock"}, "requires a value"},
		{[]string{"--level", "loud"}, "invalid value for --level"},
		{[]string{"--id", "a_b"}, "invalid instance ID"},
		{[]string{"--id", strings.Repeat("a", 65)}, "invalid instance ID"},
		{[]string{"--id", "a", "--id", "b"}, "more than once"},
		{[]string{"--version=1"}, "does not take a value"},
		{[]string{"--http-api-max-payload-size", "big"}, "invalid value"},
	} {
		if _, err := parseArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The binary itself: --version (overridable), a bad flag exits 1, a missing log file too.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "firecracker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "Firecracker v"+version+"\n") {
		t.Fatalf("--version = %q, %v", out, err)
	}
	cmd := exec.Command(bin, "--version")
	cmd.Env = append(os.Environ(), "COCOON_STANDIN_VERSION=1.2.3")
	if out, _ := cmd.Output(); !strings.HasPrefix(string(out), "Firecracker v1.2.3\n") {
		t.Fatalf("--version with override = %q", out)
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"--nope"}, {"--api-sock", filepath.Join(dir, "api.sock"), "--log-path", filepath.Join(dir, "missing.log")}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "error: ") {
			t.Errorf("%q: exit %v, output %q; want exit 1 with an error", args, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "api.sock")); err == nil {
		t.Error("a refused launch left its API socket")
	}
}
