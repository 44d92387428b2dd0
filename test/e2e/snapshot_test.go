package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

var counterRE = regexp.MustCompile(`COUNTER (\d+)`)

// counters returns the COUNTER values printed in a console log, in order.
func counters(log string) []int {
	var out []int
	for _, m := range counterRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// shell opens the VM's console, runs cmd at the tiny prompt and returns what it printed (up to
// an end marker the command line itself cannot contain), after checking it contains want.
func shell(t *testing.T, env *harness.Env, vm, cmd, want string) string {
	t.Helper()
	c := env.AttachConsole(vm)
	pos := c.Prompt("tiny# ", time.Minute)
	c.Send(cmd + "; echo END-$((6*7))\r")
	end := c.Expect(pos, "END-42", 2*time.Minute)
	out := c.Output()[pos:end]
	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("console exit: %v", err)
	}
	if !strings.Contains(out, want) {
		t.Fatalf("VM %s: %q printed no %q:\n%s", vm, cmd, want, out)
	}
	return out
}

func snapshotID(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("snapshot save printed %q", out)
	}
	return f[0]
}

func TestSnapshotCloneCounterAndClones(t *testing.T) {
	harness.ForEachBackend(t, snapshotCloneCounterAndClones)
}

func snapshotCloneCounterAndClones(t *testing.T, b harness.Backend) {
	env, h, ref := netEnv(t, 51)
	env.MustRun(append(append([]string{"vm", "run"}, b.Flags...), "--name", "src", "--cpu", "1", "--memory", "512M", ref)...)
	src := env.Inspect("src")
	env.WaitConsole(src, "COCOON-READY", bootTimeout)
	shell(t, env, "src", "echo before-snap > /root/marker; (cocoon-counter &)", "")
	env.WaitConsole(src, "COUNTER 20", time.Minute)

	env.MustFail("snapshot not found", "vm", "clone", "nope")
	env.MustRun("snapshot", "save", "--name", "s1", "--description", "counter running", "src")
	savedAt := counters(env.ConsoleLog(src))
	atSave := savedAt[len(savedAt)-1]
	// The original keeps running during and after the save.
	env.WaitConsole(src, fmt.Sprintf("COUNTER %d", atSave+10), time.Minute)
	if list := env.MustRun("snapshot", "list"); !strings.Contains(list, "s1") || !strings.Contains(list, "counter running") {
		t.Fatalf("snapshot list:\n%s", list)
	}

	// Five clones of one snapshot at once, each with its own IP, each reachable once the guest
	// takes its new address (the printed hints).
	var clones []harness.VM
	for i := range 5 {
		name := fmt.Sprintf("c%d", i)
		out := env.MustRun("vm", "clone", "--name", name, "s1")
		if !strings.Contains(out, "ip addr add") {
			t.Fatalf("clone printed no network hints:\n%s", out)
		}
		clones = append(clones, env.Inspect(name))
	}
	ips := map[string]bool{src.Networks[0].IP: true}
	for _, c := range clones {
		if c.State != "running" || len(c.Networks) != 1 || ips[c.Networks[0].IP] {
			t.Fatalf("clone %s: state %s networks %+v (IPs must be unique)", c.Name, c.State, c.Networks)
		}
		ips[c.Networks[0].IP] = true
		if c.Networks[0].MAC == src.Networks[0].MAC && b.Name != "firecracker" { // FC cannot change a restored MAC
			t.Fatalf("clone %s kept the source MAC", c.Name)
		}
	}
	// The counter continues from the snapshot value in a clone (not from 0).
	c0log := env.WaitConsole(clones[0], "COUNTER", time.Minute)
	first := counters(c0log)[0]
	if first < atSave-5 || first > atSave+50 {
		t.Fatalf("clone counter starts at %d, snapshot was at %d", first, atSave)
	}
	for _, c := range clones {
		n := c.Networks[0]
		out := shell(t, env, c.Name, fmt.Sprintf("cat /root/marker; cat /sys/class/net/eth0/address; ip link set dev eth0 up && ip addr flush dev eth0 && ip addr add %s/24 dev eth0 && echo NET-$((1+1))", n.IP), "NET-2")
		if !strings.Contains(out, "before-snap") || !strings.Contains(out, n.MAC) && b.Name != "firecracker" {
			t.Fatalf("clone %s: marker or new MAC missing in guest:\n%s", c.Name, out)
		}
		if res, err := h.Exec("ping", "-c", "3", "-W", "5", n.IP); err != nil {
			t.Fatalf("ping clone %s at %s: %v\n%s", c.Name, n.IP, err, res)
		}
	}
}

func TestRestoreAndResources(t *testing.T) {
	env, _, ref := netEnv(t, 52)
	env.MustRun("vm", "run", "--name", "r1", "--cpu", "1", "--memory", "512M", ref)
	env.MustRun("vm", "run", "--name", "other", "--cpu", "1", "--memory", "512M", "--nics", "0", ref)
	r1 := env.Inspect("r1")
	env.WaitConsole(r1, "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "base", "r1")
	shell(t, env, "r1", "echo after > /root/after-snap && sync && echo WROTE-$((1+1))", "WROTE-2")

	env.MustFail("was not taken from VM other", "vm", "restore", "other", "base")
	env.MustFail("below the snapshot", "vm", "restore", "--cpu", "1", "--memory", "256M", "r1", "base")
	env.MustRun("vm", "restore", "r1", "base")
	after := env.Inspect("r1")
	if after.State != "running" || after.Networks[0].IP != r1.Networks[0].IP || after.Networks[0].MAC != r1.Networks[0].MAC {
		t.Fatalf("restore changed identity or state: %+v → %+v", r1, after)
	}
	out := shell(t, env, "r1", "ls /root/after-snap 2>&1", "No such file")
	if !strings.Contains(out, "No such file") {
		t.Fatalf("file written after the snapshot survived restore:\n%s", out)
	}

	// Clone resources: bigger CPU count is hot-added, smaller is refused.
	env.MustFail("below the snapshot", "vm", "clone", "--memory", "256M", "base")
	if out := env.Run("vm", "clone", "--name", "big", "--cpu", "2", "base"); out.Err != nil {
		t.Fatalf("clone with more CPUs: %v\n%s", out.Err, out.Stderr)
	}
	present := shell(t, env, "big", "cat /sys/devices/system/cpu/present", "0-1")
	if !strings.Contains(present, "0-1") {
		t.Fatalf("guest does not see the hot-added vCPU:\n%s", present)
	}
	checkMemoryAndNICGrowth(t, env)
	env.MustRun("vm", "stop", "other")
	env.MustFail("is not running", "snapshot", "save", "other")
}

func TestSnapshotExportImportAcrossRoots(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "tar")
	env := harness.NewEnv(t)
	layout := harness.RequireImage(t, "tiny")
	reg := harness.NewRegistry(t)
	ref := reg.PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	env.MustRun("vm", "run", "--name", "x1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	x1 := env.Inspect("x1")
	env.WaitConsole(x1, "COCOON-READY", bootTimeout)
	shell(t, env, "x1", "echo exported > /root/marker; sync", "")
	env.MustRun("snapshot", "save", "--name", "xs", "--description", "with marker", "x1")

	// snapshot inspect has the original's shape: the source's image and hypervisor on top.
	var si struct {
		ID          string    `json:"id"`
		Name        string    `json:"name"`
		Description string    `json:"description"`
		Image       string    `json:"image"`
		ImageDigest string    `json:"image_digest"`
		Hypervisor  string    `json:"hypervisor"`
		CPU         int       `json:"cpu"`
		Memory      int64     `json:"memory"`
		CreatedAt   time.Time `json:"created_at"`
	}
	decodeStrict(t, "snapshot inspect", env.MustRun("snapshot", "inspect", "xs"), &si)
	if si.Name != "xs" || si.Image != ref || !strings.HasPrefix(si.ImageDigest, "sha256:") || si.Hypervisor == "" || si.CPU != 1 || si.Memory != 512<<20 {
		t.Fatalf("snapshot inspect: %+v", si)
	}

	// A plain tar export (--gzip=false) imports elsewhere with the archive's name and description.
	plainPath := filepath.Join(t.TempDir(), "xs.tar")
	env.MustRun("snapshot", "export", "--gzip=false", "-o", plainPath, "xs")
	if out, err := exec.Command("tar", "-tf", plainPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "manifest.json") {
		t.Fatalf("GNU tar cannot list the plain export: %v\n%s", err, out)
	}
	env3 := harness.NewEnv(t)
	env3.MustRun("snapshot", "import", plainPath)
	decodeStrict(t, "imported snapshot", env3.MustRun("snapshot", "inspect", "xs"), &si)
	if si.Name != "xs" || si.Description != "with marker" {
		t.Fatalf("import did not keep the archive's name and description: %+v", si)
	}

	// A file export is readable by GNU tar.
	archivePath := filepath.Join(t.TempDir(), "xs.tar.gz")
	env.MustRun("snapshot", "export", "-o", archivePath, "xs")
	if out, err := exec.Command("tar", "-tzf", archivePath).CombinedOutput(); err != nil || !strings.Contains(string(out), "manifest.json") {
		t.Fatalf("GNU tar cannot list the export: %v\n%s", err, out)
	}

	// export -o - | import into a second root, then clone there (with --pull of the image).
	env2 := harness.NewEnv(t)
	exp := env.Cmd(t.Context(), "snapshot", "export", "-o", "-", "xs")
	imp := env2.Cmd(t.Context(), "snapshot", "import", "--name", "moved")
	pipe, err := exp.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	if r := env2.RunCmd(imp); r.Err != nil {
		t.Fatalf("import: %v\n%s", r.Err, r.Stderr)
	}
	if err := exp.Wait(); err != nil {
		t.Fatalf("export: %v", err)
	}
	env2.MustFail("--pull", "vm", "clone", "--name", "y1", "moved")
	env2.MustRun("vm", "clone", "--pull", "--name", "y1", "moved")
	out := shell(t, env2, "y1", "cat /root/marker", "exported")
	if !strings.Contains(out, "exported") {
		t.Fatalf("clone in the second root lacks the guest state:\n%s", out)
	}

	// GC and image rm never remove what a snapshot references: with the VM and the image entry
	// gone, the layer blobs stay, and a clone re-registers the image without converting again.
	env.MustRun("vm", "rm", "--force", "x1")
	env.MustRun("image", "rm", ref)
	env.MustRun("gc")
	blobs, _ := filepath.Glob(filepath.Join(env.Root, "oci", "blobs", "*.erofs"))
	if len(blobs) == 0 {
		t.Fatal("gc removed layer blobs a snapshot references")
	}
	env.MustRun("vm", "clone", "--pull", "--name", "x2", "xs")
	if out := shell(t, env, "x2", "cat /root/marker", "exported"); !strings.Contains(out, "exported") {
		t.Fatal("clone after gc lost the guest state")
	}

	// Truncated and corrupt archives are refused and leave nothing.
	data, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.tar.gz")
	for _, variant := range [][]byte{data[:len(data)/2], flipByte(data, len(data)/3)} {
		if err := os.WriteFile(bad, variant, 0o600); err != nil {
			t.Fatal(err)
		}
		env2.MustFail("import snapshot", "snapshot", "import", "--name", "broken", bad)
	}
	var snaps []json.RawMessage
	if err := json.Unmarshal([]byte(env2.MustRun("snapshot", "list", "-o", "json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("failed imports left snapshots: %v %d", err, len(snaps))
	}
	if entries, _ := os.ReadDir(filepath.Join(env2.Root, "snapshot", "staging")); len(entries) != 0 {
		t.Fatalf("failed imports left staging dirs: %v", entries)
	}
}

func flipByte(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}

// checkMemoryAndNICGrowth clones snapshot "base" (512 MiB, 1 NIC) with more memory and a second
// NIC, both hot-added, then clones a snapshot of that clone with more memory again: the first
// DIMM is relaunched from the recorded layout, the second hot-added.
func checkMemoryAndNICGrowth(t *testing.T, env *harness.Env) {
	t.Helper()
	env.MustFail("steps of 128 MiB", "vm", "clone", "--memory", "600M", "base")
	env.MustRun("vm", "clone", "--name", "grown", "--memory", "1G", "--nics", "2", "--on-demand", "base")
	grown := env.Inspect("grown")
	if len(grown.Networks) != 2 {
		t.Fatalf("clone with --nics 2 has networks %+v", grown.Networks)
	}
	memTotal := func(vm string, atLeastMiB int) {
		t.Helper()
		// The guest plugs the clone's new NICs after the clone command returns (it returns once
		// the guest runs): wait for them to show up.
		mac := env.Inspect(vm).Networks[1].MAC
		out := shell(t, env, vm, "cat /sys/class/net/*/address; grep MemTotal /proc/meminfo", "MemTotal")
		for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(out, mac) && time.Now().Before(deadline); {
			time.Sleep(2 * time.Second)
			out = shell(t, env, vm, "cat /sys/class/net/*/address; grep MemTotal /proc/meminfo", "MemTotal")
		}
		var kb int
		if _, err := fmt.Sscanf(out[strings.Index(out, "MemTotal:"):], "MemTotal: %d kB", &kb); err != nil || kb>>10 < atLeastMiB {
			t.Fatalf("VM %s: guest MemTotal %d MiB, want at least %d MiB:\n%s", vm, kb>>10, atLeastMiB, out)
		}
		if !strings.Contains(out, mac) {
			t.Fatalf("VM %s: the guest lacks the hot-added NIC's MAC:\n%s", vm, out)
		}
	}
	memTotal("grown", 900)
	env.MustRun("snapshot", "save", "--name", "grown-snap", "grown")
	env.MustRun("vm", "clone", "--name", "grown2", "--memory", "1280M", "grown-snap")
	memTotal("grown2", 1150)
}
