package e2e

// Benchmarks report ratios measured in one run (absolute times on shared machines are noise).
// Run with `make bench` (root). Each benchmark does its own measurements once per b.N loop.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// timeUntil returns how long it takes from start until the file at path contains want.
func timeUntil(b *testing.B, start time.Time, path, want string, timeout time.Duration) time.Duration {
	b.Helper()
	for {
		if data, _ := os.ReadFile(path); strings.Contains(string(data), want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			b.Fatalf("%q not in %s within %s", want, path, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// timeUntilSerial returns how long it takes from start until the serial port QEMU serves on
// socket has printed want.
func timeUntilSerial(start time.Time, socket, want string, timeout time.Duration) (time.Duration, error) {
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", socket); err == nil {
			break
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("serial port %s: %w", socket, err)
		}
		time.Sleep(time.Millisecond)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(start.Add(timeout))
	var out []byte
	buf := make([]byte, 32<<10)
	for !strings.Contains(string(out), want) {
		n, err := conn.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil && !strings.Contains(string(out), want) {
			return 0, fmt.Errorf("%q not on serial port %s within %s: %w", want, socket, timeout, err)
		}
	}
	return time.Since(start), nil
}

// qmpBalloon sets a QEMU's balloon target over its QMP socket, as the engine does after launch.
func qmpBalloon(b *testing.B, socket string, target int64) {
	b.Helper()
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var err error
		if conn, err = net.Dial("unix", socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("QMP %s: %v", socket, err)
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	dec := json.NewDecoder(conn)
	var reply map[string]any
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, fmt.Sprintf(`{"execute":"balloon","arguments":{"value":%d}}`, target)} {
		if err := dec.Decode(&reply); err != nil { // the greeting, then the previous reply
			b.Fatalf("QMP %s: %v", socket, err)
		}
		if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
			b.Fatalf("QMP %s: %v", socket, err)
		}
	}
	if err := dec.Decode(&reply); err != nil || reply["error"] != nil {
		b.Fatalf("QMP balloon: %v %v", err, reply)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkBootVsBareQEMU: `vm run` → ready line, against the same argv run by hand.
func BenchmarkBootVsBareQEMU(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	var engine, bare, bareBalloon, create []time.Duration
	for i := 0; i < 3*b.N; i++ {
		name := fmt.Sprintf("boot%d", i)
		t0 := time.Now()
		env.MustRun("vm", "create", "--name", name, "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
		create = append(create, time.Since(t0))
		vm := env.Inspect(name) // before the clock starts: the harness's time, not the engine's
		t0 = time.Now()
		env.MustRun("vm", "start", name)
		engine = append(engine, timeUntil(b, t0, filepath.Join(vm.LogDir, "console.log"), "COCOON-READY", 5*time.Minute))
		env.MustRun("vm", "stop", "--force", name)

		// The same argv by hand (the VM is stopped: its disks are free); its serial port, which
		// the engine hands QEMU as a connected socket (fd 3), is served on a path and read
		// straight from there, where the engine's console relay would be.
		argv, err := os.ReadFile(filepath.Join(vm.RunDir, "cmdline"))
		if err != nil {
			b.Fatal(err)
		}
		serial := filepath.Join(vm.RunDir, "serial.sock")
		if !strings.Contains(string(argv), "socket,id=console,fd=3 ") {
			b.Fatalf("the serial port is not fd 3 in %s", argv)
		}
		argv = []byte(strings.Replace(string(argv), "socket,id=console,fd=3 ", "socket,id=console,path="+serial+",server=on,wait=on ", 1))
		// Then once more with the one QMP command the engine adds: the balloon's 25 %, which the
		// guest inflates during its boot.
		for _, balloon := range []bool{false, true} {
			t0 = time.Now()
			cmd := exec.Command("bash", "-c", "exec "+strings.TrimSpace(string(argv)))
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			// The serial port first: QEMU answers QMP only once something holds it.
			ready := make(chan error, 1)
			var d time.Duration
			go func() {
				var err error
				d, err = timeUntilSerial(t0, serial, "COCOON-READY", 5*time.Minute)
				ready <- err
			}()
			if balloon {
				qmpBalloon(b, filepath.Join(vm.RunDir, "qmp.sock"), (512-128)<<20)
			}
			if err := <-ready; err != nil {
				b.Fatal(err)
			}
			if balloon {
				bareBalloon = append(bareBalloon, d)
			} else {
				bare = append(bare, d)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		env.MustRun("vm", "rm", name)
	}
	b.ReportMetric(median(engine).Seconds(), "engine-boot-s")
	b.ReportMetric(median(bare).Seconds(), "bare-qemu-boot-s")
	b.ReportMetric(float64(median(engine))/float64(median(bare)), "engine/bare")
	b.ReportMetric(median(bareBalloon).Seconds(), "bare-qemu+balloon-boot-s")
	b.ReportMetric(float64(median(engine))/float64(median(bareBalloon)), "engine/bare+balloon")
	b.ReportMetric(float64(median(create).Milliseconds()), "vm-create-ms")
}

// BenchmarkCloneVsColdBoot: clone → running against a cold boot to ready, and clone time of a
// 1 GiB against an 8 GiB guest.
func BenchmarkCloneVsColdBoot(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	clone := map[string]time.Duration{}
	var cold time.Duration
	for _, mem := range []string{"1G", "8G"} {
		name := "src" + mem
		t0 := time.Now()
		env.MustRun("vm", "run", "--name", name, "--nics", "0", "--cpu", "1", "--memory", mem, ref)
		vm := env.Inspect(name)
		boot := timeUntil(b, t0, filepath.Join(vm.LogDir, "console.log"), "COCOON-READY", 5*time.Minute)
		if mem == "1G" {
			cold = boot
		}
		env.MustRun("snapshot", "save", "--name", "snap"+mem, name)
		var runs []time.Duration
		for i := 0; i < 3; i++ {
			cname := fmt.Sprintf("clone%s-%d", mem, i)
			t0 = time.Now()
			env.MustRun("vm", "clone", "--name", cname, "snap"+mem)
			runs = append(runs, time.Since(t0))
			env.MustRun("vm", "rm", "--force", cname)
		}
		clone[mem] = median(runs)
		if mem == "1G" {
			clone["standby"] = cloneFromStandby(b, env, "snap"+mem)
		}
		env.MustRun("vm", "rm", "--force", name)
	}
	b.ReportMetric(cold.Seconds(), "cold-boot-s")
	b.ReportMetric(clone["1G"].Seconds(), "clone-1G-s")
	b.ReportMetric(clone["8G"].Seconds(), "clone-8G-s")
	b.ReportMetric(float64(cold)/float64(clone["1G"]), "coldboot/clone")
	b.ReportMetric(float64(clone["8G"])/float64(clone["1G"]), "clone8G/clone1G")
	b.ReportMetric(clone["standby"].Seconds(), "clone-standby-1G-s")
	b.ReportMetric(float64(clone["1G"])/float64(clone["standby"]), "clone/standby-takeover")
}

// cloneFromStandby is the median time of a clone that takes over a standby of snap (a pool of
// one, refilled before each run).
func cloneFromStandby(b *testing.B, env *harness.Env, snap string) time.Duration {
	env.MustRun("snapshot", "standby", snap, "1")
	var runs []time.Duration
	for i := 0; i < 3; i++ {
		st := waitStandby(b, env, snap, 1)
		cname := fmt.Sprintf("standby-clone-%d", i)
		t0 := time.Now()
		env.MustRun("vm", "clone", "--name", cname, snap)
		runs = append(runs, time.Since(t0))
		if vm := env.Inspect(cname); vm.State != "running" || vm.ID != st.Ready[0] {
			b.Fatalf("clone %s (%s, %s) did not take over standby %s", cname, vm.ID, vm.State, st.Ready[0])
		}
		env.MustRun("vm", "rm", "--force", cname)
	}
	env.MustRun("snapshot", "standby", snap, "0")
	return median(runs)
}

// BenchmarkSnapshotSave: save time against the memory the guest touched.
func BenchmarkSnapshotSave(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	env.MustRun("vm", "run", "--name", "s", "--nics", "0", "--cpu", "1", "--memory", "1G", ref)
	vm := env.Inspect("s")
	env.WaitConsole(vm, "COCOON-READY", 5*time.Minute)
	touched := 0
	for _, mb := range []int{0, 256} {
		if mb > touched {
			c := env.AttachConsole("s")
			pos := c.Prompt("tiny# ", time.Minute)
			c.Send(fmt.Sprintf("dd if=/dev/urandom of=/tmp/fill bs=1M count=%d && echo FILLED-$((1+1))\r", mb-touched))
			c.Expect(pos, "FILLED-2", 10*time.Minute)
			c.Send("\r\x1d.")
			_ = c.Wait(15 * time.Second)
			touched = mb
		}
		t0 := time.Now()
		env.MustRun("snapshot", "save", "--name", fmt.Sprintf("t%d", mb), "s")
		b.ReportMetric(time.Since(t0).Seconds(), fmt.Sprintf("save-s-after-%dMiB", mb))
	}
}
