package hypervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// thpEnabled reads the THP_enabled line of a process's status (0 once PR_SET_THP_DISABLE is set).
func thpEnabled(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "THP_enabled:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Skip("this kernel does not report THP_enabled")
	return ""
}

// A process launched with NoHugePages keeps the flag across its exec; the launching process
// and the next launch without it do not.
func TestLaunchWithoutHugePages(t *testing.T) {
	dir := t.TempDir()
	for _, noHuge := range []bool{true, false} {
		child, err := Launch(LaunchOptions{Binary: "sleep", Args: []string{"60"}, LogPath: filepath.Join(dir, "log"),
			PIDPath: filepath.Join(dir, "pid"), NoHugePages: noHuge})
		if err != nil {
			t.Fatal(err)
		}
		got := thpEnabled(t, child.PID)
		child.Kill()
		if want := map[bool]string{true: "0", false: "1"}[noHuge]; got != want {
			t.Errorf("NoHugePages %v: child THP_enabled %s, want %s", noHuge, got, want)
		}
		if v, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err != nil || v != 0 {
			t.Errorf("the launching process keeps THP disabled (%d, %v)", v, err)
		}
	}
}
