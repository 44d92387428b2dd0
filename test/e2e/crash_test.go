package e2e

// Crash injection: SIGKILL the cocoon process in the middle of commands and check that the state
// it leaves is true, removable and collectable. Kill points are either deterministic (the Nth
// durable step, COCOON_CRASH_POINT) or a random delay; both come from one seed, so a failing
// run is reproduced with the same COCOON_CRASH_SEED and COCOON_CRASH_INJECTIONS.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// envInt reads a positive integer from the environment, else def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// crashOp is one command to interrupt; prep runs first (uncrashed) and may return extra args.
type crashOp struct {
	name    string
	hostNet bool // runs in the test's own netns, where the registry listens
	prep    func(i int) []string
	args    func(i int) []string
}

func TestCrashInjection(t *testing.T) {
	env, h, ref := netEnv(t, 81)
	n, seed := envInt("COCOON_CRASH_INJECTIONS", 110), envInt("COCOON_CRASH_SEED", 1)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("crash injection: %d injections, seed %d", n, seed)

	// Baseline: a running VM, a snapshot of it, an export archive and an image tar.
	env.MustRun("vm", "run", "--name", "base", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("base"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "bs", "base")
	dir := t.TempDir()
	archive := filepath.Join(dir, "bs.tar.gz")
	env.MustRun("snapshot", "export", "-o", archive, "bs")
	imageTar := filepath.Join(dir, "tiny.tar")
	if out, err := exec.Command("tar", "-C", harness.RequireImage(t, "tiny"), "-cf", imageTar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar image: %v %s", err, out)
	}
	baseVMs, seen := map[string]bool{}, map[string]bool{}
	for _, vm := range listVMs(t, env) {
		baseVMs[vm.ID] = true
	}

	ops := []crashOp{
		{name: "vm create", args: func(i int) []string {
			return []string{"vm", "create", "--name", fmt.Sprintf("c%d", i), "--cpu", "1", "--memory", "512M", ref}
		}},
		{name: "vm run", args: func(i int) []string {
			return []string{"vm", "run", "--name", fmt.Sprintf("c%d", i), "--cpu", "1", "--memory", "512M", ref}
		}},
		{name: "snapshot save", args: func(i int) []string { return []string{"snapshot", "save", "--name", fmt.Sprintf("s%d", i), "base"} }},
		{name: "vm clone", args: func(i int) []string { return []string{"vm", "clone", "--name", fmt.Sprintf("c%d", i), "bs"} }},
		{name: "vm restore", args: func(int) []string { return []string{"vm", "restore", "base", "bs"} }},
		{name: "vm rm", prep: func(i int) []string {
			env.MustRun("vm", "clone", "--name", fmt.Sprintf("c%d", i), "bs")
			return nil
		}, args: func(i int) []string { return []string{"vm", "rm", "--force", fmt.Sprintf("c%d", i)} }},
		{name: "image pull", hostNet: true, prep: func(int) []string {
			onHost(env, func() { _ = env.Run("image", "rm", ref) })
			return nil
		}, args: func(int) []string { return []string{"image", "pull", ref} }},
		{name: "image import", args: func(i int) []string { return []string{"image", "import", fmt.Sprintf("imp%d", i), imageTar} }},
		{name: "snapshot import", args: func(i int) []string { return []string{"snapshot", "import", "--name", fmt.Sprintf("i%d", i), archive} }},
		{name: "snapshot standby", args: func(int) []string { return []string{"snapshot", "standby", "bs", "1"} }},
		{name: "vm clone (standby)", prep: func(int) []string {
			env.MustRun("snapshot", "standby", "bs", "1")
			return nil
		}, args: func(i int) []string { return []string{"vm", "clone", "--name", fmt.Sprintf("c%d", i), "bs"} }},
	}
	killed := 0
	for i := range n {
		op := ops[i%len(ops)]
		if op.prep != nil {
			op.prep(i)
		}
		point, delay := 0, time.Duration(0)
		if rng.IntN(2) == 0 {
			point = 1 + rng.IntN(10)
		} else {
			delay = time.Duration(rng.IntN(3000)) * time.Millisecond
		}
		var was bool
		if op.hostNet {
			onHost(env, func() { was = injectCrash(t, env, op.args(i), point, delay) })
		} else {
			was = injectCrash(t, env, op.args(i), point, delay)
		}
		if was {
			killed++
		}
		t.Logf("injection %d: %s point=%d delay=%s killed=%v", i, op.name, point, delay, was)
		checkAfterCrash(t, env, h, ref, baseVMs, seen)
		if t.Failed() {
			t.Fatalf("injection %d (%s, point %d, delay %s, seed %d) left a bad state", i, op.name, point, delay, seed)
		}
	}
	t.Logf("crash injection: %d of %d commands were killed mid-way; all states were true and collectable", killed, n)
}

// onHost runs fn with env's commands in the test's own netns (the registry is on its loopback).
func onHost(env *harness.Env, fn func()) {
	ns := env.Netns
	env.Netns = ""
	defer func() { env.Netns = ns }()
	fn()
}

// injectCrash runs cocoon with args and kills it at point (COCOON_CRASH_POINT) or after delay.
// It reports whether the process died of SIGKILL.
func injectCrash(t *testing.T, env *harness.Env, args []string, point int, delay time.Duration) bool {
	t.Helper()
	c := env.Cmd(t.Context(), args...)
	if point > 0 {
		c.Env = append(c.Env, fmt.Sprintf("COCOON_CRASH_POINT=%d", point))
	}
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if delay > 0 {
		done := make(chan struct{})
		go func() {
			select {
			case <-time.After(delay):
				_ = c.Process.Signal(syscall.SIGKILL)
			case <-done:
			}
		}()
		defer close(done)
	}
	err := c.Wait()
	ws, _ := c.ProcessState.Sys().(syscall.WaitStatus)
	if err != nil && !ws.Signaled() {
		t.Logf("cocoon %s (uncrashed) failed: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

type listedVM struct {
	ID, Name, State, RunDir string
	PID                     int
	Networks                []struct{ IP string }
}

// listVMs reads `vm list -o json` (the original's VM objects: name in config.name, each NIC's
// address in network_configs[].network.ip).
func listVMs(t *testing.T, env *harness.Env) []listedVM {
	t.Helper()
	var raw []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		PID    int    `json:"pid"`
		RunDir string `json:"run_dir"`
		Config struct {
			Name string `json:"name"`
		} `json:"config"`
		NICs []struct {
			Network *struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"network_configs"`
	}
	if err := json.Unmarshal([]byte(env.MustRun("vm", "list", "-o", "json")), &raw); err != nil {
		t.Fatalf("parse vm list: %v", err)
	}
	vms := make([]listedVM, len(raw))
	for i, r := range raw {
		vms[i] = listedVM{ID: r.ID, Name: r.Config.Name, State: r.State, RunDir: r.RunDir, PID: r.PID}
		for _, n := range r.NICs {
			ip := ""
			if n.Network != nil {
				ip = n.Network.IP
			}
			vms[i].Networks = append(vms[i].Networks, struct{ IP string }{ip})
		}
	}
	return append(vms, standbyVMs(t, env)...)
}

// standbyVMs reads the standby records, which vm list hides, from the VM index.
func standbyVMs(t *testing.T, env *harness.Env) []listedVM {
	t.Helper()
	var x struct {
		VMs map[string]struct {
			Name     string            `json:"name"`
			State    string            `json:"state"`
			PID      int               `json:"pid"`
			RunDir   string            `json:"run_dir"`
			Networks []json.RawMessage `json:"network_configs"`
		} `json:"vms"`
	}
	data, err := os.ReadFile(filepath.Join(env.Root, "vm", "db", "vms.json"))
	if err == nil {
		err = json.Unmarshal(data, &x)
	}
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("VM index: %v", err)
	}
	var out []listedVM
	for id, r := range x.VMs {
		if r.State == "standby" {
			vm := listedVM{ID: id, Name: r.Name, State: r.State, RunDir: r.RunDir, PID: r.PID}
			vm.Networks = make([]struct{ IP string }, len(r.Networks))
			out = append(out, vm)
		}
	}
	return out
}

// waitRefills waits for the pool refills a take-over started detached (they inherit the crash
// point, so one may itself be killed mid-way) to end, so that the checks see a settled state.
func waitRefills(t *testing.T, env *harness.Env) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		busy := false
		entries, _ := os.ReadDir("/proc")
		for _, en := range entries {
			raw, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
			cmd := string(raw)
			busy = busy || err == nil && strings.Contains(cmd, env.Config) && strings.Contains(cmd, "--refill")
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a standby refill still runs after 3 min")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hypervisors maps the PIDs of QEMU processes of this env to their command lines.
func hypervisors(env *harness.Env) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		cmd := strings.ReplaceAll(string(raw), "\x00", " ")
		if err == nil && strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, env.RunDir) {
			out[pid] = cmd
		}
	}
	return out
}

// checkIndexes parses every JSON index under the root.
func checkIndexes(t *testing.T, env *harness.Env) {
	t.Helper()
	_ = filepath.Walk(env.Root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Ext(p) != ".json" || filepath.Base(filepath.Dir(p)) != "db" {
			return nil
		}
		data, _ := os.ReadFile(p)
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Errorf("index %s does not parse: %v", p, err)
		}
		return nil
	})
}

// checkTruthful compares `vm list` with the hypervisor processes that exist.
func checkTruthful(t *testing.T, env *harness.Env, vms []listedVM) {
	t.Helper()
	procs := hypervisors(env)
	for _, vm := range vms {
		running := false
		for pid, cmd := range procs {
			if strings.Contains(cmd, vm.RunDir+"/") {
				running = true
				if listed := vm.State == "running" || vm.State == "error" || vm.State == "standby"; listed && pid != vm.PID {
					t.Errorf("VM %s is listed with pid %d but its hypervisor is pid %d", vm.Name, vm.PID, pid)
				}
				delete(procs, pid)
			}
		}
		// A record still being created may have its hypervisor already (clone resumes it as
		// its last step); rm must stop it, which checkNoOrphans proves. A hypervisor launched
		// by an interrupted command is shown in state error with its pid.
		listed := vm.State == "running" || vm.State == "standby" || vm.State == "error" && vm.PID > 0
		if running != listed && vm.State != "creating" {
			files, _ := os.ReadDir(vm.RunDir)
			var names []string
			for _, f := range files {
				names = append(names, f.Name())
			}
			t.Errorf("VM %s is listed %s (pid %d) but its hypervisor process exists=%v; run dir: %v", vm.Name, vm.State, vm.PID, running, names)
		}
	}
	for pid, cmd := range procs {
		t.Errorf("hypervisor pid %d belongs to no listed VM: %.200s", pid, cmd)
	}
}

// checkAfterCrash checks the state left by one injection, removes what the interrupted command
// made (the VM must be removable), runs gc and checks that nothing is left that no record owns.
func checkAfterCrash(t *testing.T, env *harness.Env, h *harness.HostNet, ref string, baseVMs, seen map[string]bool) {
	t.Helper()
	waitRefills(t, env)
	checkIndexes(t, env)
	vms := listVMs(t, env)
	checkTruthful(t, env, vms)
	for _, vm := range vms {
		seen[vm.ID] = true
		if !baseVMs[vm.ID] && vm.State != "standby" {
			if r := env.Run("vm", "rm", "--force", vm.ID); r.Err != nil {
				t.Errorf("interrupted VM %s (%s) cannot be removed: %s", vm.Name, vm.State, r.Stderr)
			}
		}
	}
	// Removing the pool removes the standbys, after waiting for a refill that a take-over
	// started (detached, it outlives the kill).
	env.MustRun("snapshot", "standby", "bs", "0")
	for _, name := range snapshotNames(t, env) {
		if name != "bs" {
			if r := env.Run("snapshot", "rm", name); r.Err != nil {
				t.Errorf("interrupted snapshot %s cannot be removed: %s", name, r.Stderr)
			}
		}
	}
	hasBase := false
	for _, img := range listImages(t, env) {
		hasBase = hasBase || img.Ref == ref
		if strings.Contains(img.Ref, "imp") {
			env.MustRun("image", "rm", img.Ref)
		}
	}
	if !hasBase {
		onHost(env, func() { env.MustRun("image", "pull", ref) }) // an interrupted pull after rm
	}
	// GC keeps work dirs younger than an hour (a running command may own them): age them, as
	// the hour a host would wait.
	old := time.Now().Add(-2 * time.Hour)
	for _, pat := range []string{"snapshot/staging/*", "*/temp/*", "oci/temp/*", "cloudimg/temp/*"} {
		paths, _ := filepath.Glob(filepath.Join(env.Root, pat))
		for _, p := range paths {
			_ = os.Chtimes(p, old, old)
		}
	}
	env.MustRun("gc")
	checkNoOrphans(t, env, h, seen)
	// An interrupted restore may leave base stopped: the next save and restore need it running.
	if base := env.Inspect("base"); base.State != "running" {
		env.MustRun("vm", "stop", "--force", "base")
		env.MustRun("vm", "start", "base")
	}
}

// checkNoOrphans: nothing of a VM that is not listed remains (dirs, netns, links, leases,
// processes), and no work dir is left.
func checkNoOrphans(t *testing.T, env *harness.Env, h *harness.HostNet, seen map[string]bool) {
	t.Helper()
	vms := listVMs(t, env)
	checkTruthful(t, env, vms)
	live, nics := map[string]bool{}, 0
	for _, vm := range vms {
		live[vm.ID] = true
		nics += len(vm.Networks)
	}
	for _, dir := range []string{env.RunDir, env.LogDir, env.MemDir} {
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			if !live[en.Name()] && !(dir == env.LogDir && en.Name() == "standby-refill.log") {
				t.Errorf("%s/%s belongs to no VM", dir, en.Name())
			}
		}
	}
	for _, ns := range harness.Netns(t) {
		if id, ok := strings.CutPrefix(ns, "cocoon-"); ok && seen[id] && !live[id] {
			t.Errorf("netns %s belongs to no VM", ns)
		}
	}
	links, _ := h.Exec("ip", "-o", "link", "show", "type", "veth")
	if got := len(strings.FieldsFunc(links, func(r rune) bool { return r == '\n' })); got != nics {
		t.Errorf("%d NICs recorded but host netns has veths:\n%s", nics, links)
	}
	leases, _ := filepath.Glob("/var/lib/cni/networks/" + h.Network + "/10.*")
	if len(leases) != nics {
		t.Errorf("%d NICs recorded but %d IPAM leases: %v", nics, len(leases), leases)
	}
	for _, pat := range []string{"snapshot/staging/*", "oci/temp/*", "cloudimg/temp/*"} {
		if left, _ := filepath.Glob(filepath.Join(env.Root, pat)); len(left) > 0 {
			t.Errorf("work dirs left after gc: %v", left)
		}
	}
	known := map[string]bool{}
	for _, id := range snapshotIDs(t, env) {
		known[id] = true
	}
	data, _ := os.ReadDir(filepath.Join(env.Root, "snapshot", "data"))
	for _, d := range data {
		if !known[d.Name()] {
			t.Errorf("snapshot data dir %s belongs to no snapshot", d.Name())
		}
	}
}

type snapIndex struct {
	Snapshots map[string]struct {
		Name string `json:"name"`
	} `json:"snapshots"`
}

func readSnapIndex(t *testing.T, env *harness.Env) snapIndex {
	t.Helper()
	var x snapIndex
	data, err := os.ReadFile(filepath.Join(env.Root, "snapshot", "db", "snapshots.json"))
	if err == nil {
		if err := json.Unmarshal(data, &x); err != nil {
			t.Fatalf("snapshot index: %v", err)
		}
	}
	return x
}

// snapshotNames lists every snapshot record, pending ones included (list hides those).
func snapshotNames(t *testing.T, env *harness.Env) []string {
	var out []string
	for _, s := range readSnapIndex(t, env).Snapshots {
		out = append(out, s.Name)
	}
	return out
}

func snapshotIDs(t *testing.T, env *harness.Env) []string {
	var out []string
	for id := range readSnapIndex(t, env).Snapshots {
		out = append(out, id)
	}
	return out
}

// A `snapshot save` killed while the guest is paused must not leave it paused: the next command
// that takes the VM's lock (here `vm start`, a no-op on a running VM), or a `vm list` that finds
// the lock free, resumes the guest. The proof is the guest answering on its console.
func TestCrashWhilePausedForSnapshot(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "p1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("p1")
	env.WaitConsole(vm, "COCOON-READY", bootTimeout)
	marker := filepath.Join(vm.RunDir, "paused-by-cocoon")

	for i, recover := range [][]string{{"vm", "start", "p1"}, {"vm", "list"}} {
		c := env.Cmd(t.Context(), "snapshot", "save", "--name", fmt.Sprintf("s%d", i), "p1")
		c.Env = append(c.Env, "COCOON_CRASH_AT=snapshot-paused")
		out, err := c.CombinedOutput()
		if ws, _ := c.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("snapshot save was not killed at the paused point (err %v):\n%s", err, out)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("no pause marker after the crash: %v", err)
		}
		r := env.Run(recover...)
		if r.Err != nil {
			t.Fatalf("cocoon %v after the crash: %v %s", recover, r.Err, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "resumed guest left paused") {
			t.Errorf("cocoon %v did not say it resumed the guest; stderr:\n%s", recover, r.Stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("pause marker still there after cocoon %v", recover)
		}
		con := env.AttachConsole("p1")
		pos := con.Prompt("tiny#", time.Minute)
		con.Send(fmt.Sprintf("echo alive-%d-$((6*7))\r", i))
		con.Expect(pos, fmt.Sprintf("alive-%d-42", i), time.Minute)
		con.Send("\x1d.")
		_ = con.Wait(30 * time.Second)
		// The interrupted save left a pending snapshot record: it can be removed.
		for _, name := range snapshotNames(t, env) {
			env.MustRun("snapshot", "rm", name)
		}
	}
	// A save that runs to its end leaves no marker and the guest running.
	env.MustRun("snapshot", "save", "--name", "ok", "p1")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a completed snapshot save left the pause marker")
	}
	env.MustRun("vm", "rm", "--force", "p1")
}

// While a `snapshot save` holds the VM's lock with the guest paused (stopped at that point),
// `vm list` must not resume the guest under it; once the save goes on, it resumes the guest
// itself and removes the marker.
func TestListLeavesARunningSaveAlone(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "p2", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("p2")
	env.WaitConsole(vm, "COCOON-READY", bootTimeout)
	marker := filepath.Join(vm.RunDir, "paused-by-cocoon")

	c := env.Cmd(t.Context(), "snapshot", "save", "--name", "held", "p2")
	c.Env = append(c.Env, "COCOON_CRASH_AT=snapshot-paused:stop")
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill() //nolint:errcheck
	// Wait until the save stops itself at the paused point.
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		if err != nil {
			t.Fatalf("snapshot save ended before the paused point: %s", out.String())
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "T" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := env.Run("vm", "list")
	if r.Err != nil || strings.Contains(r.Stderr, "resumed guest") {
		t.Fatalf("vm list while a save holds the VM: err %v, stderr:\n%s", r.Err, r.Stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("vm list removed the pause marker of a save in progress: %v", err)
	}
	if err := c.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("snapshot save after SIGCONT: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the completed save left its pause marker")
	}
	con := env.AttachConsole("p2")
	pos := con.Prompt("tiny#", time.Minute)
	con.Send("echo held-$((6*7))\r")
	con.Expect(pos, "held-42", time.Minute)
	con.Send("\x1d.")
	_ = con.Wait(30 * time.Second)
	env.MustRun("vm", "rm", "--force", "p2")
}
