package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

// chStandin builds the Cloud Hypervisor stand-in and points env's config at it; every API
// request it receives is recorded to the returned log (and checked against the official API).
func chStandin(t *testing.T, env *harness.Env) (binary, requests string) {
	return standin(t, env, "cloud-hypervisor", "ch_binary")
}

// standin builds the stand-in test/standin/<name>, names it in env's config under key, and
// has it record every API request it receives (each validated against the hypervisor's API
// definition) in the returned log.
func standin(t *testing.T, env *harness.Env, name, key string) (binary, requests string) {
	t.Helper()
	dir := t.TempDir()
	binary = filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", binary, "./test/standin/"+name)
	cmd.Dir = harness.Repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the %s stand-in: %v\n%s", name, err, out)
	}
	requests = filepath.Join(dir, "requests.jsonl")
	f, err := os.OpenFile(env.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(key + ": " + binary + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	env.ExtraEnv = append(env.ExtraEnv, "COCOON_STANDIN_LOG="+requests)
	return binary, requests
}

// requestsSeen returns the recorded requests as "METHOD PATH" lines and fails on any the API
// definition rejected.
func requestsSeen(t *testing.T, log string) string {
	t.Helper()
	recs, err := apicheck.ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		if r.Error != "" {
			t.Errorf("request rejected by the CH API definition: %s %s: %s", r.Method, r.Path, r.Error)
		}
		b.WriteString(r.Method + " " + r.Path + "\n")
	}
	return b.String()
}

// TestStandinCloudHypervisorLifecycle drives the whole VM lifecycle through the cocoon binary
// on the Cloud Hypervisor backend, with the stand-in playing cloud-hypervisor.
func TestStandinCloudHypervisorLifecycle(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	_, requests := chStandin(t, env)
	ref := pullTiny(t, env)
	ch := []string{"--hypervisor", "cloud-hypervisor"}

	env.MustRun(append(append([]string{"vm", "run"}, ch...), "--name", "c1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)...)
	vm := env.Inspect("c1")
	if vm.State != "running" || vm.PID == 0 {
		t.Fatalf("after run: state %s pid %d", vm.State, vm.PID)
	}
	cmdline, err := os.ReadFile(filepath.Join(vm.RunDir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--console pty", "--serial off", "console=hvc0", "serial=cocoon-cow", "--api-socket"} {
		if !strings.Contains(string(cmdline), want) {
			t.Errorf("launch command line lacks %q:\n%s", want, cmdline)
		}
	}

	// Console on a real PTY: the guest's echo comes back; ^] . detaches and the VM runs on.
	c := env.AttachConsole("c1")
	c.Expect(0, "Connected to c1", 30*time.Second)
	at := len(c.Output())
	c.Send("hello-from-e2e\r")
	c.Expect(at, "hello-from-e2e", 30*time.Second)
	c.Send("\x1d.")
	if err := c.Wait(30 * time.Second); err != nil {
		t.Fatalf("console detach: %v", err)
	}
	if logs := env.MustRun("vm", "logs", "c1"); !strings.Contains(logs, "guest booted") || !strings.Contains(logs, "hello-from-e2e") {
		t.Errorf("vm logs lacks the banner or the echo:\n%s", logs)
	}

	env.MustRun("vm", "stop", "c1")
	if vm := env.Inspect("c1"); vm.State != "stopped" {
		t.Fatalf("after stop: %s", vm.State)
	}
	env.MustRun("vm", "start", "c1")
	if vm := env.Inspect("c1"); vm.State != "running" {
		t.Fatalf("after start: %s", vm.State)
	}

	// Snapshot, clone with growth, restore.
	env.MustRun("snapshot", "save", "--name", "s1", "c1")
	env.MustRun("vm", "clone", "--name", "c2", "--cpu", "2", "--memory", "640M", "--on-demand", "s1")
	if data, _ := os.ReadFile(requests); !strings.Contains(string(data), `"memory_restore_mode":"OnDemand"`) {
		t.Error("--on-demand did not reach vm.restore")
	}
	if vm := env.Inspect("c2"); vm.State != "running" {
		t.Fatalf("clone: %s", vm.State)
	}
	// Export and import (the imported state files are checked before anything reaches CH),
	// then a clone from the imported copy.
	archive := filepath.Join(t.TempDir(), "s1.tar.gz")
	env.MustRun("snapshot", "export", "-o", archive, "s1")
	env.MustRun("snapshot", "import", "--name", "s1moved", archive)
	env.MustRun("vm", "clone", "--name", "c3", "s1moved")
	if vm := env.Inspect("c3"); vm.State != "running" {
		t.Fatalf("clone of the imported snapshot: %s", vm.State)
	}
	env.MustRun("vm", "rm", "--force", "c3")
	env.MustRun("snapshot", "rm", "s1moved")

	env.MustRun("vm", "restore", "c1", "s1")
	if vm := env.Inspect("c1"); vm.State != "running" {
		t.Fatalf("after restore: %s", vm.State)
	}

	// A QEMU VM beside them: one list shows both backends.
	env.MustRun("vm", "create", "--hypervisor", "qemu", "--name", "q1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	var listed []struct {
		Hypervisor string `json:"hypervisor"`
		Config     struct {
			Name string `json:"name"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(env.MustRun("vm", "list", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	backends := map[string]string{}
	for _, v := range listed {
		backends[v.Config.Name] = v.Hypervisor
	}
	if want := map[string]string{"c1": "cloud-hypervisor", "c2": "cloud-hypervisor", "q1": "qemu"}; !maps.Equal(backends, want) {
		t.Errorf("vm list backends %v, want %v", backends, want)
	}

	env.MustRun("vm", "rm", "--force", "c1", "c2", "q1")
	env.MustRun("snapshot", "rm", "s1")
	env.MustRun("gc")

	seen := requestsSeen(t, requests)
	for _, want := range []string{"GET /api/v1/vm.info", "PUT /api/v1/vm.shutdown", "PUT /api/v1/vm.pause",
		"PUT /api/v1/vm.snapshot", "PUT /api/v1/vm.resume", "PUT /api/v1/vm.restore", "PUT /api/v1/vm.resize"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the stand-in never saw %s; requests:\n%s", want, seen)
		}
	}
	if pids := processesNaming(env.RunDir); len(pids) > 0 {
		t.Errorf("processes left after rm: %v", pids)
	}
}

// processesNaming lists processes whose command line contains s.
func processesNaming(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestStandinCloudHypervisorDebugCommand: `vm debug` for Cloud Hypervisor prints a command
// line the (stand-in) cloud-hypervisor accepts and boots from a shell.
func TestStandinCloudHypervisorDebugCommand(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	bin, _ := chStandin(t, env)
	ref := pullTiny(t, env)
	dir := t.TempDir()
	script := env.MustRun("vm", "debug", "--hypervisor", "cloud-hypervisor", "--nics", "0", "--cpu", "1", "--memory", "512M",
		"--name", "dbg", "--cow", filepath.Join(dir, "cow.raw"), ref)
	if !strings.Contains(script, bin) || !strings.Contains(script, "console=hvc0") {
		t.Fatalf("unexpected debug output:\n%s", script)
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { harness.KillProcessesMatching(dir); <-exited })
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(filepath.Join(dir, "out.log"))
		if strings.Contains(string(data), "stand-in ready") {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the debug command exited (%v):\n%s\nscript:\n%s", err, data, script)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the debug command did not start cloud-hypervisor:\n%s", data)
		}
	}
}

// TestStandinCloudHypervisorUEFI: a cloud image (qcow2, UEFI via CLOUDHV.fd from the
// default ch_firmware place) on Cloud Hypervisor: serial console on a socket, graceful stop by
// the power button, and a clone of a restarted VM gets its fresh seed hot-added.
func TestStandinCloudHypervisorUEFI(t *testing.T) {
	harness.Require(t, "qemu-img", "mkfs.ext4")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	env := harness.NewEnv(t)
	_, requests := chStandin(t, env)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)
	ch := []string{"--hypervisor", "cloud-hypervisor"}

	env.MustFail("CLOUDHV.fd", append(append([]string{"vm", "run"}, ch...), "--name", "nofw", "--nics", "0", url)...)
	fw := filepath.Join(env.Root, "firmware", "CLOUDHV.fd")
	if err := os.MkdirAll(filepath.Dir(fw), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fw, []byte("stand-in firmware"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = env.Run("vm", "rm", "--force", "nofw")

	env.MustRun(append(append([]string{"vm", "run"}, ch...), "--name", "u1", "--nics", "0", "--cpu", "1", "--memory", "1G", url)...)
	vm := env.Inspect("u1")
	cmdline, _ := os.ReadFile(filepath.Join(vm.RunDir, "cmdline"))
	for _, want := range []string{"--firmware " + fw, "image_type=qcow2", "--serial socket=", "--console off", "cidata.img"} {
		if !strings.Contains(string(cmdline), want) {
			t.Errorf("UEFI launch lacks %q:\n%s", want, cmdline)
		}
	}
	c := env.AttachConsole("u1")
	c.Expect(0, "Connected to u1", 30*time.Second)
	at := len(c.Output())
	c.Send("uefi-echo\r")
	c.Expect(at, "uefi-echo", 30*time.Second)
	c.Send("\x1d.")
	if err := c.Wait(30 * time.Second); err != nil {
		t.Fatalf("console detach: %v", err)
	}

	env.MustRun("vm", "stop", "u1") // the power button: the guest powers off by itself
	if !strings.Contains(requestsSeen(t, requests), "PUT /api/v1/vm.power-button") {
		t.Error("a UEFI guest was not stopped with the power button")
	}
	env.MustRun("vm", "start", "u1")
	env.MustRun("snapshot", "save", "--name", "us", "u1")
	env.MustRun("vm", "clone", "--name", "u2", "us")
	if vm := env.Inspect("u2"); vm.State != "running" {
		t.Fatalf("clone: %s", vm.State)
	}
	if seen := requestsSeen(t, requests); !strings.Contains(seen, "PUT /api/v1/vm.add-disk") {
		t.Errorf("the clone of a restarted cloud VM got no seed disk; requests:\n%s", seen)
	}
	env.MustRun("vm", "rm", "--force", "u1", "u2")
}

// TestStandinCloudHypervisorNetwork: with a CNI NIC, a cold boot hands CH the TAP's queue
// fds; a clone (launched in its own netns, where its TAP lives) swaps the snapshot's NIC for
// a fresh one; a restore keeps the VM's NIC; nothing leaks.
func TestStandinCloudHypervisorNetwork(t *testing.T) {
	env, h, ref := netEnv(t, 91)
	_, requests := chStandin(t, env)
	env.MustRun("vm", "run", "--hypervisor", "cloud-hypervisor", "--name", "n1", "--cpu", "2", "--memory", "512M", ref)
	n1 := env.Inspect("n1")
	if len(n1.Networks) != 1 {
		t.Fatalf("n1 has %d NICs", len(n1.Networks))
	}
	cmdline, _ := os.ReadFile(filepath.Join(n1.RunDir, "cmdline"))
	if !strings.Contains(string(cmdline), "--net 'fd=[3,4],mac="+n1.Networks[0].MAC+",num_queues=4") {
		t.Errorf("cold boot does not pass the TAP's two queue fds:\n%s", cmdline)
	}

	env.MustRun("snapshot", "save", "--name", "ns", "n1")
	env.MustRun("vm", "clone", "--name", "n2", "ns")
	n2 := env.Inspect("n2")
	if n2.State != "running" || len(n2.Networks) != 1 || n2.Networks[0].MAC == n1.Networks[0].MAC {
		t.Fatalf("clone: state %s, NICs %+v (source %+v)", n2.State, n2.Networks, n1.Networks)
	}
	seen := requestsSeen(t, requests)
	for _, want := range []string{"PUT /api/v1/vm.remove-device", "PUT /api/v1/vm.add-net"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the clone's NIC swap lacks %s; requests:\n%s", want, seen)
		}
	}
	adds := strings.Count(seen, "PUT /api/v1/vm.add-net")
	env.MustRun("vm", "restore", "n1", "ns")
	if vm := env.Inspect("n1"); vm.State != "running" || vm.Networks[0].MAC != n1.Networks[0].MAC {
		t.Fatalf("after restore: %s %+v", vm.State, vm.Networks)
	}
	if got := strings.Count(requestsSeen(t, requests), "PUT /api/v1/vm.add-net"); got != adds {
		t.Errorf("a restore swapped the VM's own NIC (%d add-net calls, %d before)", got, adds)
	}
	env.MustRun("vm", "rm", "--force", "n1", "n2")
	assertNoLeaks(t, h, n1.ID, n2.ID)
}
