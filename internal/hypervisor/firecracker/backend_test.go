package firecracker

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
)

func TestStartConsoleGracefulStop(t *testing.T) {
	b := newBackend()
	log := requestLog(t)
	vm := newVM(t, true)
	p := start(t, b, vm.spec, func() (hypervisor.Process, error) { return b.Start(context.Background(), vm.spec) })
	ref := refOf(vm.spec, p)
	if !b.Alive(ref) {
		t.Fatal("VM not alive after Start")
	}
	// The command line, as launched, and the drive links FC resolves in its run dir.
	if got := readAll(t, cmdlinePath(vm.spec.RunDir)); !strings.Contains(got, "--api-sock "+apiPath(vm.spec.RunDir)+" --log-path "+logPath(vm.spec.LogDir)+" --level Warning --id "+vm.spec.ID) {
		t.Errorf("cmdline %q", got)
	}
	for i, d := range vm.spec.Disks {
		if target, err := os.Readlink(filepath.Join(vm.spec.RunDir, driveLink(i))); err != nil || target != d.Path {
			t.Errorf("drive link %d → %q (%v), want %s", i, target, err, d.Path)
		}
	}
	// Console: the boot banner reaches the log, input comes back through the relay.
	eventually(t, "boot banner in console log", func() bool { return fileContains(b.ConsoleLog(vm.spec.LogDir), "booted (2 vCPUs, 256 MiB") })
	conn, err := net.Dial("unix", b.ConsoleSocket(ref))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping-fc-console\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, conn, "ping-fc-console")
	// A later command finds the process without its PID file (a launch killed before recording).
	if err := os.Rename(pidPath(vm.spec.RunDir), pidPath(vm.spec.RunDir)+".away"); err != nil {
		t.Fatal(err)
	}
	if found, ok := b.Find(hypervisor.VMRef{ID: vm.spec.ID, RunDir: vm.spec.RunDir}); !ok || found.PID != p.PID || found.StartTime != p.StartTime {
		t.Errorf("Find without a PID file = %+v, %v; want pid %d", found, ok, p.PID)
	}
	if err := os.Rename(pidPath(vm.spec.RunDir)+".away", pidPath(vm.spec.RunDir)); err != nil {
		t.Fatal(err)
	}
	cmdline := strings.NewReplacer(vm.root, "$VM", standin, "firecracker").Replace(readAll(t, cmdlinePath(vm.spec.RunDir)))
	cmdline = strings.ReplaceAll(cmdline, vm.spec.ID, "$ID")
	goldenText(t, "launch.golden", cmdline)
	// No agent in the stand-in's guest: the vsock answers, the agent does not.
	if ok, err := b.AgentConnected(context.Background(), ref); ok || err != nil {
		t.Errorf("AgentConnected = %v, %v; want false (nothing listens in the guest)", ok, err)
	}
	if _, err := os.Stat(vsockPath(vm.spec.RunDir)); err != nil {
		t.Errorf("vsock socket: %v", err)
	}

	if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	assertGone(t, b, vm.spec, p)
	eventually(t, "reboot line in console log", func() bool { return fileContains(b.ConsoleLog(vm.spec.LogDir), "reboot: Restarting system") })
	golden(t, records(t, log), "start-graceful-stop.golden", map[string]testVM{"VM": vm}, nil)
}

func TestForceStopAndCrashedVM(t *testing.T) {
	b := newBackend()
	log := requestLog(t)
	vm := newVM(t, false)
	p := start(t, b, vm.spec, func() (hypervisor.Process, error) { return b.Start(context.Background(), vm.spec) })
	if err := b.Stop(context.Background(), refOf(vm.spec, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatalf("force stop: %v", err)
	}
	assertGone(t, b, vm.spec, p)
	golden(t, records(t, log), "start-force-stop.golden", map[string]testVM{"VM": vm}, nil)

	// A VM whose FC died (kill -9): Stop signals nobody and cleans up; a later PID-less ref too.
	p = start(t, b, vm.spec, func() (hypervisor.Process, error) { return b.Start(context.Background(), vm.spec) })
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "killed stand-in to exit", func() bool { return !b.Alive(refOf(vm.spec, p)) })
	if err := b.Stop(context.Background(), hypervisor.VMRef{ID: vm.spec.ID, RunDir: vm.spec.RunDir}, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop crashed VM: %v", err)
	}
	assertGone(t, b, vm.spec, p)
}

func TestForeignPIDIsNeverSignalled(t *testing.T) {
	b := newBackend()
	vm := newVM(t, false)
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	// The PID file names an unrelated live process.
	if err := os.WriteFile(pidPath(vm.spec.RunDir), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := hypervisor.VMRef{ID: vm.spec.ID, RunDir: vm.spec.RunDir}
	if b.Alive(ref) {
		t.Fatal("a foreign process counts as the VM's hypervisor")
	}
	if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := sleeper.Process.Signal(unix.Signal(0)); err != nil {
		t.Fatalf("the foreign process was signalled: %v", err)
	}
	if _, err := os.Stat(pidPath(vm.spec.RunDir)); err == nil {
		t.Error("pid file left behind")
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	b := newBackend()
	log := requestLog(t)
	vm := newVM(t, true)
	// FC refuses a TAP that does not exist in its netns: the launch is undone.
	vm.spec.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01", TapName: "fcnotap0"}}
	_, err := b.Start(context.Background(), vm.spec)
	if err == nil || !strings.Contains(err.Error(), "PUT /network-interfaces/eth0") || !strings.Contains(err.Error(), "fcnotap0") {
		t.Fatalf("Start with a missing TAP = %v, want the API call and the TAP named", err)
	}
	assertGone(t, b, vm.spec, hypervisor.Process{})
	if _, err := os.Stat(consolePath(vm.spec.RunDir)); err == nil {
		t.Error("console socket left behind")
	}
	if pids := hvtest.ProcessesMentioning(vm.spec.RunDir); len(pids) > 0 {
		t.Errorf("processes left: %v", pids)
	}
	records(t, log)
}

func TestValidateRefusesWhatFirecrackerCannotRun(t *testing.T) {
	b := newBackend()
	for _, tc := range []struct {
		name, want string
		edit       func(*hypervisor.VMSpec)
	}{
		{"odd vCPUs", "1 or an even number", func(s *hypervisor.VMSpec) { s.CPUs = 3 }},
		{"bzImage", "FC requires uncompressed ELF kernel", func(s *hypervisor.VMSpec) {
			s.Boot.Kernel = filepath.Join(s.LogDir, "bzImage")
			_ = os.WriteFile(s.Boot.Kernel, []byte("MZ not an ELF"), 0o600)
		}},
		{"UEFI", "cannot boot UEFI firmware", func(s *hypervisor.VMSpec) {
			s.Boot = hypervisor.Boot{Firmware: kernel, FirmwareVars: kernel}
		}},
		{"Windows", "does not support Windows", func(s *hypervisor.VMSpec) { s.Windows = true }},
		{"qcow2", "qcow2", func(s *hypervisor.VMSpec) { s.Disks[1].Format = hypervisor.FormatQcow2 }},
		{"multi-queue", "one queue pair", func(s *hypervisor.VMSpec) {
			s.NICs = []hypervisor.NIC{{TapName: "tap0", Queues: 2}}
		}},
		{"queue size", "queue size", func(s *hypervisor.VMSpec) { s.DiskQueueSize = 2048 }},
		{"arm64", "amd64 guests only", func(s *hypervisor.VMSpec) { s.Arch = "arm64" }},
		{"bad id", "instance ids", func(s *hypervisor.VMSpec) { s.ID = "a_b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := newVM(t, false)
			tc.edit(&vm.spec)
			_, err := b.Start(context.Background(), vm.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(vm.spec.RunDir); len(entries) != 0 {
				t.Errorf("refused start left %d files in the run dir", len(entries))
			}
		})
	}
}

func TestAvailableChecksBinaryAndVersion(t *testing.T) {
	if err := newBackend().Available(); err != nil {
		t.Fatalf("Available with the stand-in: %v", err)
	}
	t.Setenv("COCOON_STANDIN_VERSION", "1.13.2")
	err := newBackend().Available()
	if err == nil || !strings.Contains(err.Error(), "v1.13") || !strings.Contains(err.Error(), "v1.14 or newer") {
		t.Fatalf("Available with v1.13.2 = %v, want a too-old error naming both versions", err)
	}
	err = New(Options{Binary: filepath.Join(t.TempDir(), "firecracker")}).Available()
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Available without a binary = %v", err)
	}
}

func TestDebugCommand(t *testing.T) {
	b := newBackend()
	vm := newVM(t, false)
	vm.spec.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01", TapName: "tap-debug0"}}
	got, err := b.DebugCommand(vm.spec)
	if err != nil {
		t.Fatal(err)
	}
	got = strings.NewReplacer(vm.root, "$VM", kernel, "$KERNEL", standin, "firecracker", vm.spec.ID, "$ID").Replace(got)
	goldenText(t, "debug.golden", got)
}

// goldenText compares got with testdata/name (rewritten with -update).
func goldenText(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("differs from %s (rerun with -update if intended):\n%s", path, got)
	}
}

func TestConformance(t *testing.T) {
	hvtest.Conformance(t, hvtest.Target{
		New:  func(testing.TB) hypervisor.Backend { return newBackend() },
		Spec: func(tb testing.TB) hypervisor.VMSpec { return newVM(tb.(*testing.T), true).spec },
		Booted: func(tb testing.TB, spec hypervisor.VMSpec) {
			eventually(tb.(*testing.T), "boot banner", func() bool { return fileContains(consoleLogPath(spec.LogDir), spec.ID+" booted") })
		},
	})
}
