package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
)

func refOf(spec hypervisor.VMSpec, p hypervisor.Process) hypervisor.VMRef {
	return hypervisor.VMRef{ID: spec.ID, RunDir: spec.RunDir, PID: p.PID, StartTime: p.StartTime}
}

// startVM starts spec and makes sure the VM is gone when the test ends, even on failure.
func startVM(t *testing.T, b *Backend, spec hypervisor.VMSpec) hypervisor.Process {
	t.Helper()
	p, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(context.Background(), refOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return p
}

func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func assertGone(t *testing.T, spec hypervisor.VMSpec) {
	t.Helper()
	// The console relay ends by itself once QEMU is gone; the process check below would see
	// one that did not.
	if err := relay.Wait(consoleLogPath(spec.LogDir), time.Minute); err != nil {
		t.Error(err)
	}
	for _, p := range []string{qmpPath(spec.RunDir), consolePath(spec.RunDir), pidPath(spec.RunDir),
		ramLink(spec.RunDir), ramPath(spec), layoutPath(spec.RunDir)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists after stop", p)
		}
	}
	if pids := hvtest.ProcessesMentioning(spec.RunDir); len(pids) > 0 {
		t.Errorf("processes still running for %s: %v", spec.RunDir, pids)
	}
}

// TestBootDevicesAndGracefulStopFromAnotherProcess boots a VM with disks, a multi-queue NIC
// and a balloon, checks the guest sees them, then stops it the way a later CLI process would
// (a fresh Backend and only the recorded VMRef): through the ACPI power button.
func TestBootDevicesAndGracefulStopFromAnotherProcess(t *testing.T) {
	hvtest.RequireQEMU(t)
	_, tapFiles := hvtest.Tap(t, 2)
	spec := hvtest.Spec(t, hvtest.Build(t))
	spec.CPUs = 2
	spec.Balloon = true
	spec.Disks = []hypervisor.Disk{
		{Path: sparseFile(t, 8<<20), Format: hypervisor.FormatRaw, ReadOnly: true, Serial: "cocoon-layer0", Role: "layer"},
		{Path: sparseFile(t, 16<<20), Format: hypervisor.FormatRaw, Serial: "cocoon-cow", DirectIO: true, Role: "cow"},
	}
	mac := "02:00:00:" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2)
	spec.NICs = []hypervisor.NIC{{MAC: mac, Files: tapFiles, MTU: 1400}}
	spec.Boot.Cmdline = hvtest.Cmdline(2, 1)

	b := New(Options{})
	p := startVM(t, b, spec)
	if p.Accel != accelTCG && p.Accel != accelKVM {
		t.Errorf("Process.Accel = %q", p.Accel)
	}
	out := hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.Ready)
	for _, want := range []string{
		"HVTEST-DISK vda serial=cocoon-layer0 ro=1 queues=2",
		"HVTEST-DISK vdb serial=cocoon-cow ro=0 queues=2",
		fmt.Sprintf("HVTEST-NIC eth0 mac=%s queues=2 mtu=1400", mac),
		"HVTEST-RNG virtio_rng.0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "HVTEST-ERROR") {
		t.Errorf("guest reported an error:\n%s", out)
	}

	pidData, _ := os.ReadFile(pidPath(spec.RunDir))
	if strings.TrimSpace(string(pidData)) != strconv.Itoa(p.PID) {
		t.Errorf("pid file holds %q, want %d", pidData, p.PID)
	}
	if cmd, _ := os.ReadFile(cmdlinePath(spec.RunDir)); !strings.HasPrefix(string(cmd), "qemu-system-x86_64 ") {
		t.Errorf("cmdline file: %q", cmd)
	}
	waitBalloon(t, spec)

	other := New(Options{}) // a later CLI process: it only has the record
	ref := refOf(spec, p)
	if !other.Alive(ref) {
		t.Fatal("Alive = false for a running VM")
	}
	if err := other.Stop(context.Background(), ref, hypervisor.StopOptions{Timeout: hvtest.BootTimeout}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.PowerButton)
	if log, _ := os.ReadFile(logPath(spec.LogDir)); strings.Contains(string(log), "terminating on signal") {
		t.Errorf("qemu was signalled instead of powering off:\n%s", log)
	}
	if other.Alive(ref) {
		t.Error("Alive = true after Stop")
	}
	assertGone(t, spec)
}

// waitBalloon waits for the guest's balloon driver to reach the 75 % target set at start.
func waitBalloon(t *testing.T, spec hypervisor.VMSpec) {
	t.Helper()
	want := spec.MemoryBytes * 3 / 4
	var got struct {
		Actual int64 `json:"actual"`
	}
	deadline := time.Now().Add(hvtest.BootTimeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := dialQMP(ctx, qmpPath(spec.RunDir))
		if err == nil {
			err = c.execute("query-balloon", nil, &got)
			c.Close()
		}
		cancel()
		if err != nil {
			t.Fatalf("query-balloon: %v", err)
		}
		if got.Actual == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("guest RAM after balloon = %d, want %d", got.Actual, want)
}

// TestForceStopAndCrashedVM: Force skips the power button; a VM killed behind our back is
// reported dead, and stopping it only cleans up.
// TestForeignPIDIsNeverSignalled: a recorded PID that now belongs to another process, even one
// whose command line looks like this VM's QEMU, is not the VM.
func TestForeignPIDIsNeverSignalled(t *testing.T) {
	runDir := t.TempDir()
	spawn := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // one group: cleanup kills its children too
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		return cmd
	}
	sleeper := spawn("sleep", "100")
	// argv[0] and the QMP socket argument of this VM's QEMU, but a different start time.
	impostor := spawn("bash", "-c", `exec -a qemu-system-x86_64 bash -c 'sleep 100; true' "$0"`,
		"unix:"+qmpPath(runDir)+",server=on,wait=off")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// wait until the outer bash has exec'ed into its renamed self
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", impostor.Process.Pid))
		if strings.HasPrefix(string(cmdline), "qemu-system-x86_64\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("impostor never renamed itself: %q", cmdline)
		}
	}
	impostorStart, err := hypervisor.StartTime(impostor.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	b := New(Options{})
	cases := map[string]hypervisor.VMRef{
		"unrelated process":   {ID: "vm1", RunDir: runDir, PID: sleeper.Process.Pid},
		"start time mismatch": {ID: "vm1", RunDir: runDir, PID: impostor.Process.Pid, StartTime: impostorStart + 1},
		"other VM's socket":   {ID: "vm2", RunDir: t.TempDir(), PID: impostor.Process.Pid},
	}
	if err := os.WriteFile(pidPath(runDir), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases["pid file names an unrelated process"] = hypervisor.VMRef{ID: "vm1", RunDir: runDir}
	for name, ref := range cases {
		if b.Alive(ref) {
			t.Errorf("%s: Alive = true", name)
		}
		if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("%s: Stop: %v", name, err)
		}
	}
	for _, cmd := range []*exec.Cmd{sleeper, impostor} {
		if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
			t.Errorf("pid %d (%s) was signalled: %v", cmd.Process.Pid, cmd.Path, err)
		}
	}
	// The ownership check does accept the impostor when everything matches, which shows the
	// cases above failed for the reason they name.
	if !b.Alive(hypervisor.VMRef{ID: "vm1", RunDir: runDir, PID: impostor.Process.Pid, StartTime: impostorStart}) {
		t.Error("matching impostor not recognised: the negative cases prove nothing")
	}
}

// TestConformance runs the suite every backend passes.
func TestConformance(t *testing.T) {
	hvtest.RequireQEMU(t)
	g := hvtest.Build(t)
	hvtest.Conformance(t, hvtest.Target{
		New:  func(testing.TB) hypervisor.Backend { return New(Options{}) },
		Spec: func(t testing.TB) hypervisor.VMSpec { return hvtest.Spec(t, g) },
		Booted: func(t testing.TB, spec hypervisor.VMSpec) {
			hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.Ready)
		},
	})
}

// TestDebugCommandRuns runs the printed command through a shell and sees the guest boot,
// with its NIC attached to the TAP by name.
func TestDebugCommandRuns(t *testing.T) {
	hvtest.RequireQEMU(t)
	tapName, tapFiles := hvtest.Tap(t, 2)
	for _, f := range tapFiles {
		f.Close() // the TAP is persistent; QEMU opens its own queues by name
	}
	spec := hvtest.Spec(t, hvtest.Build(t))
	spec.CPUs = 2
	mac := "02:00:00:" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2)
	spec.NICs = []hypervisor.NIC{{MAC: mac, TapName: tapName, Queues: 2}}
	spec.Boot.Cmdline = hvtest.Cmdline(0, 1) + " it's=quoted"

	cmdText, err := New(Options{}).DebugCommand(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("debug command:\n%s", cmdText)
	if !strings.Contains(cmdText, "ifname="+tapName) || strings.Contains(cmdText, "fds=") {
		t.Errorf("TAP not named in the debug command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), hvtest.BootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+cmdText)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = New(Options{}).removeRuntime(spec.RunDir) })
	out := hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.Ready)
	if want := fmt.Sprintf("HVTEST-NIC eth0 mac=%s queues=2", mac); !strings.Contains(out, want) {
		t.Errorf("console lacks %q:\n%s", want, out)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"); !strings.Contains(string(cmdline), "it's=quoted") {
		t.Errorf("kernel cmdline quoting lost: %q", cmdline)
	}
}
