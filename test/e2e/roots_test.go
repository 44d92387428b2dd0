package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// shareDirs points env b at a's run, log and memory dirs (and network namespace), as two roots
// left at the default run_dir, log_dir and memory_dir are on one host.
func shareDirs(t *testing.T, a, b *harness.Env) {
	t.Helper()
	os.RemoveAll(b.MemDir)
	b.RunDir, b.LogDir, b.MemDir, b.Netns = a.RunDir, a.LogDir, a.MemDir, a.Netns
	cfg := fmt.Sprintf("root_dir: %s\nrun_dir: %s\nlog_dir: %s\nmemory_dir: %s\ncni_conf_dir: %s\ncni_bin_dir: /usr/lib/cni\nlog:\n  level: debug\n",
		b.Root, b.RunDir, b.LogDir, b.MemDir, filepath.Join(filepath.Dir(b.Config), "cni"))
	if err := os.WriteFile(b.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// GC in root B leaves root A's VM dirs, bridge TAPs and running VM alone, removes its own
// orphans, and reports what it cannot attribute; A's VMs still start and stop.
func TestGCLeavesOtherRootsAlone(t *testing.T) {
	a, h, ref := netEnv(t, 47)
	br := "cbr" + h.Bridge[4:]
	for _, args := range [][]string{{"ip", "link", "add", br, "type", "bridge"}, {"ip", "link", "set", br, "up"}} {
		if out, err := h.Exec(args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	a.MustRun("vm", "run", "--name", "a1", "--cpu", "1", "--memory", "512M", "--bridge", br, ref)
	a.MustRun("vm", "create", "--name", "a2", "--cpu", "1", "--memory", "512M", "--nics", "0", ref)
	a1, a2 := a.Inspect("a1"), a.Inspect("a2")
	tapsBefore, _ := h.Exec("ip", "-o", "link", "show", "master", br)
	if !strings.Contains(tapsBefore, a1.Networks[0].Tap) {
		t.Fatalf("A's TAP %s is not on %s: %s", a1.Networks[0].Tap, br, tapsBefore)
	}

	b := harness.NewEnv(t)
	shareDirs(t, a, b)
	b.MustRun("vm", "list")
	bRoot, err := os.ReadFile(filepath.Join(b.Root, "root-id"))
	if err != nil {
		t.Errorf("root B has no identity: %v", err)
	}
	// An orphan of B's (its marker) goes; a dir nobody marked stays and is reported.
	orphan, unmarked := filepath.Join(a.RunDir, rand.Text()), filepath.Join(a.LogDir, rand.Text())
	for _, d := range []string{orphan, unmarked} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(orphan, ".cocoon-root"), bRoot, 0o600); err != nil {
		t.Fatal(err)
	}

	out := b.MustRun("gc")
	if !strings.Contains(out, "removed "+orphan) || !strings.Contains(out, "left "+unmarked) {
		t.Errorf("gc in B did not remove its orphan and report the unmarked dir:\n%s", out)
	}
	for _, vm := range []harness.VM{a1, a2} {
		if strings.Contains(out, vm.ID) {
			t.Errorf("gc in B mentions A's VM %s:\n%s", vm.Name, out)
		}
		for _, d := range []string{vm.RunDir, vm.LogDir} {
			if !exists(d) {
				t.Errorf("gc in B removed A's %s", d)
			}
		}
	}
	if !exists(filepath.Join(a.MemDir, a1.ID)) {
		t.Errorf("gc in B removed A's running VM's memory dir")
	}
	if tapsAfter, _ := h.Exec("ip", "-o", "link", "show", "master", br); !strings.Contains(tapsAfter, a1.Networks[0].Tap) {
		t.Errorf("gc in B removed A's TAP: %s", tapsAfter)
	}
	if !exists(unmarked) || exists(orphan) {
		t.Errorf("unmarked dir kept %v, B's orphan kept %v", exists(unmarked), exists(orphan))
	}
	if now := a.Inspect("a1"); now.State != "running" || processGone(now.PID) {
		t.Fatalf("A's VM after gc in B: %+v", now)
	}
	// A's own gc knows its VMs and cannot attribute the unmarked dir either.
	if out := a.MustRun("gc"); strings.Contains(out, "removed") || !strings.Contains(out, "left "+unmarked) {
		t.Errorf("gc in A:\n%s", out)
	}
	a.MustRun("vm", "stop", "--force", "a1")
	a.MustRun("vm", "start", "a1")
	a.MustRun("vm", "start", "a2")
	for _, name := range []string{"a1", "a2"} {
		if vm := a.Inspect(name); vm.State != "running" {
			t.Errorf("A's %s did not restart: %s", name, vm.State)
		}
	}
	a.MustRun("vm", "rm", "--force", "a1", "a2")
}

// memory_dir must be a real directory of this user that nobody else can write: a symlink, a
// world-writable or a foreign-owned directory is refused before anything is created.
func TestMemoryDirRefused(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	base := t.TempDir()
	private := filepath.Join(base, "private")
	link := filepath.Join(base, "link")
	open := filepath.Join(base, "open")
	foreign := filepath.Join(base, "foreign")
	for _, d := range []string{private, open, foreign} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{link: "is a symlink", open: "is writable by others", foreign: "is owned by another user"} {
		cfg := strings.Replace(string(orig), "memory_dir: "+env.MemDir, "memory_dir: "+dir, 1)
		if err := os.WriteFile(env.Config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		env.MustFail("memory dir "+dir+" "+want, "vm", "run", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	}
	if entries, _ := os.ReadDir(private); len(entries) != 0 {
		t.Errorf("something was written through the symlink: %v", entries)
	}
	if out := env.MustRun("vm", "list"); !strings.Contains(out, "No VMs found.") {
		t.Fatalf("a refused run stored a VM:\n%s", out)
	}
}

// Guest RAM files are 0600, and QEMU takes no native AIO context (the host-wide fs.aio-max-nr
// pool would cap the host at 64 VMs): its disks use io_uring, as vm inspect says.
func TestGuestRAMPrivateAndNoNativeAIO(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "ram", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("ram")
	ram := filepath.Join(env.MemDir, vm.ID, vm.ID+".ram")
	fi, err := os.Lstat(ram)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("RAM file %s has mode %v, want -rw-------", ram, fi.Mode())
	}
	if dfi, err := os.Lstat(filepath.Dir(ram)); err != nil || dfi.Mode().Perm() != 0o700 {
		t.Errorf("VM memory dir mode %v (%v), want 0700", dfi.Mode(), err)
	}
	maps, err := os.ReadFile("/proc/" + strconv.Itoa(vm.PID) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(maps), "[aio]") {
		t.Error("QEMU holds a native AIO context")
	}
	var rec struct {
		DiskAIO string `json:"disk_aio"`
	}
	if err := json.Unmarshal([]byte(env.MustRun("vm", "inspect", "ram")), &rec); err != nil || rec.DiskAIO == "" || rec.DiskAIO == "native" {
		t.Errorf("vm inspect disk_aio = %q (%v)", rec.DiskAIO, err)
	}
}

// GC leaves a snapshot staging dir alone while an import still writes it, however old it is.
func TestGCKeepsStagingOfRunningImport(t *testing.T) {
	env := harness.NewEnv(t)
	c := env.Cmd(t.Context(), "snapshot", "import", "--name", "slow", "-")
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = c.Wait() })
	stagingRoot := filepath.Join(env.Root, "snapshot", "staging")
	var staging string
	for deadline := time.Now().Add(time.Minute); staging == ""; time.Sleep(50 * time.Millisecond) {
		if entries, _ := os.ReadDir(stagingRoot); len(entries) == 1 {
			staging = filepath.Join(stagingRoot, entries[0].Name())
		} else if time.Now().After(deadline) {
			t.Fatal("import made no staging dir")
		}
	}
	old := time.Now().Add(-3 * time.Hour)
	if err := os.Chtimes(staging, old, old); err != nil {
		t.Fatal(err)
	}
	if out := env.MustRun("gc"); strings.Contains(out, staging) || !exists(staging) {
		t.Fatalf("gc removed the staging dir of a running import:\n%s", out)
	}
	stdin.Close()
	if err := c.Wait(); err == nil {
		t.Fatal("an import of an empty stream succeeded")
	}
	if exists(staging) {
		t.Error("the failed import left its staging dir")
	}
}
