package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/snapshot/snaptest"
	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// A snapshot archive from another host is untrusted: crafted archives that would reach host
// files through clone are refused by `snapshot import` with a one-line error, leaving nothing.
func TestSnapshotImportRefusesCraftedArchives(t *testing.T) {
	harness.Require(t, "qemu-img")
	env := harness.NewEnv(t)
	cases := []struct {
		name  string
		cloud bool
		edit  func(dir string, m *snapshot.Manifest)
		want  string
	}{
		{"disk path traversal", false, func(_ string, m *snapshot.Manifest) {
			m.Disks[1].File = "../../../../etc/shadow"
		}, "is not a disk payload name"},
		{"vCPU driver injection", false, func(dir string, m *snapshot.Manifest) {
			hot := `[{"driver":"loader,file=/etc/shadow","id":"cpu1","props":{"socket-id":1}}]`
			if err := os.WriteFile(filepath.Join(dir, snaptest.FileState), snaptest.StateFile(t, snaptest.Layout(2, false, hot)), 0o600); err != nil {
				t.Fatal(err)
			}
			m.CPU = 2
			snaptest.Declare(t, dir, m)
		}, "is not the tcg vCPU type"},
		{"flipped payload byte", false, func(dir string, _ *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileCOW)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[4096] ^= 1
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "does not match its manifest digest"},
		{"overlay backed by a host file", true, func(dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileOverlay)
			os.Remove(p)
			snaptest.Qcow2(t, p, "-F", "raw", "-u", "-b", "/etc/shadow")
			snaptest.Declare(t, dir, m)
		}, `has backing file "/etc/shadow"`},
		{"overlay with an external data file", true, func(dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileOverlay)
			os.Remove(p)
			snaptest.Qcow2(t, p, "-o", "data_file="+filepath.Join(t.TempDir(), "data.raw"))
			snaptest.Declare(t, dir, m)
		}, "has an external data file"},
	}
	archive := filepath.Join(t.TempDir(), "crafted.tar.gz")
	for _, c := range cases {
		dir, m := snaptest.OCI(t)
		if c.cloud {
			dir, m = snaptest.Cloud(t)
		}
		c.edit(dir, m)
		if err := os.WriteFile(archive, snaptest.Pack(t, dir, m), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", c.name, harness.LastLine(env.MustFail(c.want, "snapshot", "import", "--name", "crafted", archive).Stderr))
	}
	var snaps []json.RawMessage
	if err := json.Unmarshal([]byte(env.MustRun("snapshot", "list", "-o", "json")), &snaps); err != nil || len(snaps) != 0 {
		t.Fatalf("refused imports left snapshots: %v %d", err, len(snaps))
	}
	for _, sub := range []string{"staging", "data"} {
		if left, _ := os.ReadDir(filepath.Join(env.Root, "snapshot", sub)); len(left) != 0 {
			t.Fatalf("refused imports left snapshot/%s/%v", sub, left)
		}
	}
	// The untouched archive imports: the refusals above were for what was crafted.
	dir, m := snaptest.OCI(t)
	if err := os.WriteFile(archive, snaptest.Pack(t, dir, m), 0o600); err != nil {
		t.Fatal(err)
	}
	env.MustRun("snapshot", "import", "--name", "clean", archive)
}

// A cloud-image snapshot (qcow2 overlay on another root's base blob, cidata, UEFI variables)
// passes the import checks in a second root, and clone rebases the overlay onto that root's
// own blob, checks it again and launches.
func TestCloudSnapshotImport(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
		t.Skip("OVMF firmware not found: install ovmf (make deps)")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)
	env.MustRun("vm", "run", "--name", "c1", "--nics", "0", "--cpu", "1", "--memory", "512M", url)
	env.MustRun("snapshot", "save", "--name", "cs", "c1")
	archive := filepath.Join(t.TempDir(), "cs.tar.gz")
	env.MustRun("snapshot", "export", "-o", archive, "cs")
	env.MustRun("vm", "rm", "--force", "c1")

	env2 := harness.NewEnv(t)
	env2.MustRun("snapshot", "import", "--name", "moved", archive)
	env2.MustRun("vm", "clone", "--pull", "--name", "c2", "moved")
	vm := env2.Inspect("c2")
	if vm.State != "running" {
		t.Fatalf("clone is %s, want running", vm.State)
	}
	out, err := exec.Command("qemu-img", "info", "-U", "-f", "qcow2", "--output=json", filepath.Join(vm.RunDir, snapshot.FileOverlay)).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Backing string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil || !strings.HasPrefix(info.Backing, env2.Root+"/") {
		t.Fatalf("clone overlay backs onto %q (%v), want a blob under %s", info.Backing, err, env2.Root)
	}
	env2.MustRun("vm", "rm", "--force", "c2")
}

// The state header of a clone with hot-added vCPUs (driver and topology properties as QEMU
// reports them) passes the allow-list, at import and at launch.
func TestSnapshotOfHotAddedVCPUs(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "h1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("h1"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s1", "h1")
	env.MustRun("vm", "clone", "--name", "h2", "--cpu", "2", "s1")
	env.MustRun("snapshot", "save", "--name", "s2", "h2")
	states, _ := filepath.Glob(filepath.Join(env.Root, "snapshot", "data", "*", snaptest.FileState))
	hot := 0
	for _, p := range states {
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data[:min(len(data), 4096)]), `"hot_cpus":[{"driver":"`) {
			hot++
		}
	}
	if hot != 1 {
		t.Fatalf("%d of %d state headers record a hot-added vCPU, want 1", hot, len(states))
	}
	archive := filepath.Join(t.TempDir(), "s2.tar.gz")
	env.MustRun("snapshot", "export", "-o", archive, "s2")
	env.MustRun("snapshot", "import", "--name", "s2b", archive)
	env.MustRun("vm", "clone", "--name", "h3", "s2b")
	if vm := env.Inspect("h3"); vm.State != "running" {
		t.Fatalf("clone of the hot-plugged clone is %s, want running", vm.State)
	}
}
