package e2e

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// arm64 guests on this x86 host run under TCG, several times slower than x86 ones.
const arm64BootTimeout = 8 * time.Minute

// TestArm64GuestFromMultiPlatformIndex pulls the arm64 half of an amd64+arm64 index, boots it
// under TCG, checks the guest really is aarch64, then snapshots and clones it.
func TestArm64GuestFromMultiPlatformIndex(t *testing.T) {
	harness.Require(t, "qemu-system-aarch64", "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	amd, arm := harness.RequireImage(t, "tiny"), harness.RequireImage(t, "tiny-arm64")
	env := harness.NewEnv(t)
	reg := harness.NewRegistry(t)
	multi := reg.PushIndex("cocoon/tiny:multi", amd, arm)
	amdOnly := reg.PushIndex("cocoon/tiny:amd64-index", amd)
	plain := reg.PushLayout(amd, "cocoon/tiny:plain")

	// Bad platforms: unknown strings, and images that lack the one asked for.
	env.MustFail(`unknown platform "linux/riscv64": use linux/amd64 or linux/arm64`, "image", "pull", "--platform", "linux/riscv64", multi)
	env.MustFail("no linux/arm64 image in this manifest list (it has linux/amd64)", "image", "pull", "--platform", "linux/arm64", amdOnly)
	env.MustFail("the image is linux/amd64, not linux/arm64: pull it with --platform linux/amd64", "image", "pull", "--platform", "linux/arm64", plain)
	if out := env.MustRun("image", "list"); strings.Contains(out, "tiny") {
		t.Fatalf("a refused pull stored an image:\n%s", out)
	}

	env.MustRun("image", "pull", "--platform", "linux/arm64", multi)
	if out := env.MustRun("image", "inspect", multi); !strings.Contains(out, `"platform": "linux/arm64"`) {
		t.Fatalf("image inspect does not show the platform:\n%s", out)
	}
	env.MustFail("is linux/arm64, not linux/amd64: pull it with --platform linux/amd64", "vm", "create", "--platform", "linux/amd64", "--nics", "0", multi)
	env.MustFail(`unknown platform "arm"`, "vm", "run", "--platform", "arm", "--nics", "0", multi)
	if out := env.MustRun("vm", "list"); strings.Contains(out, "tiny") {
		t.Fatalf("a refused create left a VM:\n%s", out)
	}

	res := env.Run("vm", "run", "--platform", "linux/arm64", "--name", "a1", "--nics", "0", "--cpu", "1", "--memory", "512M", multi)
	if res.Err != nil {
		t.Fatalf("vm run: %v\n%s", res.Err, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "linux/arm64 guest on a linux/amd64 host: emulated under TCG") {
		t.Fatalf("vm run did not say the guest is emulated:\n%s", res.Stderr)
	}
	vm := env.Inspect("a1")
	if vm.Accel != "tcg" {
		t.Fatalf("arm64 guest accel %q, want tcg", vm.Accel)
	}
	if out := env.MustRun("vm", "inspect", "a1"); !strings.Contains(out, `"platform": "linux/arm64"`) {
		t.Fatalf("vm inspect does not show the platform:\n%s", out)
	}
	env.WaitConsole(vm, "COCOON-READY hostname=a1", arm64BootTimeout)
	shell(t, env, "a1", "echo ARCH=$(uname -m)", "ARCH=aarch64")

	// Snapshot and clone: the clone resumes the same aarch64 guest and keeps its platform.
	env.MustRun("snapshot", "save", "--name", "as1", "a1")
	if out := env.MustRun("snapshot", "inspect", "as1"); !strings.Contains(out, `"platform": "linux/arm64"`) {
		t.Fatalf("snapshot inspect does not show the platform:\n%s", out)
	}
	env.MustFail("snapshot as1 is linux/arm64 and clones only onto linux/arm64, not linux/amd64", "vm", "clone", "--platform", "linux/amd64", "as1")
	env.MustRun("vm", "clone", "--name", "a2", "--platform", "linux/arm64", "as1")
	if out := env.MustRun("vm", "inspect", "a2"); !strings.Contains(out, `"platform": "linux/arm64"`) {
		t.Fatalf("clone lost the platform:\n%s", out)
	}
	shell(t, env, "a2", "echo CLONE-ARCH=$(uname -m)", "CLONE-ARCH=aarch64")

	// The guest agent is the arm64 build, and it powers off the virt machine, which booted
	// without firmware has no power button: the stop is a guest power-off, not SIGTERM.
	waitAgent(t, env, "a2", arm64BootTimeout)
	if out := env.MustRun("vm", "exec", "a2", "--", "uname", "-m"); strings.TrimSpace(out) != "aarch64" {
		t.Fatalf("vm exec uname -m in the arm64 clone: %q", out)
	}
	env.MustRun("vm", "stop", "a2")
	if log := env.ConsoleLog(env.Inspect("a2")); !strings.Contains(log, "reboot: Power down") {
		t.Fatalf("stop of an arm64 guest was not a guest power-off; console tail:\n%s", tail(log))
	}
}

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestDebugCommandLinePerPlatform pins the QEMU command line `vm debug` prints for an amd64
// and an arm64 guest (host-specific paths, layer digests and the probed aio mode normalised;
// after a deliberate change of the argv, rewrite them with -update).
func TestDebugCommandLinePerPlatform(t *testing.T) {
	harness.Require(t, "qemu-system-aarch64", "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	amd, arm := harness.RequireImage(t, "tiny"), harness.RequireImage(t, "tiny-arm64")
	env := harness.NewEnv(t)
	reg := harness.NewRegistry(t)
	amdRef := reg.PushIndex("cocoon/tiny:a", amd, arm)
	armRef := reg.PushIndex("cocoon/tiny:b", amd, arm)
	env.MustRun("image", "pull", amdRef) // the host's platform by default
	env.MustRun("image", "pull", "--platform", "linux/arm64", armRef)
	dir := t.TempDir()
	aio, digest := regexp.MustCompile(`aio=(io_uring|threads)`), regexp.MustCompile(`[0-9a-f]{64}`)
	maxmem := regexp.MustCompile(`maxmem=[0-9]+M`) // follows the host's RAM
	for plat, ref := range map[string]string{"amd64": amdRef, "arm64": armRef} {
		script := env.MustRun("vm", "debug", "--accel", "tcg", "--nics", "0", "--cpu", "1", "--memory", "512M", "--name", "dbg",
			"--platform", "linux/"+plat, "--cow", filepath.Join(dir, "cow-"+plat+".raw"), ref)
		// The QEMU command is the last command of the recipe, continued over lines with \.
		qemu := script[max(strings.LastIndex(script, "\nqemu-system-")+1, 0):]
		if !strings.HasPrefix(qemu, "qemu-system-") {
			t.Fatalf("%s: no QEMU command line in:\n%s", plat, script)
		}
		qemu = strings.NewReplacer(env.Root, "$ROOT", dir, "$DIR", env.MemDir, "$MEM", env.RunDir, "$RUN").Replace(qemu)
		qemu = maxmem.ReplaceAllString(digest.ReplaceAllString(aio.ReplaceAllString(strings.TrimSpace(qemu), "aio=$$AIO"), "$$DIGEST"), "maxmem=$$MAXMEM") + "\n"
		golden := filepath.Join("testdata", "debug-"+plat+".golden")
		if *updateGolden {
			if err := os.WriteFile(golden, []byte(qemu), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if qemu != string(want) {
			t.Errorf("%s debug command line differs from %s:\n got %s\nwant %s", plat, golden, qemu, want)
		}
	}
}

// TestImportArm64Layout imports the arm64 tiny image as an OCI layout tar on this host: the
// image keeps its own platform, and VMs made from it are arm64 machines.
func TestImportArm64Layout(t *testing.T) {
	harness.Require(t, "qemu-system-aarch64", "mkfs.erofs", "mkfs.ext4", "tar")
	arm := harness.RequireImage(t, "tiny-arm64")
	env := harness.NewEnv(t)
	tarFile := filepath.Join(t.TempDir(), "tiny-arm64.tar")
	if out, err := exec.Command("tar", "-C", arm, "-cf", tarFile, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	env.MustRun("image", "import", "tiny-arm64", tarFile)
	if out := env.MustRun("image", "inspect", "tiny-arm64"); !strings.Contains(out, `"platform": "linux/arm64"`) {
		t.Fatalf("imported image lost its platform:\n%s", out)
	}
	script := env.MustRun("vm", "debug", "--nics", "0", "--name", "imp", "--cow", filepath.Join(t.TempDir(), "cow.raw"), "tiny-arm64")
	if !strings.Contains(script, "qemu-system-aarch64") || !strings.Contains(script, "console=ttyAMA0") {
		t.Fatalf("debug of the imported arm64 image is not an arm64 machine:\n%s", script)
	}
}
