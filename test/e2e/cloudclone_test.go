package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// A clone of a cloud-image VM gets its own cloud-init seed: after the printed hints it has its
// own hostname and its CNI address. The data disk is mounted by cloud-init and carried along.
func TestCloudImageCloneIdentityAndDataDisk(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img", "nsenter", "mkfs.ext4")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI bridge plugin binary not found in /usr/lib/cni: install containernetworking-plugins")
	}
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
		t.Skip("OVMF firmware not found: install ovmf (make deps)")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)
	h := harness.NewHostNet(t, env, 67)
	env.MustRun("vm", "run", "--name", "csrc", "--cpu", "2", "--memory", "1G", "--data-disk", "name=scratch,size=64M", url)
	src := env.Inspect("csrc")
	env.WaitConsole(src, "finished at", 15*time.Minute) // TCG on a loaded host

	c := env.AttachConsole("csrc")
	pos := login(t, c, "root", "cocoon", "#")
	c.Send("findmnt -n -o SOURCE,TARGET /mnt/scratch && echo from-src > /mnt/scratch/f && sync && echo ok-$((40+2))\r")
	pos = c.Expect(pos, "ok-42", 2*time.Minute)
	c.Send("exit\r") // log out, so the clone resumes at a login prompt
	c.Expect(pos, "login:", time.Minute)
	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}

	env.MustRun("snapshot", "save", "--name", "csnap", "csrc")
	out := env.MustRun("vm", "clone", "--name", "cclone", "csnap")
	var hints []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "echo 3") || strings.HasPrefix(l, "rm -f") || strings.HasPrefix(l, "cloud-init") {
			hints = append(hints, l)
		}
	}
	if len(hints) != 5 {
		t.Fatalf("clone printed unexpected hints:\n%s", out)
	}
	clone := env.Inspect("cclone")
	cc := env.AttachConsole("cclone")
	pos = login(t, cc, "root", "cocoon", "#")
	cc.Send(strings.Join(hints, "; ") + "; cat /mnt/scratch/f; hostname; echo id-$((40+2))\r")
	pos = cc.Expect(pos, "id-42", 8*time.Minute)
	got := cc.Output()[pos-300:]
	if !strings.Contains(got, "from-src") || !strings.Contains(got, "\ncclone") {
		t.Fatalf("clone lacks the data disk file or its own hostname:\n%s", got)
	}
	cc.Send("\r\x1d.")
	if err := cc.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	ip := clone.Networks[0].IP
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := h.Exec("ping", "-c", "1", "-W", "3", ip)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clone not reachable at its CNI address %s after the hints: %v\n%s", ip, err, res)
		}
		time.Sleep(time.Second)
	}
}

// The host side of a cloud clone's fresh identity, without waiting for the guest: the clone's
// seed names the clone, the source's seed is untouched, and when the snapshot was taken after
// a restart (no seed disk attached) the seed is hot-plugged on a root port recorded in the
// clone's device layout. No NICs: a guest still booting cannot release swapped NICs.
func TestCloudCloneSeedHostSide(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img", "mkfs.ext4")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
		t.Skip("OVMF firmware not found: install ovmf (make deps)")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)
	env.MustRun("vm", "run", "--name", "hsrc", "--nics", "0", "--cpu", "1", "--memory", "1G", "--data-disk", "name=scratch,size=64M", url)
	src := env.Inspect("hsrc")
	env.WaitConsole(src, "Linux version", 10*time.Minute)
	seed := func(runDir string) string {
		t.Helper()
		data, err := os.ReadFile(runDir + "/cidata.img")
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}

	// Snapshot with the seed attached (first boot): the clone's copy gets new contents.
	env.MustRun("snapshot", "save", "--name", "first", "hsrc")
	env.MustRun("vm", "clone", "--name", "hc1", "first")
	c1 := env.Inspect("hc1")
	s1 := seed(c1.RunDir)
	for _, want := range []string{"instance-id: " + c1.ID, "local-hostname: hc1", "virtio-scratch, /mnt/scratch"} {
		if !strings.Contains(s1, want) {
			t.Errorf("clone seed lacks %q", want)
		}
	}
	if strings.Contains(s1, "chpasswd") {
		t.Error("clone seed resets the password")
	}
	if s := seed(src.RunDir); !strings.Contains(s, "local-hostname: hsrc") || !strings.Contains(s, "chpasswd") {
		t.Error("the source's seed changed")
	}

	// After a restart the source runs without its seed; a clone of that gets one hot-plugged.
	env.MustRun("vm", "stop", "--force", "hsrc")
	env.MustRun("vm", "start", "hsrc")
	env.MustRun("snapshot", "save", "--name", "second", "hsrc")
	env.MustRun("vm", "clone", "--name", "hc2", "second")
	c2 := env.Inspect("hc2")
	if s := seed(c2.RunDir); !strings.Contains(s, "local-hostname: hc2") {
		t.Error("the hot-plugged clone seed does not name the clone")
	}
	layout, err := os.ReadFile(c2.RunDir + "/layout.json")
	if err != nil || !strings.Contains(string(layout), `"bus": "rp`) {
		t.Fatalf("clone layout records no hot-plugged disk: %v\n%s", err, layout)
	}
	// The clone with its hot-plugged seed snapshots and clones again (disk relaunched on its port).
	env.MustRun("snapshot", "save", "--name", "third", "hc2")
	env.MustRun("vm", "clone", "--name", "hc3", "third")
	if c3 := env.Inspect("hc3"); c3.State != "running" {
		t.Fatalf("clone of a clone with a hot-plugged seed: state %s", c3.State)
	}
}
