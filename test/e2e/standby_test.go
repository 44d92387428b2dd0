package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// standbyStatus is `snapshot standby SNAPSHOT -o json`.
type standbyStatus struct {
	Pool *struct {
		Count int `json:"count"`
	} `json:"pool"`
	Ready []string `json:"ready"`
}

func standbyOf(t testing.TB, env *harness.Env, snap string) standbyStatus {
	t.Helper()
	var st standbyStatus
	if err := json.Unmarshal([]byte(env.MustRun("snapshot", "standby", "-o", "json", snap)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStandby waits until the snapshot's pool has n standbys ready (a refill runs detached).
func waitStandby(t testing.TB, env *harness.Env, snap string, n int) standbyStatus {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := standbyOf(t, env, snap)
		if len(st.Ready) == n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s: %d standbys ready after 3 min, want %d", snap, len(st.Ready), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitProcessGone waits for pid to exit (processGone: a zombie counts as gone) and fails the
// test if it does not within 20 s; waitGone only waits.
func waitProcessGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStandbyPool: a snapshot's standby clones are whole clones kept paused and hidden; a clone
// takes one over (new identity, network, guest running on), the pool refills, and gc,
// `snapshot standby 0` and `snapshot rm` leave nothing of them behind.
func TestStandbyPool(t *testing.T) {
	env, h, ref := netEnv(t, 53)
	env.MustRun("vm", "run", "--name", "src", "--cpu", "1", "--memory", "512M", ref)
	src := env.Inspect("src")
	env.WaitConsole(src, "COCOON-READY", bootTimeout)
	shell(t, env, "src", "(cocoon-counter &)", "")
	env.WaitConsole(src, "COUNTER 5", time.Minute)
	env.MustRun("snapshot", "save", "--name", "s1", "src")

	env.MustFail("out of range", "snapshot", "standby", "s1", "65")
	env.MustFail("not a number", "snapshot", "standby", "s1", "two")
	env.MustFail("below the snapshot", "snapshot", "standby", "--memory", "256M", "s1", "1")
	if st := standbyOf(t, env, "s1"); st.Pool != nil || len(st.Ready) != 0 {
		t.Fatalf("a refused pool was recorded: %+v", st)
	}

	if out := env.MustRun("snapshot", "standby", "s1", "2"); !strings.Contains(out, "2/2 standby clones ready") {
		t.Fatalf("snapshot standby printed %q", out)
	}
	st := standbyOf(t, env, "s1")
	if inspect := env.MustRun("snapshot", "inspect", "s1"); !strings.Contains(inspect, `"standby": {`) {
		t.Fatalf("snapshot inspect does not show the pool:\n%s", inspect)
	}
	list := env.MustRun("vm", "list")
	sb := env.Inspect(st.Ready[0])
	if sb.State != "standby" || sb.PID == 0 || strings.Contains(list, st.Ready[0]) || strings.Contains(list, st.Ready[1]) {
		t.Fatalf("standby %s: state %s pid %d; vm list must not show standbys:\n%s", sb.ID, sb.State, sb.PID, list)
	}
	env.MustFail("standby clone of snapshot", "vm", "stop", sb.ID)
	// The guest is paused: its counter (running in the snapshot) prints nothing more.
	paused := len(counters(env.ConsoleLog(sb)))
	time.Sleep(5 * time.Second)
	if n := len(counters(env.ConsoleLog(sb))); n != paused {
		t.Fatalf("standby guest ran: %d counter lines, then %d", paused, n)
	}

	// A clone takes a standby over: a fresh identity, its guest running on.
	env.MustRun("vm", "clone", "--name", "a", "s1")
	a := env.Inspect("a")
	if !slices.Contains(st.Ready, a.ID) || a.State != "running" {
		t.Fatalf("clone a (%s, %s) is not one of the standbys %v", a.ID, a.State, st.Ready)
	}
	if a.Networks[0].IP == src.Networks[0].IP || a.Networks[0].MAC == src.Networks[0].MAC {
		t.Fatalf("clone a kept the source's network identity: %+v", a.Networks)
	}
	seen := len(counters(env.ConsoleLog(a)))
	deadline := time.Now().Add(time.Minute)
	for len(counters(env.ConsoleLog(a))) < seen+5 {
		if time.Now().After(deadline) {
			t.Fatalf("taken-over guest does not run: %d counter lines after a minute, %d before", len(counters(env.ConsoleLog(a))), seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n := a.Networks[0]
	out := shell(t, env, "a", fmt.Sprintf("cat /sys/class/net/eth0/address; ip link set dev eth0 up && ip addr flush dev eth0 && ip addr add %s/24 dev eth0 && echo NET-$((1+1))", n.IP), "NET-2")
	if !strings.Contains(out, n.MAC) {
		t.Fatalf("guest of a does not have its MAC %s:\n%s", n.MAC, out)
	}
	if res, err := h.Exec("ping", "-c", "3", "-W", "5", n.IP); err != nil {
		t.Fatalf("ping taken-over clone at %s: %v\n%s", n.IP, err, res)
	}
	// The guest clock stood still while the standby waited (and since the snapshot); the agent
	// sets it from the RTC, which follows the host's.
	waitAgent(t, env, "a", 2*time.Minute)
	guest, err := strconv.ParseInt(strings.TrimSpace(env.MustRun("vm", "exec", "a", "--", "date", "+%s")), 10, 64)
	if skew := time.Now().Unix() - guest; err != nil || skew < -3 || skew > 3 {
		t.Fatalf("taken-over guest's clock is %ds off the host's (%v)", skew, err)
	}

	// The pool refills in the background; a clone that fails (name taken) takes nothing.
	st = waitStandby(t, env, "s1", 2)
	env.MustFail("already exists", "vm", "clone", "--name", "a", "s1")
	if got := standbyOf(t, env, "s1"); !slices.Equal(got.Ready, st.Ready) {
		t.Fatalf("a failed clone changed the pool: %v, was %v", got.Ready, st.Ready)
	}
	// Other options than the pool's: a clone of its own.
	env.MustRun("vm", "clone", "--name", "b", "--cpu", "2", "s1")
	if b := env.Inspect("b"); slices.Contains(st.Ready, b.ID) || b.State != "running" {
		t.Fatalf("clone b with --cpu 2 took a standby of the 1-vCPU pool (%s, %s)", b.ID, b.State)
	}

	// A standby whose hypervisor died is collected by gc; setting the pool again refills it.
	dead := env.Inspect(st.Ready[0])
	if err := syscall.Kill(dead.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitProcessGone(t, dead.PID)
	if out := env.MustRun("gc"); !strings.Contains(out, dead.ID) {
		t.Fatalf("gc did not collect the dead standby %s:\n%s", dead.ID, out)
	}
	env.MustFail("not found", "vm", "inspect", dead.ID)
	if got := standbyOf(t, env, "s1"); len(got.Ready) != 1 {
		t.Fatalf("after gc: %d standbys ready, want 1", len(got.Ready))
	}
	env.MustRun("snapshot", "standby", "s1", "2")

	// Count 0 and snapshot rm remove standbys with their processes, network and files.
	st = waitStandby(t, env, "s1", 2)
	gone := []string{dead.ID}
	removeAll := func(args ...string) {
		var vms []harness.VM
		for _, id := range st.Ready {
			vms = append(vms, env.Inspect(id))
		}
		env.MustRun(args...)
		for _, vm := range vms {
			waitProcessGone(t, vm.PID)
			if _, err := os.Stat(vm.RunDir); !os.IsNotExist(err) {
				t.Fatalf("%v: run dir of standby %s remains (%v)", args, vm.ID, err)
			}
			env.MustFail("not found", "vm", "inspect", vm.ID)
			gone = append(gone, vm.ID)
		}
	}
	removeAll("snapshot", "standby", "s1", "0")
	if got := standbyOf(t, env, "s1"); got.Pool != nil || len(got.Ready) != 0 {
		t.Fatalf("count 0 left a pool: %+v", got)
	}
	env.MustRun("snapshot", "standby", "s1", "1")
	st = standbyOf(t, env, "s1")
	removeAll("snapshot", "rm", "s1")
	var listed []struct {
		Config struct {
			Name string `json:"name"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(env.MustRun("vm", "list", "-o", "json")), &listed); err != nil || len(listed) != 3 {
		t.Fatalf("vm list after the pool is gone (want src, a, b): %v %+v", err, listed)
	}
	env.MustRun("vm", "rm", "--force", "src", "a", "b")
	assertNoLeaks(t, h, gone...)
}

// A clone killed between recording a taken-over standby running and resuming its guest leaves
// a running record whose guest is paused; the next command that finds the VM's lock free (here
// vm list) resumes it, and the pool can be filled again.
func TestCrashDuringStandbyTakeOver(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s1", "src")
	env.MustRun("snapshot", "standby", "s1", "1")
	st := standbyOf(t, env, "s1")

	c := env.Cmd(t.Context(), "vm", "clone", "--name", "a", "s1")
	c.Env = append(c.Env, "COCOON_CRASH_AT=standby-taken-over")
	out, err := c.CombinedOutput()
	if ws, _ := c.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("vm clone was not killed at the take-over point (err %v):\n%s", err, out)
	}
	r := env.Run("vm", "list")
	if r.Err != nil || !strings.Contains(r.Stderr, "resumed guest left paused") {
		t.Fatalf("vm list after the crash did not resume the guest (%v):\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	a := env.Inspect("a")
	if a.ID != st.Ready[0] || a.State != "running" {
		t.Fatalf("clone a is %s (%s), want the standby %s running", a.ID, a.State, st.Ready[0])
	}
	con := env.AttachConsole("a")
	pos := con.Prompt("tiny#", time.Minute)
	con.Send("echo alive-$((6*7))\r")
	con.Expect(pos, "alive-42", time.Minute)
	con.Send("\x1d.")
	_ = con.Wait(30 * time.Second)
	// No refill ran (the clone died first); setting the pool again fills it.
	if got := standbyOf(t, env, "s1"); len(got.Ready) != 0 {
		t.Fatalf("pool after the crash: %v", got.Ready)
	}
	env.MustRun("snapshot", "standby", "s1", "1")
	waitStandby(t, env, "s1", 1)
}
