package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// login logs in on a fresh console session and returns the output position after the prompt.
func login(t *testing.T, c *harness.Console, user, password, prompt string) int {
	t.Helper()
	pos := c.Prompt("login:", 2*time.Minute)
	c.Send(user + "\r")
	pos = c.Expect(pos, "assword:", time.Minute)
	c.Send(password + "\r")
	return c.Expect(pos, prompt, 2*time.Minute)
}

func TestDebianSystemdLogin(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	layout := harness.RequireImage(t, "debian")
	env := harness.NewEnv(t)
	ref := harness.NewRegistry(t).PushLayout(layout, "cocoon/debian:12")
	env.MustRun("image", "pull", ref)

	env.MustRun("vm", "run", "--name", "deb1", "--nics", "0", "--cpu", "2", "--memory", "1G", ref)
	vm := env.Inspect("deb1")
	env.WaitConsole(vm, "login:", 5*time.Minute)
	c := env.AttachConsole("deb1")
	pos := login(t, c, "root", "cocoon", "#")
	c.Send("hostname; systemctl is-system-running --wait; echo done-$((40+2))\r")
	pos = c.Expect(pos, "deb1", time.Minute)
	c.Expect(pos, "done-42", 2*time.Minute)
	c.Send("echo snapped > /root/marker; sync; echo m-$((1+1))\r")
	pos = c.Expect(pos, "m-2", time.Minute)
	c.Send("exit\r") // log out, so the clone resumes at a login prompt
	c.Expect(pos, "login:", time.Minute)
	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Snapshot the running systemd guest, clone it, log in on the clone's console.
	env.MustRun("snapshot", "save", "--name", "deb-snap", "deb1")
	env.MustRun("vm", "clone", "--name", "deb-clone", "deb-snap")
	cc := env.AttachConsole("deb-clone")
	pos = login(t, cc, "root", "cocoon", "#")
	cc.Send("cat /root/marker; systemctl is-system-running; echo clone-$((40+2))\r")
	pos = cc.Expect(pos, "snapped", time.Minute)
	cc.Expect(pos, "clone-42", time.Minute)
	cc.Send("\r\x1d.")
	if err := cc.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}

	env.MustRun("vm", "stop", "deb1", "deb-clone")
	if !processGone(vm.PID) {
		t.Fatal("debian VM still running after stop")
	}
}

func TestCloudImageUEFIAndCloudInit(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
		t.Skip("OVMF firmware not found: install ovmf (make deps)")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)

	env.MustFail("--windows requires a cloud image", "vm", "create", "--windows", "--nics", "0", pullTiny(t, env))
	env.MustFail("is smaller than image", "vm", "create", "--nics", "0", "--storage", "1G", url)

	env.MustRun("vm", "run", "--name", "cloud1", "--nics", "0", "--cpu", "2", "--memory", "1G",
		"--user", "alice", "--password", "s3cret-pw", url)
	vm := env.Inspect("cloud1")
	cmdline := filepath.Join(vm.RunDir, "cmdline")
	if data, _ := os.ReadFile(cmdline); !strings.Contains(string(data), "cidata.img") {
		t.Fatalf("first boot lacks the cidata disk:\n%s", data)
	}
	// The login prompt shows a few seconds before cloud-init has set the password.
	env.WaitConsole(vm, "finished at", 8*time.Minute)
	c := env.AttachConsole("cloud1")
	pos := login(t, c, "alice", "s3cret-pw", "$")
	c.Send("hostname; echo ok-$((40+2))\r")
	pos = c.Expect(pos, "cloud1", time.Minute)
	c.Expect(pos, "ok-42", time.Minute)
	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	env.MustRun("vm", "stop", "cloud1")
	if log := env.ConsoleLog(vm); !strings.Contains(log, "reboot: Power down") {
		t.Fatalf("cloud VM did not power off through ACPI; console tail:\n%s", tail(log))
	}

	// Second start: cloud-init already ran, the seed disk is not attached any more.
	env.MustRun("vm", "start", "cloud1")
	if data, _ := os.ReadFile(cmdline); strings.Contains(string(data), "cidata.img") {
		t.Fatalf("second boot still attaches cidata:\n%s", data)
	}
	env.MustRun("vm", "rm", "--force", "cloud1")
}

// A cloud image VM with a NIC gets its CNI address through the cidata netplan config.
func TestCloudImageNetwork(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img", "nsenter")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI bridge plugin binary not found in /usr/lib/cni: install containernetworking-plugins")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)
	h := harness.NewHostNet(t, env, 45)
	env.MustRun("vm", "run", "--name", "cnet", "--cpu", "2", "--memory", "1G", url)
	vm := env.Inspect("cnet")
	env.WaitConsole(vm, "finished at", 8*time.Minute)
	ip := vm.Networks[0].IP
	if out, err := h.Exec("ping", "-c", "3", "-W", "5", ip); err != nil {
		t.Fatalf("cloud guest not reachable at its CNI address %s: %v\n%s", ip, err, out)
	}
	env.MustRun("vm", "rm", "--force", "cnet")
}
