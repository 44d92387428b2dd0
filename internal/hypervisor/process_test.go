package hypervisor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spawnStubborn starts a shell that ignores SIGTERM, carrying marker on its command line.
func spawnStubborn(t *testing.T, marker string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", `trap "" TERM; while :; do sleep 1; done`, marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	// Wait until the shell ignores SIGTERM (SigIgn bit 15-1 in /proc/<pid>/status).
	for deadline := time.Now().Add(10 * time.Second); !ignoresTERM(cmd.Process.Pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("shell never set its SIGTERM trap")
		}
	}
	return cmd
}

func ignoresTERM(pid int) bool {
	status, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && v&(1<<(syscall.SIGTERM-1)) != 0
		}
	}
	return false
}

func TestEscalateKillsAProcessIgnoringSIGTERM(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "api.sock")
	cmd := spawnStubborn(t, marker)
	start, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(VMRef{ID: "vm", PID: cmd.Process.Pid, StartTime: start}, Owner{Binary: "/bin/sh", Marker: marker})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer h.Close()

	requested := false
	refuse := func(context.Context) error { requested = true; return errors.New("no API") }
	if err := Escalate(context.Background(), h, refuse, StopOptions{TermGrace: 200 * time.Millisecond}); err != nil {
		t.Fatalf("Escalate: %v", err)
	}
	if !requested {
		t.Error("graceful request skipped without Force")
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process ended with %v, want SIGKILL", cmd.ProcessState)
	}
}

func TestEscalateForceSkipsRequestAndHonoursContext(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "api.sock")
	cmd := spawnStubborn(t, marker)
	h, err := Open(VMRef{ID: "vm", PID: cmd.Process.Pid}, Owner{Binary: "sh", Marker: marker})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := func(context.Context) error { t.Error("graceful request made despite Force"); return nil }
	err = Escalate(ctx, h, called, StopOptions{Force: true, TermGrace: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Escalate with a cancelled context: %v", err)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("process gone although SIGTERM is ignored and the wait was cancelled: %v", err)
	}
}

// TestStartTimeParsesOddNames: the command name in /proc/<pid>/stat may hold spaces and ')'.
func TestStartTimeParsesOddNames(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep binary not found")
	}
	odd := filepath.Join(t.TempDir(), "a) (b c")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if !strings.Contains(string(stat), "(a) (b c)") {
		t.Skipf("kernel did not keep the odd name: %s", stat)
	}
	got, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	self, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The child started after us; a wrong field would be 0 (utime) or huge (vsize).
	if got < self || got > self+100*3600 {
		t.Errorf("start time %d, ours %d", got, self)
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	if pid, err := ReadPIDFile(filepath.Join(dir, "none.pid")); pid != 0 || err != nil {
		t.Errorf("missing file: %d, %v", pid, err)
	}
	bad := filepath.Join(dir, "bad.pid")
	_ = os.WriteFile(bad, []byte("12x\n"), 0o600)
	if _, err := ReadPIDFile(bad); err == nil || !strings.Contains(err.Error(), "not a pid") {
		t.Errorf("garbage pid file: %v", err)
	}
	good := filepath.Join(dir, "good.pid")
	_ = os.WriteFile(good, []byte("4242\n"), 0o600)
	if pid, err := ReadPIDFile(good); pid != 4242 || err != nil {
		t.Errorf("good pid file: %d, %v", pid, err)
	}
}
