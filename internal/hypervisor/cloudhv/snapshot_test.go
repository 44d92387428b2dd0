package cloudhv

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
)

// snapshot pauses, saves into a new dir and resumes, as the engine does.
func (e *env) snapshot(s hypervisor.VMSpec, p hypervisor.Process, name string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	ctx, ref := context.Background(), refOf(s, p)
	if err := e.b.Pause(ctx, ref); err != nil {
		e.t.Fatalf("pause: %v", err)
	}
	if err := e.b.SaveState(ctx, ref, dir); err != nil {
		e.t.Fatalf("save state: %v", err)
	}
	if err := e.b.Resume(ctx, ref); err != nil {
		e.t.Fatalf("resume: %v", err)
	}
	names := dirNames(e.t, dir)
	for _, n := range names {
		if !e.b.StateFile(n) {
			e.t.Errorf("snapshot wrote %s, which StateFile refuses", n)
		}
	}
	if len(names) != 3 {
		e.t.Errorf("snapshot files %v, want config.json, state.json and memory-ranges", names)
	}
	return dir
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func (e *env) restore(s hypervisor.VMSpec, src hypervisor.SnapshotSource) hypervisor.Process {
	e.t.Helper()
	p, err := e.b.StartFromSnapshot(context.Background(), s, src)
	if err != nil {
		e.t.Fatalf("start from snapshot: %v", err)
	}
	e.t.Cleanup(func() { _ = e.b.Stop(context.Background(), refOf(s, p), hypervisor.StopOptions{Force: true}) })
	return p
}

func readConfig(t *testing.T, path string) snapConfig {
	t.Helper()
	m, err := readJSON(path, maxConfigSize)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSnapshotCloneCloneOfCloneRestore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec("src")
	tap0, fds := hvtest.Tap(t, 1)
	s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:02:01", TapName: tap0, Files: fds}}
	p := e.start(s)
	e.skip()

	snap1 := e.snapshot(s, p, "snap1")
	e.golden("snapshot")
	saved, _ := os.ReadFile(filepath.Join(snap1, configFile))
	if st, err := os.Stat(filepath.Join(snap1, memoryFile)); err != nil || st.Size() != s.MemoryBytes {
		t.Fatalf("memory-ranges: %v, want %d bytes", err, s.MemoryBytes)
	}
	src1 := hypervisor.SnapshotSource{Dir: snap1, CPUs: 1, MaxCPUs: 4, MemoryBytes: s.MemoryBytes, MACs: []string{s.NICs[0].MAC}}
	if err := e.b.CheckState(src1); err != nil {
		t.Fatalf("check state of a fresh snapshot: %v", err)
	}

	// Clone: new MACs on new TAPs, one NIC more, one vCPU and 128 MiB more.
	c := e.spec("clone1")
	c.CPUs, c.MemoryBytes = 2, 384<<20
	tapA, _ := hvtest.Tap(t, 1)
	tapB, _ := hvtest.Tap(t, 1)
	c.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:03:01", TapName: tapA, Queues: 1}, {MAC: "02:00:00:00:03:02", TapName: tapB, Queues: 1}}
	// A disk the snapshot lacks (a cloud clone's fresh seed) is hot-added.
	c.Disks = append(c.Disks, hypervisor.Disk{Path: sparse(t, filepath.Join(c.RunDir, "cidata.img"), 1<<20), Format: hypervisor.FormatRaw,
		ReadOnly: true, Role: "cidata"})
	cp := e.restore(c, src1)
	e.golden("clone", tapA, "$TAPA", tapB, "$TAPB")
	consoleSays(t, e.b.ConsoleSocket(refOf(c, cp)), e.b.ConsoleLog(c.LogDir), "guest restored")

	// The snapshot is untouched; the clone's config names only the clone's files.
	if names := dirNames(t, snap1); len(names) != 3 {
		t.Errorf("snapshot dir changed: %v", names)
	}
	if now, _ := os.ReadFile(filepath.Join(snap1, configFile)); !bytes.Equal(now, saved) {
		t.Error("the snapshot's config.json was rewritten")
	}
	cc := readConfig(t, filepath.Join(c.RunDir, configFile))
	if got := str(cc.list("disks")[1], "path"); got != c.Disks[1].Path {
		t.Errorf("clone config.json disk 1 = %s, want %s", got, c.Disks[1].Path)
	}
	if got := str(cc.list("net")[0], "tap"); got != tapA {
		t.Errorf("clone config.json NIC 0 opens TAP %s, want the clone's %s", got, tapA)
	}
	if target, err := os.Readlink(filepath.Join(c.RunDir, memoryFile)); err != nil || target != filepath.Join(snap1, memoryFile) {
		t.Errorf("clone memory: link to %q (%v), want the snapshot's file", target, err)
	}

	// Clone of the clone: the grown VM saves its grown state.
	snap2 := e.snapshot(c, cp, "snap2")
	e.skip()
	sc := readConfig(t, filepath.Join(snap2, configFile))
	if sc.memory() != c.MemoryBytes || num(sc.obj("cpus"), "boot_vcpus") != 2 {
		t.Fatalf("snapshot of the grown clone: memory %d, vCPUs %d", sc.memory(), num(sc.obj("cpus"), "boot_vcpus"))
	}
	c2 := e.spec("clone2")
	c2.CPUs, c2.MemoryBytes = 2, 384<<20
	c2.Disks = append(c2.Disks, hypervisor.Disk{Path: sparse(t, filepath.Join(c2.RunDir, "cidata.img"), 1<<20), Format: hypervisor.FormatRaw,
		ReadOnly: true, Role: "cidata"})
	tapC, _ := hvtest.Tap(t, 1)
	tapD, _ := hvtest.Tap(t, 1)
	c2.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:04:01", TapName: tapC, Queues: 1}, {MAC: "02:00:00:00:04:02", TapName: tapD, Queues: 1}}
	src2 := hypervisor.SnapshotSource{Dir: snap2, CPUs: 2, MaxCPUs: 4, MemoryBytes: c.MemoryBytes, MACs: []string{c.NICs[0].MAC, c.NICs[1].MAC}}
	c2p := e.restore(c2, src2)
	e.golden("clone-of-clone", tapC, "$TAPC", tapD, "$TAPD")
	consoleSays(t, e.b.ConsoleSocket(refOf(c2, c2p)), e.b.ConsoleLog(c2.LogDir), "guest restored")

	// Restore of the source onto its own run dir: same NICs, no swap; lazy memory on request.
	if err := e.b.Stop(ctx, refOf(s, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	e.skip()
	src1.OnDemand = true
	rp := e.restore(s, src1)
	e.golden("restore", tap0, "$TAP0")
	if !e.b.Alive(refOf(s, rp)) {
		t.Fatal("restored VM not alive")
	}
}

func TestCloneFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	s := e.spec("src")
	p := e.start(s)
	snap := e.snapshot(s, p, "snap")
	src := hypervisor.SnapshotSource{Dir: snap, CPUs: 1, MaxCPUs: 4, MemoryBytes: s.MemoryBytes}

	c := e.spec("clone")
	c.Disks[1].Path = filepath.Join(e.dir, "clone", "run", "missing.raw")
	_, err := e.b.StartFromSnapshot(context.Background(), c, src)
	if err == nil || !strings.Contains(err.Error(), "missing.raw") {
		t.Fatalf("clone onto a missing disk: want an error naming it, got %v", err)
	}
	if left := dirNames(t, c.RunDir); !slices.Equal(left, []string{"cmdline", "cow.raw"}) {
		t.Errorf("failed clone left %v in its run dir", left)
	}

	for name, mut := range map[string]func(*hypervisor.VMSpec){
		"shrink":      func(s *hypervisor.VMSpec) { s.MemoryBytes = 128 << 20 },
		"beyond max":  func(s *hypervisor.VMSpec) { s.CPUs = 5; s.MaxCPUs = 5 },
		"odd growth":  func(s *hypervisor.VMSpec) { s.MemoryBytes = 300 << 20 },
		"disk set":    func(s *hypervisor.VMSpec) { s.Disks = s.Disks[:1] },
		"boot change": func(s *hypervisor.VMSpec) { s.Boot = hypervisor.Boot{Firmware: e.b.firmware} },
	} {
		c := e.spec("clone")
		mut(&c)
		if _, err := e.b.StartFromSnapshot(context.Background(), c, src); err == nil {
			t.Errorf("%s: clone accepted", name)
		}
	}
}

func TestCheckStateRefusesWhatItDoesNotRewrite(t *testing.T) {
	e := newEnv(t)
	s := e.spec("src")
	p := e.start(s)
	snap := e.snapshot(s, p, "snap")
	src := hypervisor.SnapshotSource{Dir: snap, CPUs: 1, MaxCPUs: 4, MemoryBytes: s.MemoryBytes}
	orig, _ := os.ReadFile(filepath.Join(snap, configFile))
	for name, mut := range map[string]func(m map[string]any){
		"debug console file": func(m map[string]any) { m["debug_console"] = map[string]any{"mode": "File", "file": "/etc/shadow"} },
		"pmem":               func(m map[string]any) { m["pmem"] = []any{map[string]any{"file": "/dev/sda"}} },
		"memory zone file": func(m map[string]any) {
			m["memory"].(map[string]any)["zones"] = []any{map[string]any{"id": "z", "file": "/x"}}
		},
		"vhost disk":         func(m map[string]any) { m["disks"].([]any)[0].(map[string]any)["vhost_user"] = true },
		"unknown path field": func(m map[string]any) { m["landlock_rules"] = nil; m["ivshmem"] = map[string]any{"path": "/dev/mem"} },
		"more vCPUs":         func(m map[string]any) { m["cpus"].(map[string]any)["boot_vcpus"] = 3 },
		"NIC not recorded": func(m map[string]any) {
			m["net"] = []any{map[string]any{"id": "_net0", "tap": "x", "mac": "02:00:00:00:00:09"}}
		},
	} {
		var m map[string]any
		if err := json.Unmarshal(orig, &m); err != nil {
			t.Fatal(err)
		}
		mut(m)
		data, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(snap, configFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := e.b.CheckState(src); err == nil {
			t.Errorf("%s: CheckState accepted it", name)
		}
	}
	if err := os.WriteFile(filepath.Join(snap, configFile), orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(snap, memoryFile), s.MemoryBytes+1); err != nil {
		t.Fatal(err)
	}
	if err := e.b.CheckState(src); err == nil || !strings.Contains(err.Error(), memoryFile) {
		t.Errorf("oversized memory file: want an error naming it, got %v", err)
	}
	for _, n := range []string{"config.json", "state.json", "memory-ranges"} {
		if !e.b.StateFile(n) {
			t.Errorf("StateFile(%s) = false", n)
		}
	}
	for _, n := range []string{"memory-ranges.1", "../config.json", "cocoon.json", "snapshot.json"} {
		if e.b.StateFile(n) {
			t.Errorf("StateFile(%s) = true", n)
		}
	}
}
