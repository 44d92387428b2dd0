package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// byTinySerial is a tiny-guest shell snippet setting $dev to the disk whose virtio serial is
// $1 (busybox has no /dev/disk/by-id).
const byTinySerial = `disk() { for d in /sys/block/vd*; do s=$(cat $d/serial 2>/dev/null || cat $d/device/serial); [ "$s" = "$1" ] && dev=/dev/${d##*/}; done; }; `

func TestDataDiskSnapshotCloneRestart(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4", "tar")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustFail("--data-disk: size= required", "vm", "create", "--nics", "0", "--data-disk", "name=x", ref)
	env.MustFail("--data-disk 2: fstype=none requires empty mount", "vm", "create", "--nics", "0",
		"--data-disk", "size=64M", "--data-disk", "size=64M,fstype=none,mount=/x", ref)
	env.MustFail(`invalid name "cocoon-x"`, "vm", "create", "--nics", "0", "--data-disk", "size=64M,name=cocoon-x", ref)

	env.MustRun("vm", "run", "--name", "dd", "--nics", "0", "--cpu", "1", "--memory", "512M",
		"--data-disk", "name=scratch,size=64M", "--data-disk", "size=32M,fstype=none", ref)
	vm := env.Inspect("dd")
	for name, size := range map[string]int64{"data-scratch.raw": 64 << 20, "data-data1.raw": 32 << 20} {
		st, err := os.Stat(filepath.Join(vm.RunDir, name))
		if err != nil {
			t.Fatalf("data disk file: %v", err)
		}
		if st.Size() != size || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Blocks*512 >= size {
			t.Fatalf("%s: size %d mode %v blocks %d: want sparse %d bytes, mode 0600", name, st.Size(), st.Mode(), st.Sys().(*syscall.Stat_t).Blocks, size)
		}
	}
	env.WaitConsole(vm, "COCOON-READY", bootTimeout)
	mount := byTinySerial + "disk scratch; mkdir -p /mnt/scratch; mount -t ext4 $dev /mnt/scratch"
	out := shell(t, env, "dd", byTinySerial+"disk data1; echo raw=$dev; "+mount+" && echo hello-data > /mnt/scratch/f && sync && echo W-$((1+1))", "W-2")
	if !strings.Contains(out, "raw=/dev/vd") {
		t.Fatalf("the guest does not see the fstype=none disk by its serial data1:\n%s", out)
	}

	env.MustRun("snapshot", "save", "--name", "dds", "dd")
	archive := filepath.Join(t.TempDir(), "dds.tar")
	env.MustRun("snapshot", "export", "-o", archive, "dds")
	if out, err := exec.Command("tar", "-tf", archive).CombinedOutput(); err != nil || !strings.Contains(string(out), "data-scratch.raw") {
		t.Fatalf("export lacks the data disk: %v\n%s", err, out)
	}
	env.MustRun("snapshot", "import", "--name", "dds2", archive)

	// The clone reads the file from its own copy of the disk (remounted: not the page cache).
	env.MustRun("vm", "clone", "--name", "ddc", "dds2")
	remount := byTinySerial + "disk scratch; umount /mnt/scratch && mount -t ext4 $dev /mnt/scratch && cat /mnt/scratch/f"
	shell(t, env, "ddc", remount+"; echo clone-only > /mnt/scratch/g; sync", "hello-data")
	clone := env.Inspect("ddc")

	// A restart keeps the data; the clone's write is not in the source's disk.
	env.MustRun("vm", "stop", "dd")
	env.MustRun("vm", "start", "dd")
	deadline := time.Now().Add(bootTimeout)
	for strings.Count(env.ConsoleLog(vm), "COCOON-READY") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("dd did not boot again")
		}
		time.Sleep(time.Second)
	}
	out = shell(t, env, "dd", mount+" && cat /mnt/scratch/f; ls /mnt/scratch/g 2>&1", "hello-data")
	if !strings.Contains(out, "No such file") {
		t.Fatalf("the clone's write reached the source's data disk:\n%s", out)
	}

	// Restore rolls the data disk back to the snapshot with the rest of the VM.
	shell(t, env, "dd", "echo after > /mnt/scratch/after; sync", "")
	env.MustRun("vm", "restore", "dd", "dds")
	out = shell(t, env, "dd", remount+"; ls /mnt/scratch/after 2>&1", "hello-data")
	if !strings.Contains(out, "No such file") {
		t.Fatalf("a file written after the snapshot survived restore on the data disk:\n%s", out)
	}

	env.MustRun("vm", "rm", "--force", "ddc")
	if _, err := os.Stat(filepath.Join(clone.RunDir, "data-scratch.raw")); !os.IsNotExist(err) {
		t.Fatalf("rm left the clone's data disk: %v", err)
	}
}
