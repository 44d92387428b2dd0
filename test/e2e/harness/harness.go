// Package harness runs the built cocoon binary against real parts for end-to-end tests: each
// Env has its own root, run, log and memory dirs and config file; registries, HTTP servers,
// network namespaces and console PTYs are made per test and removed even when the test fails.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Repo is the repository root (test/e2e/harness → ../../..).
var Repo = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}()

// ImageDir is where `make images` leaves the guest images.
var ImageDir = filepath.Join(Repo, "os-image", ".cache", "out")

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Binary returns the cocoon binary under test: $COCOON_BIN, else one built once for the run.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("COCOON_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cocoon-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "cocoon")
		// The guest agents go beside cocoon, where cocoon looks for them (as make build does).
		other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
		for _, b := range []struct{ pkg, out, arch string }{{"cocoon", "cocoon", runtime.GOARCH},
			{"cocoon-agent", "cocoon-agent", runtime.GOARCH}, {"cocoon-agent", "cocoon-agent-" + other, other}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), "./cmd/"+b.pkg)
			cmd.Dir = Repo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+b.arch)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b.out, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// Require skips the test unless it runs as root with the named binaries installed and not in
// -short mode. The skip message names what is missing.
func Require(t testing.TB, binaries ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e test skipped in -short mode (boots real VMs)")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e test needs root")
	}
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s binary not found: run make deps", b)
		}
	}
}

// RequireImage skips unless `make images` built the named guest image.
func RequireImage(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ImageDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("guest image %s not found: run make images", p)
	}
	return p
}

// Env is one isolated cocoon installation.
type Env struct {
	t        testing.TB
	Bin      string
	Root     string
	RunDir   string
	LogDir   string
	MemDir   string
	Config   string
	Netns    string // when set, commands run inside this network namespace
	ExtraEnv []string
	cleaned  bool
}

// NewEnv makes fresh dirs and a config file; Cleanup force-removes every VM and kills any
// hypervisor still referring to this env's dirs.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	base := t.TempDir()
	mem, err := os.MkdirTemp("/dev/shm", "cocoon-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Bin: Binary(t), Root: filepath.Join(base, "root"), RunDir: filepath.Join(base, "run"),
		LogDir: filepath.Join(base, "log"), MemDir: mem, Config: filepath.Join(base, "cocoon.yaml")}
	e.writeConfig()
	t.Cleanup(e.cleanup)
	return e
}

func (e *Env) writeConfig() {
	cfg := fmt.Sprintf("root_dir: %s\nrun_dir: %s\nlog_dir: %s\nmemory_dir: %s\ncni_conf_dir: %s\ncni_bin_dir: /usr/lib/cni\nstop_timeout_seconds: 30\nlog:\n  level: debug\n",
		e.Root, e.RunDir, e.LogDir, e.MemDir, filepath.Join(filepath.Dir(e.Config), "cni"))
	if err := os.WriteFile(e.Config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// MoveState puts the root and run dirs under dir (e.g. a small filesystem) before first use.
func (e *Env) MoveState(dir string) {
	e.Root, e.RunDir = filepath.Join(dir, "root"), filepath.Join(dir, "run")
	e.writeConfig()
}

// cleanup removes every VM of the env and leftover processes; it may run more than once.
func (e *Env) cleanup() {
	if e.cleaned {
		return
	}
	e.cleaned = true
	if e.t.Failed() {
		e.dumpLogs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var vms []struct {
		ID string `json:"id"`
	}
	if out, err := e.cmd(ctx, "vm", "list", "-o", "json").Output(); err == nil {
		_ = json.Unmarshal(out, &vms)
	}
	for _, vm := range vms {
		if out, err := e.cmd(ctx, "vm", "rm", "--force", vm.ID).CombinedOutput(); err != nil {
			e.t.Logf("cleanup: rm %s: %v: %s", vm.ID, err, out)
		}
	}
	// Standby clones are hidden from vm list: removing their snapshots removes them (and
	// waits for a refill in flight).
	var snaps []struct {
		ID string `json:"id"`
	}
	if out, err := e.cmd(ctx, "snapshot", "list", "-o", "json").Output(); err == nil {
		_ = json.Unmarshal(out, &snaps)
	}
	for _, s := range snaps {
		if out, err := e.cmd(ctx, "snapshot", "rm", s.ID).CombinedOutput(); err != nil {
			e.t.Logf("cleanup: snapshot rm %s: %v: %s", s.ID, err, out)
		}
	}
	KillProcessesMatching(e.RunDir)
	os.RemoveAll(e.MemDir)
}

// dumpLogs prints the hypervisor and console logs of every VM to the test log.
func (e *Env) dumpLogs() {
	_ = filepath.Walk(e.LogDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			data, _ := os.ReadFile(p)
			if len(data) > 8000 {
				data = data[len(data)-8000:]
			}
			e.t.Logf("==== %s ====\n%s", p, data)
		}
		return nil
	})
}

func (e *Env) cmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--config", e.Config}, args...)
	var c *exec.Cmd
	if e.Netns != "" {
		// nsenter, not `ip netns exec`: the latter runs in a private mount namespace, so the
		// VM netns mounts cocoon makes would vanish when the command exits.
		c = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + e.Netns, e.Bin}, full...)...)
	} else {
		c = exec.CommandContext(ctx, e.Bin, full...)
	}
	c.Env = append(os.Environ(), e.ExtraEnv...)
	return c
}

// Result is one finished command.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Run runs cocoon with args (no stdin) and returns its output, whatever the exit status.
func (e *Env) Run(args ...string) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return e.RunCmd(e.cmd(ctx, args...))
}

// RunCmd runs a prepared command and captures its output.
func (e *Env) RunCmd(c *exec.Cmd) Result {
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	e.t.Logf("cocoon %s → err=%v\nstdout: %s\nstderr: %s", strings.Join(c.Args[1:], " "), err, trim(out.String()), trim(errb.String()))
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// Cmd returns a command for callers that need stdin or a PTY.
func (e *Env) Cmd(ctx context.Context, args ...string) *exec.Cmd { return e.cmd(ctx, args...) }

// MustRun runs cocoon and fails the test on a non-zero exit.
func (e *Env) MustRun(args ...string) string {
	e.t.Helper()
	r := e.Run(args...)
	if r.Err != nil {
		e.t.Fatalf("cocoon %s: %v\n%s", strings.Join(args, " "), r.Err, r.Stderr)
	}
	return r.Stdout
}

// MustFail runs cocoon, expects a non-zero exit and a one-line error containing want.
func (e *Env) MustFail(want string, args ...string) Result {
	e.t.Helper()
	r := e.Run(args...)
	if r.Err == nil {
		e.t.Fatalf("cocoon %s succeeded, want failure containing %q", strings.Join(args, " "), want)
	}
	line := lastLine(r.Stderr)
	if !strings.HasPrefix(line, "Error: ") || !strings.Contains(line, want) {
		e.t.Fatalf("cocoon %s: want error containing %q, got stderr:\n%s", strings.Join(args, " "), want, r.Stderr)
	}
	return r
}

// VM is the subset of `vm inspect` the tests read, flattened from the original's shape.
type VM struct {
	ID, Name, State, RunDir, LogDir, Accel string
	PID                                    int
	Networks                               []NIC
}

// NIC is one entry of network_configs.
type NIC struct {
	IP, MAC, Tap string
	MTU          int
}

// UnmarshalJSON decodes the `vm inspect` object: the name under config, each NIC's address in
// a network object (nil for DHCP).
func (v *VM) UnmarshalJSON(b []byte) error {
	var w struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		PID    int    `json:"pid"`
		RunDir string `json:"run_dir"`
		LogDir string `json:"log_dir"`
		Accel  string `json:"accel"`
		Config struct {
			Name string `json:"name"`
		} `json:"config"`
		NICs []struct {
			Tap     string `json:"tap"`
			MAC     string `json:"mac"`
			MTU     int    `json:"mtu"`
			Network *struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"network_configs"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*v = VM{ID: w.ID, Name: w.Config.Name, State: w.State, RunDir: w.RunDir, LogDir: w.LogDir, Accel: w.Accel, PID: w.PID}
	for _, n := range w.NICs {
		nic := NIC{MAC: n.MAC, Tap: n.Tap, MTU: n.MTU}
		if n.Network != nil {
			nic.IP = n.Network.IP
		}
		v.Networks = append(v.Networks, nic)
	}
	return nil
}

// Inspect returns a VM's record as cocoon shows it.
func (e *Env) Inspect(ref string) VM {
	e.t.Helper()
	var vm VM
	if err := json.Unmarshal([]byte(e.MustRun("vm", "inspect", ref)), &vm); err != nil {
		e.t.Fatalf("parse vm inspect: %v", err)
	}
	return vm
}

// ConsoleLog returns the VM's console output so far.
func (e *Env) ConsoleLog(vm VM) string {
	data, _ := os.ReadFile(filepath.Join(vm.LogDir, "console.log"))
	return string(data)
}

// WaitConsole waits until the VM's console log contains want.
func (e *Env) WaitConsole(vm VM, want string, timeout time.Duration) string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := e.ConsoleLog(vm)
		if strings.Contains(log, want) {
			return log
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("VM %s: %q not seen on the console within %s; console:\n%s", vm.Name, want, timeout, tail(log, 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// KillProcessesMatching SIGKILLs processes whose command line contains s (leftovers of a
// failed test); it only matches this test's unique temp paths.
func KillProcessesMatching(s string) {
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		var pid int
		if _, err := fmt.Sscanf(en.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
}

func trim(s string) string { return tail(strings.TrimSpace(s), 4000) }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// LastLine is the last line of s (the error line of a failed command's stderr).
func LastLine(s string) string { return lastLine(s) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
