package hvtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Target is one backend under the conformance suite (containerd's snapshotter test suite is
// the model): every backend runs the same lifecycle checks through the Backend and
// Snapshotter interfaces alone.
type Target struct {
	New func(t testing.TB) hypervisor.Backend
	// Spec returns a bootable VMSpec with fresh run, log and memory dirs.
	Spec func(t testing.TB) hypervisor.VMSpec
	// Booted waits until the guest of a started spec is up.
	Booted func(t testing.TB, spec hypervisor.VMSpec)
}

// Conformance runs the suite against tg.
func Conformance(t *testing.T, tg Target) {
	t.Run("StartFailureLeavesNothing", func(t *testing.T) { startFailure(t, tg) })
	t.Run("ForeignPIDNeverSignalled", func(t *testing.T) { foreignPID(t, tg) })
	t.Run("ForceStopAndCrashedVM", func(t *testing.T) { forceStopAndCrash(t, tg) })
	t.Run("SnapshotCloneOfCloneRestore", func(t *testing.T) { snapshotChain(t, tg) })
}

// RefOf is the VMRef a later command would have of a started spec.
func RefOf(spec hypervisor.VMSpec, p hypervisor.Process) hypervisor.VMRef {
	return hypervisor.VMRef{ID: spec.ID, RunDir: spec.RunDir, PID: p.PID, StartTime: p.StartTime}
}

// dirState is what a VM's directories hold before its first start: what a stop must return to.
type dirState map[string][]string

func snapshotDirs(t testing.TB, spec hypervisor.VMSpec) dirState {
	t.Helper()
	s := dirState{}
	for _, d := range []string{spec.RunDir, spec.MemoryDir} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			s[d] = append(s[d], e.Name())
		}
	}
	return s
}

// assertGone checks that no process of spec runs and that its run and memory dirs hold only
// what they held before the start, plus the cmdline record.
func assertGone(t testing.TB, spec hypervisor.VMSpec, before dirState) {
	t.Helper()
	for _, d := range []string{spec.RunDir, spec.MemoryDir} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if !slices.Contains(before[d], e.Name()) && e.Name() != "cmdline" {
				t.Errorf("%s left in %s after stop", e.Name(), d)
			}
		}
	}
	// A console relay exits by itself once it reads its hypervisor's end of the line close,
	// which on a loaded host can come a moment after the stop returned; a leaked process stays.
	pids := ProcessesMentioning(spec.RunDir)
	for deadline := time.Now().Add(10 * time.Second); len(pids) > 0 && time.Now().Before(deadline); pids = ProcessesMentioning(spec.RunDir) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range pids {
		argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("process %d still running for %s: %q", pid, spec.RunDir, bytes.ReplaceAll(argv, []byte{0}, []byte{' '}))
	}
}

// ProcessesMentioning lists live processes (this one aside) whose command line or
// environment contains s: a VM's hypervisor and its console relay name its run dir.
func ProcessesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f)); err == nil && bytes.Contains(b, []byte(s)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// start starts spec and makes sure the VM is gone when the test ends, even on failure.
func start(t testing.TB, b hypervisor.Backend, spec hypervisor.VMSpec) hypervisor.Process {
	t.Helper()
	p, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopAtCleanup(t, b, spec, p)
	return p
}

func stopAtCleanup(t testing.TB, b hypervisor.Backend, spec hypervisor.VMSpec, p hypervisor.Process) {
	t.Cleanup(func() {
		if err := b.Stop(context.Background(), RefOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
}

func startFailure(t *testing.T, tg Target) {
	b, spec := tg.New(t), tg.Spec(t)
	before := snapshotDirs(t, spec)
	spec.Boot.Kernel = filepath.Join(t.TempDir(), "no-such-vmlinuz")
	spec.Boot.Firmware = ""
	_, err := b.Start(context.Background(), spec)
	if err == nil {
		t.Fatal("Start succeeded with a missing kernel")
	}
	t.Logf("Start error: %v", err)
	if !strings.Contains(err.Error(), "no-such-vmlinuz") || !strings.Contains(err.Error(), "log") {
		t.Errorf("error %q does not name the missing kernel and the hypervisor's log", err)
	}
	assertGone(t, spec, before)
}

// foreignPID: a recorded PID that belongs to another process is not the VM; nobody is
// signalled and Stop succeeds (the VM is simply not running).
func foreignPID(t *testing.T, tg Target) {
	b, spec := tg.New(t), tg.Spec(t)
	sleeper := exec.Command("sleep", "100")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-sleeper.Process.Pid, syscall.SIGKILL); _ = sleeper.Wait() })
	refs := map[string]hypervisor.VMRef{
		"unrelated pid":                       {ID: spec.ID, RunDir: spec.RunDir, PID: sleeper.Process.Pid},
		"pid of a live VM of another run dir": {ID: spec.ID, RunDir: t.TempDir(), PID: os.Getpid()},
	}
	for name, ref := range refs {
		if b.Alive(ref) {
			t.Errorf("%s: Alive = true", name)
		}
		if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("%s: Stop: %v", name, err)
		}
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err != nil {
		t.Errorf("the unrelated process was signalled: %v", err)
	}
	// The same check accepts the VM's real process: the refusals above are for their reason.
	p := start(t, b, spec)
	if !b.Alive(RefOf(spec, p)) {
		t.Error("a started VM is not Alive: the negative cases prove nothing")
	}
}

func forceStopAndCrash(t *testing.T, tg Target) {
	b, spec := tg.New(t), tg.Spec(t)
	before := snapshotDirs(t, spec)
	p := start(t, b, spec)
	tg.Booted(t, spec)
	if err := b.Stop(context.Background(), RefOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatalf("force Stop: %v", err)
	}
	assertGone(t, spec, before)

	p = start(t, b, spec) // again in the same dirs
	ref := RefOf(spec, p)
	if _, err := b.Start(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start of a running VM: %v", err)
	}
	if !b.Alive(ref) {
		t.Fatal("a second Start disturbed the running VM")
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(BootTimeout); b.Alive(ref); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Alive still true after SIGKILL")
		}
	}
	if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("Stop of a crashed VM: %v", err)
	}
	assertGone(t, spec, before)
}

// snapshotChain: snapshot → clone → snapshot of the clone → clone of the clone, then restore
// the original from its snapshot; the snapshot directories are never written by a clone.
func snapshotChain(t *testing.T, tg Target) {
	b := tg.New(t)
	sn, ok := b.(hypervisor.Snapshotter)
	if !ok {
		t.Skipf("backend %s cannot snapshot", b.Name())
	}
	ctx := context.Background()
	spec := tg.Spec(t)
	p := start(t, b, spec)
	tg.Booted(t, spec)

	save := func(spec hypervisor.VMSpec, p hypervisor.Process) (hypervisor.SnapshotSource, []hypervisor.Disk) {
		t.Helper()
		ref, dir := RefOf(spec, p), t.TempDir()
		if err := sn.Pause(ctx, ref); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		if err := sn.SaveState(ctx, ref, dir); err != nil {
			t.Fatalf("SaveState: %v", err)
		}
		disks := copyWritableDisks(t, spec.Disks, dir) // while paused, as the engine does
		if err := sn.Resume(ctx, ref); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !sn.StateFile(e.Name()) && !strings.HasPrefix(e.Name(), "disk") {
				t.Errorf("SaveState wrote %s, which StateFile does not accept", e.Name())
			}
		}
		macs := make([]string, len(spec.NICs))
		for i, n := range spec.NICs {
			macs[i] = n.MAC
		}
		src := hypervisor.SnapshotSource{Dir: dir, CPUs: spec.CPUs, MaxCPUs: spec.MaxCPUs, MemoryBytes: spec.MemoryBytes, MACs: macs}
		if err := sn.CheckState(src); err != nil {
			t.Fatalf("CheckState of a fresh snapshot: %v", err)
		}
		return src, disks
	}
	clone := func(from hypervisor.VMSpec, src hypervisor.SnapshotSource, disks []hypervisor.Disk) (hypervisor.VMSpec, hypervisor.Process) {
		t.Helper()
		spec := tg.Spec(t)
		spec.CPUs, spec.MaxCPUs, spec.MemoryBytes, spec.Boot = from.CPUs, from.MaxCPUs, from.MemoryBytes, from.Boot
		spec.Disks = copyWritableDisks(t, disks, t.TempDir()) // the clone's own copies
		p, err := sn.StartFromSnapshot(ctx, spec, src)
		if err != nil {
			t.Fatalf("StartFromSnapshot: %v", err)
		}
		stopAtCleanup(t, b, spec, p)
		if ref := RefOf(spec, p); !b.Alive(ref) || sn.Pause(ctx, ref) != nil || sn.Resume(ctx, ref) != nil {
			t.Fatal("the clone is not alive and answering")
		}
		return spec, p
	}

	src, disks := save(spec, p)
	sum := dirSum(t, src.Dir)
	spec1, p1 := clone(spec, src, disks)
	src1, disks1 := save(spec1, p1)
	clone(spec1, src1, disks1)
	if dirSum(t, src.Dir) != sum {
		t.Error("the snapshot directory changed while clones ran from it")
	}

	// Restore: the original VM, stopped, resumes from its own snapshot in its own dirs.
	if err := b.Stop(ctx, RefOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	spec.Disks = copyWritableDisks(t, disks, t.TempDir())
	pr, err := sn.StartFromSnapshot(ctx, spec, src)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	stopAtCleanup(t, b, spec, pr)
	if !b.Alive(RefOf(spec, pr)) {
		t.Fatal("the restored VM is not alive")
	}
}

// copyWritableDisks copies the writable disks into dir (named disk<i>) and returns the disk
// list with those paths; read-only disks are shared.
func copyWritableDisks(t testing.TB, disks []hypervisor.Disk, dir string) []hypervisor.Disk {
	t.Helper()
	out := slices.Clone(disks)
	for i, d := range out {
		if d.ReadOnly {
			continue
		}
		dst := filepath.Join(dir, "disk"+strconv.Itoa(i))
		if err := copyFile(dst, d.Path); err != nil {
			t.Fatal(err)
		}
		out[i].Path = dst
	}
	return out
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// dirSum digests every file's name and content in dir.
func dirSum(t testing.TB, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(h, e.Name()) //nolint:errcheck
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return [32]byte(h.Sum(nil))
}
