package qemu

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
)

// testLogWriter sends slog output (the backend's phase timings) to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func logToTest(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
}

func randomMAC() string {
	return "02:00:00:" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2) + ":" + hvtest.RandomID(2)
}

// snapshotDir is a directory on tmpfs, where snapshot memory files live in production.
func snapshotDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "cocoon-snap-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

func shellOf(spec hypervisor.VMSpec) hvtest.Shell {
	return hvtest.Shell{Socket: consolePath(spec.RunDir), Log: consoleLogPath(spec.LogDir)}
}

func counter(t *testing.T, sh hvtest.Shell) int {
	t.Helper()
	out := sh.Run(t, "cat /tmp/counter")
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("guest counter %q: %v", out, err)
	}
	return n
}

// waitCounterAbove proves the guest's background counter loop is running.
func waitCounterAbove(t *testing.T, sh hvtest.Shell, v int) int {
	t.Helper()
	deadline := time.Now().Add(hvtest.BootTimeout)
	for {
		if n := counter(t, sh); n > v {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest counter stuck at %d", v)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func cloneFile(t *testing.T, dst, src string) {
	t.Helper()
	if _, err := disk.CloneFile(dst, src); err != nil {
		t.Fatal(err)
	}
}

// snapshot pauses the VM, saves its state into dir, copies what SaveState names and the
// VM's disks while it is paused, and resumes it, the way the engine does.
func snapshot(t *testing.T, b *Backend, spec hypervisor.VMSpec, ref hypervisor.VMRef, dir string) (state, mem string, disks []string) {
	t.Helper()
	ctx := context.Background()
	if err := b.Pause(ctx, ref); err != nil {
		t.Fatal(err)
	}
	state = filepath.Join(dir, stateName)
	start := time.Now()
	if err := b.SaveState(ctx, ref, dir); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	tookSave := time.Since(start)
	if exists(filepath.Join(dir, memoryName)) {
		mem = filepath.Join(dir, memoryName)
	}
	for i, d := range spec.Disks {
		disks = append(disks, filepath.Join(dir, "disk"+strconv.Itoa(i)))
		cloneFile(t, disks[i], d.Path)
	}
	tookAll := time.Since(start)
	if err := b.Resume(ctx, ref); err != nil {
		t.Fatalf("Resume after SaveState: %v", err)
	}
	fi, _ := os.Stat(state)
	t.Logf("MEASURED SaveState %v (state file %d KiB, RAM in state: %v); paused for save+copies %v",
		tookSave, fi.Size()>>10, mem == "", tookAll)
	return state, mem, disks
}

// cloneSpec is a new VM from g with its own dirs, vCPUs and a NIC on a TAP with one queue per
// vCPU, as the network module sizes it.
func cloneSpec(t *testing.T, g hvtest.Guest, from hypervisor.VMSpec, cpus int, disks []string) hypervisor.VMSpec {
	s := hvtest.Spec(t, g)
	s.CPUs, s.MaxCPUs, s.Balloon, s.MemoryBytes, s.Boot = cpus, from.MaxCPUs, from.Balloon, from.MemoryBytes, from.Boot
	for i, d := range from.Disks {
		d.Path = disks[i]
		s.Disks = append(s.Disks, d)
	}
	for range from.NICs {
		_, fds := hvtest.Tap(t, cpus)
		s.NICs = append(s.NICs, hypervisor.NIC{MAC: randomMAC(), Files: fds})
	}
	return s
}

func startFromSnapshot(t *testing.T, b *Backend, spec hypervisor.VMSpec, src hypervisor.SnapshotSource) hypervisor.Process {
	t.Helper()
	start := time.Now()
	p, err := b.StartFromSnapshot(context.Background(), spec, src)
	if err != nil {
		t.Fatalf("StartFromSnapshot: %v", err)
	}
	t.Logf("MEASURED StartFromSnapshot to running: %v (%d MiB, %d NICs)", time.Since(start), spec.MemoryBytes>>20, len(spec.NICs))
	t.Cleanup(func() {
		if err := b.Stop(context.Background(), refOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return p
}

// TestSnapshotCloneAndCloneOfClone: a snapshot of a running VM resumes it; a clone with a new
// NIC and one more vCPU continues the guest exactly where it was, on the snapshot's memory
// file mapped copy-on-write; a snapshot of that clone carries RAM in its state, and a clone of
// it is again a VM with its own shared RAM file. No clone ever writes the snapshot file.
func TestSnapshotCloneAndCloneOfClone(t *testing.T) {
	hvtest.RequireQEMU(t)
	logToTest(t)
	g := hvtest.Build(t)
	b := New(Options{})
	ctx := context.Background()

	_, tapFiles := hvtest.Tap(t, 1)
	spec := hvtest.Spec(t, g)
	spec.MaxCPUs, spec.Balloon = 2, true
	spec.Disks = []hypervisor.Disk{{Path: sparseFile(t, 16<<20), Format: hypervisor.FormatRaw, Serial: "cocoon-cow", Role: "cow"}}
	spec.NICs = []hypervisor.NIC{{MAC: randomMAC(), Files: tapFiles}}
	spec.Boot.Cmdline = hvtest.Cmdline(1, 1)
	p := startVM(t, b, spec)
	ref := refOf(spec, p)
	hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.Ready)
	waitBalloon(t, spec) // a snapshot taken mid-inflation is covered by freezeBalloon, but keep this one simple
	sh := shellOf(spec)
	marker := "marker-" + hvtest.RandomID(8)
	// The counter is renamed into place: a cat racing a truncating write would read nothing.
	sh.Run(t, "echo "+marker+" >/tmp/marker; (i=0; while :; do echo $i >/tmp/counter.new; mv /tmp/counter.new /tmp/counter; i=$((i+1)); usleep 100000; done) >/dev/null 2>&1 &")
	waitCounterAbove(t, sh, 0)

	dir := snapshotDir(t)
	if err := b.SaveState(ctx, ref, dir); err == nil || !strings.Contains(err.Error(), "pause it first") {
		t.Fatalf("SaveState of a running VM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateName)); err == nil {
		t.Error("a refused SaveState left a state file")
	}

	beforeSnap := counter(t, sh)
	state, mem, disks := snapshot(t, b, spec, ref, dir)
	if mem == "" {
		t.Fatal("SaveState of a cold-booted VM put RAM into the state instead of naming its RAM file")
	}
	waitCounterAbove(t, sh, counter(t, sh)) // the original runs on after Resume
	memSum := fileSum(t, mem)

	// Clone: new TAP with 2 queues and a new MAC, one more vCPU, one more disk (hot-plugged).
	spec1 := cloneSpec(t, g, spec, 2, disks)
	spec1.Disks = append(spec1.Disks, hypervisor.Disk{Path: sparseFile(t, 1<<20), Format: hypervisor.FormatRaw, ReadOnly: true, Serial: "hotdisk", Role: "cidata"})
	src := hypervisor.SnapshotSource{Dir: filepath.Dir(state), CPUs: 1, MaxCPUs: 2,
		MemoryBytes: spec.MemoryBytes, MACs: []string{spec.NICs[0].MAC}}
	p1 := startFromSnapshot(t, b, spec1, src)
	ref1 := refOf(spec1, p1)
	sh1 := shellOf(spec1)
	checkGuest(t, sh1, marker, spec1.NICs[0].MAC, "0-1", beforeSnap)
	checkSerials(t, sh1, "hotdisk")
	argv, _ := os.ReadFile("/proc/" + strconv.Itoa(p1.PID) + "/cmdline")
	if want := "mem-path=" + mem + ",share=off"; !strings.Contains(string(argv), want) {
		t.Errorf("clone's argv lacks %q: %q", want, argv)
	}
	if _, err := os.Lstat(ramPath(spec1)); err == nil {
		t.Error("the clone has a RAM file of its own: the snapshot's memory was copied")
	}
	if _, err := os.Lstat(ramLink(spec1.RunDir)); err == nil {
		t.Error("the clone claims the snapshot's memory file as its own RAM")
	}
	if n := tunFDs(t, p1.PID); n != len(spec1.NICs[0].Files) {
		t.Errorf("clone holds %d TAP queue fds, want %d: the snapshot NIC's stand-in TAP is still open", n, len(spec1.NICs[0].Files))
	}
	if !b.Alive(ref1) || b.ConsoleSocket(ref1) != consolePath(spec1.RunDir) {
		t.Error("clone not Alive or console elsewhere")
	}

	// Snapshot of the clone: its RAM is a private mapping, so it travels in the state.
	dir2 := snapshotDir(t)
	state2, mem2, disks2 := snapshot(t, b, spec1, ref1, dir2)
	if mem2 != "" {
		t.Fatalf("SaveState of a clone named memory file %s; its RAM is a private mapping", mem2)
	}
	beforeSnap2 := counter(t, sh1)

	spec2 := cloneSpec(t, g, spec1, 2, disks2)
	src2 := hypervisor.SnapshotSource{Dir: filepath.Dir(state2), CPUs: 2, MaxCPUs: 2,
		MemoryBytes: spec1.MemoryBytes, MACs: []string{spec1.NICs[0].MAC}}
	p2 := startFromSnapshot(t, b, spec2, src2)
	checkGuest(t, shellOf(spec2), marker, spec2.NICs[0].MAC, "0-1", beforeSnap2)
	checkSerials(t, shellOf(spec2), "hotdisk") // relaunched on the root port recorded in the layout
	ref2 := refOf(spec2, p2)
	if err := b.Pause(ctx, ref2); err != nil {
		t.Fatal(err)
	}
	dir3 := snapshotDir(t)
	if err := b.SaveState(ctx, ref2, dir3); err != nil || !exists(filepath.Join(dir3, memoryName)) {
		t.Errorf("clone of a clone: SaveState = %v; want its own share=on RAM file %s copied beside the state", err, ramPath(spec2))
	}
	if err := b.Resume(ctx, ref2); err != nil {
		t.Fatal(err)
	}

	if fileSum(t, mem) != memSum {
		t.Error("the snapshot memory file changed while a clone ran on it")
	}
	if err := b.Stop(ctx, ref1, hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, spec1)
	if _, err := os.Stat(mem); err != nil {
		t.Errorf("stopping a clone removed the snapshot memory file: %v", err)
	}
	waitCounterAbove(t, sh, counter(t, sh)) // the original still runs
}

// checkSerials waits until the guest lists a disk with serial want (hot-plug is asynchronous).
func checkSerials(t *testing.T, sh hvtest.Shell, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out := sh.Run(t, "cat /sys/block/vd*/serial 2>/dev/null || cat /sys/block/vd*/device/serial")
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest disks have serials %q, none is %q", out, want)
		}
		time.Sleep(time.Second)
	}
}

// tunFDs counts a process's open /dev/net/tun descriptors: its TAP queues.
func tunFDs(t *testing.T, pid int) int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, _ := os.Readlink(filepath.Join(dir, e.Name())); target == "/dev/net/tun" {
			n++
		}
	}
	return n
}

// checkGuest: the guest still holds what was written before the snapshot, its counter went
// on from at least the value read before the snapshot, and it sees the new NIC and vCPUs.
func checkGuest(t *testing.T, sh hvtest.Shell, marker, mac, presentCPUs string, counterBefore int) {
	t.Helper()
	out := sh.Run(t, "cat /tmp/marker /sys/class/net/eth0/address /sys/devices/system/cpu/present; ls /sys/class/net | grep -c eth")
	if want := strings.Join([]string{marker, mac, presentCPUs, "1"}, "\n"); out != want {
		t.Errorf("guest reports\n%s\nwant\n%s", out, want)
	}
	if n := counter(t, sh); n < counterBefore {
		t.Errorf("guest counter %d is below %d, read before the snapshot: the guest restarted", n, counterBefore)
	} else {
		waitCounterAbove(t, sh, n)
	}
}

// TestRestoreStartTimeAndBrokenStateFiles restores a small and a large guest onto their own
// VMs, as `snapshot restore` does after stopping them: same MAC and queues, so no NIC swap,
// and the guest keeps its NIC. It measures the start (the memory file is mapped, not read, so
// size should barely matter), then shows that a state file truncated on disk, or whose stream
// QEMU rejects, fails with a clear error and leaves no process or runtime file behind.
func TestRestoreStartTimeAndBrokenStateFiles(t *testing.T) {
	hvtest.RequireQEMU(t)
	logToTest(t)
	g := hvtest.Build(t)
	b := New(Options{})
	ctx := context.Background()

	var small hypervisor.SnapshotSource
	for _, mem := range []int64{256 << 20, 1 << 30} {
		_, tapFiles := hvtest.Tap(t, 1)
		spec := hvtest.Spec(t, g)
		spec.MemoryBytes, spec.MaxCPUs = mem, 2
		spec.NICs = []hypervisor.NIC{{MAC: randomMAC(), Files: tapFiles}}
		spec.Boot.Cmdline = hvtest.Cmdline(0, 1)
		p := startVM(t, b, spec)
		ref := refOf(spec, p)
		hvtest.WaitForText(t, consoleLogPath(spec.LogDir), hvtest.Ready)
		sh := shellOf(spec)
		ifindex := sh.Run(t, "echo warm >/tmp/marker; cat /sys/class/net/eth0/ifindex")
		state, memFile, _ := snapshot(t, b, spec, ref, snapshotDir(t))
		if err := b.Stop(ctx, ref, hypervisor.StopOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		src := hypervisor.SnapshotSource{Dir: filepath.Dir(state), CPUs: 1, MaxCPUs: 2, MemoryBytes: mem,
			MACs: []string{spec.NICs[0].MAC}}
		if memFile == "" {
			t.Fatal("a cold-booted VM's snapshot has no memory file")
		}
		p = startFromSnapshot(t, b, spec, src)
		want := "warm\n" + ifindex + "\n" + spec.NICs[0].MAC
		if out := sh.Run(t, "cat /tmp/marker /sys/class/net/eth0/ifindex /sys/class/net/eth0/address"); out != want {
			t.Errorf("%d MiB restore: guest reports\n%s\nwant (same NIC, not swapped)\n%s", mem>>20, out, want)
		}
		if mem == 256<<20 {
			small = src
		}
	}

	broken := func(name string, mutate func(path string)) {
		t.Helper()
		dir := t.TempDir()
		path := filepath.Join(dir, stateName)
		cloneFile(t, path, filepath.Join(small.Dir, stateName))
		cloneFile(t, filepath.Join(dir, memoryName), filepath.Join(small.Dir, memoryName))
		mutate(path)
		src := small
		src.Dir = dir
		_, tapFiles := hvtest.Tap(t, 1)
		spec := hvtest.Spec(t, g)
		spec.MaxCPUs = 2
		spec.NICs = []hypervisor.NIC{{MAC: randomMAC(), Files: tapFiles}}
		_, err := b.StartFromSnapshot(ctx, spec, src)
		if err == nil {
			t.Fatalf("%s: StartFromSnapshot succeeded", name)
		}
		t.Logf("%s: %v", name, err)
		assertGone(t, spec)
	}
	broken("truncated", func(path string) {
		fi, _ := os.Stat(path)
		if err := os.Truncate(path, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	})
	// Cut the stream but fix up the header, so only QEMU can tell: it must fail the load.
	broken("short-stream", func(path string) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h, err := readStateHeader(f)
		if err != nil {
			t.Fatal(err)
		}
		h.StreamBytes /= 2
		hdr, _ := encodeStateHeader(h)
		if _, err := f.WriteAt(hdr, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(stateHeaderSize + h.StreamBytes); err != nil {
			t.Fatal(err)
		}
	})
	broken("not-a-state", func(path string) {
		if err := os.WriteFile(path, []byte("hello\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
}
