package firecracker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
)

// tapNetns makes a network namespace holding the named TAPs (removed when the test ends).
func tapNetns(t *testing.T, taps ...string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("creating a netns and TAPs needs root")
	}
	name := "fctest-" + hvtest.RandomID(8)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	for _, tap := range taps {
		if out, err := exec.Command("ip", "-n", name, "tuntap", "add", "dev", tap, "mode", "tap").CombinedOutput(); err != nil {
			t.Fatalf("create TAP %s: %v: %s", tap, err, out)
		}
	}
	return filepath.Join("/run/netns", name)
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func snapshot(t *testing.T, b *Backend, ref hypervisor.VMRef) string {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	if err := b.Pause(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveState(ctx, ref, dir); err != nil {
		t.Fatal(err)
	}
	if err := b.Resume(ctx, ref); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !b.StateFile(e.Name()) {
			t.Errorf("SaveState wrote %s, which StateFile does not accept", e.Name())
		}
	}
	if len(entries) != 2 {
		t.Errorf("SaveState wrote %d files, want vmstate and mem", len(entries))
	}
	return dir
}

func TestSnapshotCloneCloneOfCloneRestore(t *testing.T) {
	b := newBackend()
	ctx := context.Background()
	ns := tapNetns(t, "fcsrc0", "fcclone0", "fcclone1")
	nic := func(tap string) []hypervisor.NIC {
		return []hypervisor.NIC{{MAC: "02:fc:00:00:00:01", TapName: tap, Netns: ns}}
	}

	// Source VM, snapshotted while running.
	srcLog := requestLog(t)
	src := newVM(t, true)
	src.spec.NICs = nic("fcsrc0")
	p := start(t, b, src.spec, func() (hypervisor.Process, error) { return b.Start(ctx, src.spec) })
	snapDir := snapshot(t, b, refOf(src.spec, p))
	replace := map[string]string{snapDir: "$SNAP"}
	golden(t, records(t, srcLog), "snapshot.golden", map[string]testVM{"SRC": src}, replace)
	memSum := sum(t, memPath(snapDir))

	// The source goes away entirely: a clone must not need its disks (the vmstate names none).
	if err := b.Stop(ctx, refOf(src.spec, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	srcDisks := filepath.Join(src.root, "disks")
	if err := os.Rename(srcDisks, srcDisks+".away"); err != nil {
		t.Fatal(err)
	}
	source := hypervisor.SnapshotSource{Dir: snapDir, CPUs: 2, MemoryBytes: 256 << 20, MACs: []string{"02:fc:00:00:00:01"}}

	// Growth and NIC changes are refused before anything runs.
	grow := newVM(t, true)
	grow.spec.NICs = nic("fcclone0")
	grow.spec.CPUs = 4
	if _, err := b.StartFromSnapshot(ctx, grow.spec, source); err == nil || !strings.Contains(err.Error(), "cannot change CPU") {
		t.Fatalf("clone with more vCPUs = %v", err)
	}
	grow.spec.CPUs, grow.spec.MemoryBytes = 2, 512<<20
	if _, err := b.StartFromSnapshot(ctx, grow.spec, source); err == nil || !strings.Contains(err.Error(), "cannot change memory") {
		t.Fatalf("clone with more memory = %v", err)
	}
	grow.spec.MemoryBytes, grow.spec.NICs = 256<<20, nil
	if _, err := b.StartFromSnapshot(ctx, grow.spec, source); err == nil || !strings.Contains(err.Error(), "NICs") {
		t.Fatalf("clone with fewer NICs = %v", err)
	}

	// Clone: its own TAP, vsock socket and disks.
	cloneLog := requestLog(t)
	clone := newVM(t, true)
	clone.spec.NICs = nic("fcclone0")
	cp := start(t, b, clone.spec, func() (hypervisor.Process, error) { return b.StartFromSnapshot(ctx, clone.spec, source) })
	golden(t, records(t, cloneLog), "clone.golden", map[string]testVM{"CLONE": clone}, replace)
	eventually(t, "resume line in the clone's console log", func() bool {
		return fileContains(b.ConsoleLog(clone.spec.LogDir), clone.spec.ID+" resumed")
	})
	if sum(t, memPath(snapDir)) != memSum {
		t.Error("the snapshot's memory file changed under a clone")
	}
	if _, err := os.Stat(vsockPath(clone.spec.RunDir)); err != nil {
		t.Errorf("clone's vsock socket: %v", err)
	}

	// Clone of the clone.
	snap2 := snapshot(t, b, refOf(clone.spec, cp))
	c2Log := requestLog(t)
	clone2 := newVM(t, true)
	clone2.spec.NICs = nic("fcclone1")
	source2 := source
	source2.Dir = snap2
	c2p := start(t, b, clone2.spec, func() (hypervisor.Process, error) { return b.StartFromSnapshot(ctx, clone2.spec, source2) })
	if !b.Alive(refOf(clone2.spec, c2p)) || !b.Alive(refOf(clone.spec, cp)) {
		t.Fatal("clone and clone of clone should both run")
	}
	records(t, c2Log)

	// Restore the source in place: its disks are back, same spec, same snapshot.
	if err := os.Rename(srcDisks+".away", srcDisks); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, src.spec.Disks[1].Path)
	restoreLog := requestLog(t)
	rp := start(t, b, src.spec, func() (hypervisor.Process, error) { return b.StartFromSnapshot(ctx, src.spec, source) })
	golden(t, records(t, restoreLog), "restore.golden", map[string]testVM{"SRC": src}, replace)
	if err := b.Stop(ctx, refOf(src.spec, rp), hypervisor.StopOptions{}); err != nil {
		t.Fatalf("graceful stop of the restored VM: %v", err)
	}
	assertGone(t, b, src.spec, rp)
	if readAll(t, src.spec.Disks[1].Path) != before {
		t.Error("source COW changed")
	}
}

func TestStopResumesAPausedGuest(t *testing.T) {
	b := newBackend()
	ctx := context.Background()
	log := requestLog(t)
	vm := newVM(t, false)
	p := start(t, b, vm.spec, func() (hypervisor.Process, error) { return b.Start(ctx, vm.spec) })
	if err := b.Pause(ctx, refOf(vm.spec, p)); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(ctx, refOf(vm.spec, p), hypervisor.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b, vm.spec, p)
	recs := records(t, log)
	tail := recs[len(recs)-3:]
	if tail[0].Path != "/" || string(tail[1].Body) != `{"state":"Resumed"}` || !bytes.Contains(tail[2].Body, []byte("SendCtrlAltDel")) {
		t.Errorf("stop of a paused guest sent %v", tail)
	}
}

func TestCheckStateRefusesBadFiles(t *testing.T) {
	b := newBackend()
	write := func(dir, name string, size int64) {
		f, err := os.Create(filepath.Join(dir, name))
		if err == nil {
			err = f.Truncate(size)
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ok := t.TempDir()
	write(ok, stateName, 4096)
	write(ok, memName, 256<<20)
	src := hypervisor.SnapshotSource{Dir: ok, CPUs: 1, MemoryBytes: 256 << 20}
	if err := b.CheckState(src); err != nil {
		t.Fatalf("CheckState of good files: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		make       func(dir string)
	}{
		{"missing mem", "no such file", func(dir string) { write(dir, stateName, 4096) }},
		{"short mem", "but the snapshot's VM has", func(dir string) { write(dir, stateName, 4096); write(dir, memName, 128<<20) }},
		{"empty state", "not a Firecracker vmstate", func(dir string) { write(dir, stateName, 0); write(dir, memName, 256<<20) }},
		{"huge state", "not a Firecracker vmstate", func(dir string) { write(dir, stateName, maxStateSize+1); write(dir, memName, 256<<20) }},
		{"symlinked mem", "not a regular file", func(dir string) {
			write(dir, stateName, 4096)
			if err := os.Symlink(filepath.Join(ok, memName), filepath.Join(dir, memName)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(dir)
			src := src
			src.Dir = dir
			if err := b.CheckState(src); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckState = %v, want %q", err, tc.want)
			}
		})
	}
	for name, want := range map[string]bool{"vmstate": true, "mem": true, "config.json": false, "state.json": false, "../mem": false} {
		if b.StateFile(name) != want {
			t.Errorf("StateFile(%q) = %v", name, !want)
		}
	}
}

// A snapshot state that names host files the VM does not own (an import from elsewhere) is
// loaded paused and refused before the guest runs: nothing is left and the files are intact.
func TestCloneRefusesForeignDevicesInState(t *testing.T) {
	b := newBackend()
	ctx := context.Background()
	requestLog(t)
	src := newVM(t, true)
	p := start(t, b, src.spec, func() (hypervisor.Process, error) { return b.Start(ctx, src.spec) })
	snapDir := snapshot(t, b, refOf(src.spec, p))
	if err := b.Stop(ctx, refOf(src.spec, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(statePath(snapDir))
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(foreign, []byte("not the VM's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"extra drive": func(s string) string {
			return strings.Replace(s, `"drives":{`, `"drives":{"drive_9":{"drive_id":"drive_9","path_on_host":"`+foreign+`","is_read_only":false},`, 1)
		},
		"writable layer": func(s string) string {
			return strings.Replace(s, `"path_on_host":"disks/drive_0","is_read_only":true`, `"path_on_host":"disks/drive_0","is_read_only":false`, 1)
		},
		"vsock elsewhere": func(s string) string {
			return strings.Replace(s, `"uds_path":"vsock.sock"`, `"uds_path":"`+filepath.Join(t.TempDir(), "v.sock")+`"`, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			edited := edit(string(orig))
			if edited == string(orig) {
				t.Fatal("the edit matched nothing: the stand-in's state format changed")
			}
			dir := t.TempDir()
			if err := os.WriteFile(statePath(dir), []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(memPath(snapDir), memPath(dir)); err != nil {
				t.Fatal(err)
			}
			clone := newVM(t, true)
			_, err := b.StartFromSnapshot(ctx, clone.spec, hypervisor.SnapshotSource{Dir: dir, CPUs: 2, MemoryBytes: 256 << 20})
			if err == nil || !strings.Contains(err.Error(), "refusing to resume") {
				t.Fatalf("StartFromSnapshot of a foreign state = %v", err)
			}
			assertGone(t, b, clone.spec, hypervisor.Process{})
			if pids := hvtest.ProcessesMentioning(clone.spec.RunDir); len(pids) > 0 {
				t.Errorf("processes left: %v", pids)
			}
			if data, _ := os.ReadFile(foreign); string(data) != "not the VM's\n" {
				t.Errorf("foreign file changed: %q", data)
			}
		})
	}
}
