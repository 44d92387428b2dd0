package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

// fcStandin builds the Firecracker stand-in, points env's config at it (fc_binary) and has it
// record every API request (each validated against firecracker-swagger.yaml) in the returned
// log.
func fcStandin(t *testing.T, env *harness.Env) string {
	_, requests := standin(t, env, "firecracker", "fc_binary")
	return requests
}

// checkRequests fails the test for any request the API definition rejected, and returns the
// requests as "METHOD PATH" lines.
func checkRequests(t *testing.T, log string) string {
	t.Helper()
	recs, err := apicheck.ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		if r.Error != "" {
			t.Errorf("invalid request %s %s: %s", r.Method, r.Path, r.Error)
		}
		lines = append(lines, r.Method+" "+r.Path+" "+string(r.Body))
	}
	return strings.Join(lines, "\n")
}

// TestStandinFirecrackerLifecycle runs the Firecracker backend end to end through the cocoon
// binary, with the stand-in playing firecracker: run, console, logs, stop, start, snapshot,
// clone, restore, list beside a QEMU VM, rm, gc.
func TestStandinFirecrackerLifecycle(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	reqLog := fcStandin(t, env)
	ref := pullTiny(t, env)

	// Refused up front: what Firecracker cannot do.
	env.MustFail("Windows", "vm", "create", "--fc", "--windows", "--name", "w", "--nics", "0", ref)

	env.MustRun("vm", "run", "--fc", "--name", "f1", "--nics", "0", "--cpu", "2", "--memory", "512M", ref)
	vm := env.Inspect("f1")
	if vm.State != "running" || vm.PID == 0 {
		t.Fatalf("after run: state %s pid %d", vm.State, vm.PID)
	}
	env.WaitConsole(vm, "booted (2 vCPUs, 512 MiB", time.Minute)
	reqs := checkRequests(t, reqLog)
	for _, want := range []string{`PUT /boot-source {"kernel_image_path":"` + env.Root, `console=ttyS0`, `reboot=k`, `/dev/vda`,
		`PUT /drives/drive_0 {"drive_id":"drive_0","path_on_host":"disks/drive_0","is_root_device":false,"is_read_only":true}`,
		`PUT /actions {"action_type":"InstanceStart"}`} {
		if !strings.Contains(reqs, want) {
			t.Errorf("boot requests lack %q:\n%s", want, reqs)
		}
	}

	// Console on a real PTY through the relay: input comes back, detach leaves the VM running.
	c := env.AttachConsole("f1")
	c.Expect(0, "Connected to f1", 30*time.Second)
	c.Send("hello-fc-console\r")
	c.Expect(0, "hello-fc-console", 30*time.Second)
	c.Send("\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("console exit: %v", err)
	}
	if logs := env.MustRun("vm", "logs", "f1"); !strings.Contains(logs, "booted (2 vCPUs") || !strings.Contains(logs, "hello-fc-console") {
		t.Fatalf("vm logs:\n%s", logs)
	}

	// Graceful stop is Ctrl-Alt-Del; start boots again.
	env.MustRun("vm", "stop", "f1")
	if got := env.Inspect("f1"); got.State != "stopped" || !processGone(vm.PID) {
		t.Fatalf("after stop: %s (pid %d gone: %v)", got.State, vm.PID, processGone(vm.PID))
	}
	if reqs := checkRequests(t, reqLog); !strings.Contains(reqs, `PUT /actions {"action_type":"SendCtrlAltDel"}`) {
		t.Fatalf("stop sent no Ctrl-Alt-Del:\n%s", reqs)
	}
	env.MustRun("vm", "start", "f1")
	vm = env.Inspect("f1")

	// Snapshot, clone (same CPU/memory; growth refused), restore.
	out := env.MustRun("snapshot", "save", "--name", "s1", "f1")
	if !strings.Contains(out, "s1") {
		t.Fatalf("snapshot save printed %q", out)
	}
	env.MustFail("firecracker", "vm", "clone", "--memory", "1G", "--name", "big", "s1")
	env.MustRun("vm", "clone", "--name", "f2", "s1")
	clone := env.Inspect("f2")
	if clone.State != "running" {
		t.Fatalf("clone state %s", clone.State)
	}
	env.WaitConsole(clone, "resumed", time.Minute)
	env.MustRun("vm", "clone", "--name", "f3", "s1") // a second clone of the same snapshot, side by side
	env.MustRun("vm", "restore", "f1", "s1")
	if got := env.Inspect("f1"); got.State != "running" {
		t.Fatalf("after restore: %s", got.State)
	}
	// Export and import: the imported state files pass CheckState and clone like the original.
	archive := filepath.Join(t.TempDir(), "s1.tar")
	env.MustRun("snapshot", "export", "--gzip=false", "-o", archive, "s1")
	env.MustRun("snapshot", "import", "--name", "s1i", archive)
	env.MustRun("vm", "clone", "--name", "f4", "s1i")
	if got := env.Inspect("f4"); got.State != "running" {
		t.Fatalf("clone of the imported snapshot: %s", got.State)
	}
	reqs = checkRequests(t, reqLog)
	for _, want := range []string{`PATCH /vm {"state":"Paused"}`, `PUT /snapshot/create`, `PUT /snapshot/load`,
		`"mem_backend":{"backend_type":"File"`, `GET /vm/config`} {
		if !strings.Contains(reqs, want) {
			t.Errorf("requests lack %q:\n%s", want, reqs)
		}
	}

	// One list for every backend.
	env.MustRun("vm", "create", "--hypervisor", "qemu", "--name", "q1", "--nics", "0", ref)
	list := env.MustRun("vm", "list")
	for _, want := range [][2]string{{"f1", "running"}, {"f2", "running"}, {"f3", "running"}, {"q1", "created"}} {
		if !lineHas(list, want[0], want[1]) {
			t.Errorf("vm list lacks %v:\n%s", want, list)
		}
	}
	var vms []struct {
		Hypervisor string `json:"hypervisor"`
		Config     struct {
			Name string `json:"name"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(env.MustRun("vm", "list", "-o", "json")), &vms); err != nil {
		t.Fatal(err)
	}
	backends := map[string]string{}
	for _, v := range vms {
		backends[v.Config.Name] = v.Hypervisor
	}
	if backends["f1"] != "firecracker" || backends["f2"] != "firecracker" || backends["q1"] != "qemu" {
		t.Errorf("vm list -o json backends: %v", backends)
	}

	env.MustRun("vm", "rm", "--force", "f1", "f2", "f3", "f4", "q1")
	env.MustRun("snapshot", "rm", "s1", "s1i")
	env.MustRun("gc")
	for _, dir := range []string{env.RunDir, env.LogDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("rm left files in %s: %v", dir, entries)
		}
	}
	checkRequests(t, reqLog)
}

// TestStandinFirecrackerDebug: `vm debug --fc` prints the launch line and the API sequence.
func TestStandinFirecrackerDebug(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	fcStandin(t, env)
	ref := pullTiny(t, env)
	out := env.MustRun("vm", "debug", "--fc", "--name", "dbg", "--cpu", "2", "--memory", "512M", ref)
	for _, want := range []string{"firecracker --api-sock ", "--id debug-dbg",
		"-X PUT http://localhost/machine-config -H 'Content-Type: application/json' -d '{\"vcpu_count\":2,\"mem_size_mib\":512}'",
		"http://localhost/boot-source", "http://localhost/drives/drive_0", `"action_type":"InstanceStart"`} {
		if !strings.Contains(out, want) {
			t.Errorf("vm debug --fc lacks %q:\n%s", want, out)
		}
	}
}

// TestStandinFirecrackerNIC: FC opens the VM's TAP by name inside the VM's netns (the
// stand-in attaches it as FC does: single queue, refused when held elsewhere); a clone gets
// its own TAP through network_overrides and keeps the snapshot's MAC.
func TestStandinFirecrackerNIC(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4", "nsenter")
	env := harness.NewEnv(t)
	reqLog := fcStandin(t, env)
	ref := pullTiny(t, env)
	harness.NewHostNet(t, env, 83)

	env.MustRun("vm", "run", "--fc", "--name", "n1", "--nics", "1", "--cpu", "2", "--memory", "512M", ref)
	vm := env.Inspect("n1")
	if vm.State != "running" || len(vm.Networks) != 1 {
		t.Fatalf("after run: state %s, %d NICs", vm.State, len(vm.Networks))
	}
	nic := vm.Networks[0]
	want := `PUT /network-interfaces/eth0 {"iface_id":"eth0","host_dev_name":"` + nic.Tap + `","guest_mac":"` + nic.MAC + `"}`
	if reqs := checkRequests(t, reqLog); !strings.Contains(reqs, want) {
		t.Fatalf("requests lack %s:\n%s", want, reqs)
	}

	env.MustRun("snapshot", "save", "--name", "ns", "n1")
	env.MustRun("vm", "clone", "--name", "n2", "ns")
	clone := env.Inspect("n2")
	if clone.State != "running" || len(clone.Networks) != 1 || clone.Networks[0].Tap == nic.Tap {
		t.Fatalf("clone: state %s, NICs %+v", clone.State, clone.Networks)
	}
	want = `"network_overrides":[{"iface_id":"eth0","host_dev_name":"` + clone.Networks[0].Tap + `"}]`
	if reqs := checkRequests(t, reqLog); !strings.Contains(reqs, want) {
		t.Fatalf("requests lack %s:\n%s", want, reqs)
	}
	env.MustRun("vm", "stop", "n1", "n2")
	env.MustRun("vm", "rm", "n1", "n2")
}
