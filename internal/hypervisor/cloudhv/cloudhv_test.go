package cloudhv

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// standin is the built stand-in binary, named cloud-hypervisor as the real one.
var standin string

func TestMain(m *testing.M) {
	relay.Init()
	flag.Parse()
	dir, err := os.MkdirTemp("", "cocoon-chstandin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	standin = filepath.Join(dir, "cloud-hypervisor")
	out, err := exec.Command("go", "build", "-o", standin, "github.com/cocoonstack/cocoon/test/standin/cloud-hypervisor").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the cloud-hypervisor stand-in: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: a backend on the stand-in and a request log.
type env struct {
	t    *testing.T
	dir  string
	b    *Backend
	log  string
	seen int // records already compared
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, b: New(Options{Binary: standin, Firmware: touch(t, filepath.Join(dir, "CLOUDHV.fd"))}),
		log: filepath.Join(dir, "requests.jsonl")}
	t.Setenv("COCOON_STANDIN_LOG", e.log)
	return e
}

func touch(t *testing.T, p string) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sparse(t *testing.T, p string, size int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spec is a direct-boot VM named name with a read-only layer and a writable COW under e.dir.
func (e *env) spec(name string) hypervisor.VMSpec {
	t := e.t
	root := filepath.Join(e.dir, name)
	for _, d := range []string{"run", "log", "mem"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	boot := filepath.Join(e.dir, "boot")
	_ = os.MkdirAll(boot, 0o755)
	layer := filepath.Join(e.dir, "layer0.erofs")
	if _, err := os.Stat(layer); err != nil {
		sparse(t, layer, 1<<20)
	}
	return hypervisor.VMSpec{ID: name, Name: name, CPUs: 1, MaxCPUs: 4, MemoryBytes: 256 << 20,
		Boot: hypervisor.Boot{Kernel: touch(t, filepath.Join(boot, "vmlinuz")), Initrd: touch(t, filepath.Join(boot, "initrd.img")),
			Cmdline: "console=hvc0 boot=cocoon-overlay cocoon.layers=cocoon-layer0 cocoon.cow=cocoon-cow rw"},
		Disks: []hypervisor.Disk{
			{Path: layer, Format: hypervisor.FormatRaw, ReadOnly: true, Serial: "cocoon-layer0", Role: "layer"},
			{Path: sparse(t, filepath.Join(root, "run", "cow.raw"), 8<<20), Format: hypervisor.FormatRaw, Serial: "cocoon-cow", DirectIO: true, Role: "cow"},
		},
		RunDir: filepath.Join(root, "run"), LogDir: filepath.Join(root, "log"), MemoryDir: filepath.Join(root, "mem"),
		Balloon: true, Agent: true}
}

func (e *env) uefi(s hypervisor.VMSpec) hypervisor.VMSpec {
	s.Boot = hypervisor.Boot{Firmware: e.b.firmware}
	s.Disks[1].Format = hypervisor.FormatRaw
	return s
}

func refOf(s hypervisor.VMSpec, p hypervisor.Process) hypervisor.VMRef {
	return hypervisor.VMRef{ID: s.ID, RunDir: s.RunDir, PID: p.PID, StartTime: p.StartTime}
}

// hotplugRE hides the hotplug reservation, which follows the host's RAM.
var hotplugRE = regexp.MustCompile(`hotplug_size=\d+`)

// golden compares the requests since the last call with testdata/<name>.golden.
func (e *env) golden(name string, replace ...string) {
	e.t.Helper()
	rep := map[string]string{e.dir: "$DIR"}
	for i := 0; i+1 < len(replace); i += 2 {
		rep[replace[i]] = replace[i+1]
	}
	recs, err := apicheck.ReadRecords(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	got := recs[e.seen:]
	e.seen = len(recs)
	for _, r := range got {
		if r.Error != "" {
			e.t.Errorf("request rejected by the API definition: %s %s: %s", r.Method, r.Path, r.Error)
		}
	}
	apicheck.CompareGolden(e.t, got, filepath.Join("testdata", name+".golden"), rep, *update)
}

// skip forgets the requests made so far.
func (e *env) skip() {
	recs, err := apicheck.ReadRecords(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.seen = len(recs)
}

// goldenText compares text (temp dir and host-dependent numbers normalised) with a golden file.
func (e *env) goldenText(name, text string) {
	e.t.Helper()
	text = hotplugRE.ReplaceAllString(strings.ReplaceAll(text, e.dir, "$DIR"), "hotplug_size=$$HOTPLUG")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != text {
		e.t.Errorf("%s differs:\n--- want\n%s\n--- got\n%s", path, want, text)
	}
}

func (e *env) start(s hypervisor.VMSpec) hypervisor.Process {
	e.t.Helper()
	p, err := e.b.Start(context.Background(), s)
	if err != nil {
		e.t.Fatalf("start: %v", err)
	}
	e.t.Cleanup(func() { _ = e.b.Stop(context.Background(), refOf(s, p), hypervisor.StopOptions{Force: true}) })
	return p
}

// assertStopped checks the process is gone and no runtime file is left.
func assertStopped(t *testing.T, b *Backend, s hypervisor.VMSpec, p hypervisor.Process) {
	t.Helper()
	if b.Alive(refOf(s, p)) {
		t.Fatalf("VM %s still alive after stop", s.ID)
	}
	for _, f := range b.plan(s.RunDir, s.LogDir).Runtime {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("runtime file %s left after stop", f)
		}
	}
}

// consoleSays attaches to the console relay, types a line and sees it echoed; the console log
// holds want (the guest's banner, printed before anyone attached) and the echo.
func consoleSays(t *testing.T, sock, logPath, want string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("attach console: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hvtest.BootTimeout))
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("echo-me\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, r, "echo-me")
	log := hvtest.WaitForText(t, logPath, "echo-me")
	if !strings.Contains(log, want) {
		t.Errorf("console log %s lacks %q:\n%s", logPath, want, log)
	}
}

func readUntil(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	var seen strings.Builder
	buf := make([]byte, 256)
	for !strings.Contains(seen.String(), want) {
		n, err := r.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("console: waiting for %q, read %q: %v", want, seen.String(), err)
		}
	}
}

func TestStartConsoleAndStopDirectBoot(t *testing.T) {
	e := newEnv(t)
	s := e.spec("vm1")
	tap, fds := hvtest.Tap(t, 2)
	s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:01:01", TapName: tap, Files: fds}}
	p := e.start(s)
	e.golden("start")
	cmdline, err := os.ReadFile(cmdlinePath(s.RunDir))
	if err != nil {
		t.Fatal(err)
	}
	e.goldenText("launch-cmdline", strings.NewReplacer(standin, "cloud-hypervisor", tap, "$TAP").Replace(string(cmdline)))

	consoleSays(t, e.b.ConsoleSocket(refOf(s, p)), e.b.ConsoleLog(s.LogDir), "guest booted")

	// A later command knows only the record: PID from the PID file, no child handle.
	if err := e.b.Stop(context.Background(), hypervisor.VMRef{ID: s.ID, RunDir: s.RunDir}, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertStopped(t, e.b, s, p)
	// Direct boot gets no cooperative power-off on CH: vm.shutdown, then signals.
	e.golden("stop-direct")
}

func TestUEFIGracefulStop(t *testing.T) {
	e := newEnv(t)
	s := e.uefi(e.spec("uefi1"))
	p := e.start(s)
	consoleSays(t, e.b.ConsoleSocket(refOf(s, p)), e.b.ConsoleLog(s.LogDir), "connected")
	if err := e.b.Stop(context.Background(), refOf(s, p), hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertStopped(t, e.b, s, p)
	poweredOff(t, s)
	e.golden("stop-graceful-uefi")
}

// poweredOff checks that the VM ended by its guest powering off, not by a signal.
func poweredOff(t *testing.T, s hypervisor.VMSpec) {
	t.Helper()
	data, _ := os.ReadFile(logPath(s.LogDir))
	if !strings.Contains(string(data), "guest powered off") {
		t.Errorf("the VM did not power off by itself; its log:\n%s", data)
	}
}

// TestUEFIGracefulStopWhilePaused: a paused guest cannot see the power button, so Stop
// resumes it first (a snapshot that never resumed must still stop gracefully).
func TestUEFIGracefulStopWhilePaused(t *testing.T) {
	e := newEnv(t)
	s := e.uefi(e.spec("paused1"))
	p := e.start(s)
	if err := e.b.Pause(context.Background(), refOf(s, p)); err != nil {
		t.Fatal(err)
	}
	e.skip()
	if err := e.b.Stop(context.Background(), refOf(s, p), hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertStopped(t, e.b, s, p)
	poweredOff(t, s)
	e.golden("stop-graceful-paused")
}

func TestForceStopAndCrashedVM(t *testing.T) {
	e := newEnv(t)
	s := e.uefi(e.spec("force1"))
	p := e.start(s)
	if err := e.b.Stop(context.Background(), refOf(s, p), hypervisor.StopOptions{Force: true}); err != nil {
		t.Fatalf("force stop: %v", err)
	}
	assertStopped(t, e.b, s, p)
	e.golden("stop-force")

	s2 := e.spec("crash1")
	p2 := e.start(s2)
	if err := syscall.Kill(p2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for e.b.Alive(refOf(s2, p2)) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.b.Stop(context.Background(), refOf(s2, p2), hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop of a crashed VM: %v", err)
	}
	assertStopped(t, e.b, s2, p2)
}

func TestForeignPIDIsNeverSignalled(t *testing.T) {
	e := newEnv(t)
	s := e.spec("foreign1")
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	if err := os.WriteFile(pidPath(s.RunDir), []byte(fmt.Sprintf("%d\n", sleeper.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := hypervisor.VMRef{ID: s.ID, RunDir: s.RunDir}
	if e.b.Alive(ref) {
		t.Fatal("a sleep process was taken for the VM's hypervisor")
	}
	if err := e.b.Stop(context.Background(), ref, hypervisor.StopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the foreign process was signalled: %v", err)
	}
	if _, err := os.Stat(pidPath(s.RunDir)); err == nil {
		t.Error("stale PID file left")
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	s := e.spec("bad1")
	s.Disks[1].Path = filepath.Join(e.dir, "missing.raw")
	_, err := e.b.Start(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "missing.raw") {
		t.Fatalf("start with a missing disk: want an error naming it, got %v", err)
	}
	for _, f := range e.b.plan(s.RunDir, s.LogDir).Runtime {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("runtime file %s left after a failed start", f)
		}
	}
}

func TestAvailableChecksVersion(t *testing.T) {
	b := New(Options{Binary: standin})
	if err := b.Available(); err != nil {
		t.Fatalf("available: %v", err)
	}
	t.Setenv("COCOON_STANDIN_VERSION", "50.2.0")
	err := b.Available()
	if err == nil || !strings.Contains(err.Error(), "v50") || !strings.Contains(err.Error(), "v51") {
		t.Fatalf("old version: want an error naming v50 and v51, got %v", err)
	}
	if err := New(Options{Binary: "/nonexistent/cloud-hypervisor"}).Available(); err == nil || !strings.Contains(err.Error(), "ch_binary") {
		t.Fatalf("missing binary: want an error naming ch_binary, got %v", err)
	}
}

func TestDebugCommand(t *testing.T) {
	e := newEnv(t)
	s := e.spec("debug1")
	s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01", TapName: "tapdebug1-0", Queues: 1}}
	cmd, err := e.b.DebugCommand(s)
	if err != nil {
		t.Fatal(err)
	}
	e.goldenText("debug-command", strings.ReplaceAll(cmd, standin, "cloud-hypervisor")+"\n")
}

// TestConformance runs the suite every backend passes, on the stand-in.
func TestConformance(t *testing.T) {
	hvtest.Conformance(t, hvtest.Target{
		New: func(t testing.TB) hypervisor.Backend { return New(Options{Binary: standin}) },
		Spec: func(t testing.TB) hypervisor.VMSpec {
			e := &env{t: t.(*testing.T), dir: t.TempDir()}
			return e.spec("conf" + hvtest.RandomID(6))
		},
		Booted: func(t testing.TB, s hypervisor.VMSpec) {
			hvtest.WaitForText(t, consoleLogPath(s.LogDir), "guest booted")
		},
	})
}

// TestAgentChannelWithoutAgent: the hybrid vsock answers, but no agent listens in the guest:
// not connected, and a dial fails saying so.
func TestAgentChannelWithoutAgent(t *testing.T) {
	e := newEnv(t)
	s := e.spec("agent1")
	p := e.start(s)
	ref := refOf(s, p)
	ok, err := e.b.AgentConnected(context.Background(), ref)
	if err != nil || ok {
		t.Fatalf("AgentConnected = %v, %v; want false, nil", ok, err)
	}
	if _, err := e.b.DialAgent(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "CONNECT 1024") {
		t.Fatalf("DialAgent: want a refused CONNECT, got %v", err)
	}
	if _, err := os.Stat(vsockPath(s.RunDir)); err != nil {
		t.Fatalf("vsock socket: %v", err)
	}
}

// TestArgsWindowsUEFI: Windows guests get Hyper-V enlightenments, the firmware, a qcow2 disk
// with its backing chain, the serial port on a socket and no virtio console.
func TestArgsWindowsUEFI(t *testing.T) {
	s := hypervisor.VMSpec{ID: "w", CPUs: 2, MaxCPUs: 4, MemoryBytes: 2 << 30, Windows: true, RunDir: "/run/w",
		Boot:  hypervisor.Boot{Firmware: "/fw/CLOUDHV.fd"},
		Disks: []hypervisor.Disk{{Path: "/run/w/overlay.qcow2", Format: hypervisor.FormatQcow2, DirectIO: true}},
		NICs:  []hypervisor.NIC{{MAC: "02:00:00:00:00:07", TapName: "tapw", Queues: 2}}}
	args, files := buildArgs(s, false)
	got := strings.Join(args, " ")
	for _, want := range []string{"--cpus boot=2,max=4,kvm_hyperv=on", "--firmware /fw/CLOUDHV.fd",
		"--disk path=/run/w/overlay.qcow2,direct=on,image_type=qcow2,backing_files=on,num_queues=2,queue_size=512 ",
		"--net tap=tapw,mac=02:00:00:00:00:07,num_queues=4,queue_size=512,offload_tso=on,offload_ufo=on,offload_csum=on",
		"--serial socket=/run/w/serial.sock --console off"} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"--kernel", "--balloon", "--vsock", "--cmdline"} {
		if strings.Contains(got, bad) {
			t.Errorf("args have %s:\n%s", bad, got)
		}
	}
	if len(files) != 0 {
		t.Errorf("%d fds passed for a NIC named by TAP", len(files))
	}
}

// TestStandinRefusesWhatCHRefuses: the stand-in's command line is as strict as the real one,
// so a backend argv that passes here is one CH's parser accepts.
func TestStandinRefusesWhatCHRefuses(t *testing.T) {
	dir := t.TempDir()
	disk := sparse(t, filepath.Join(dir, "d.raw"), 1<<20)
	kernel := touch(t, filepath.Join(dir, "vmlinuz"))
	base := []string{"--api-socket", filepath.Join(dir, "api.sock"), "--kernel", kernel}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, c := range map[string]struct {
		args  []string
		files []*os.File
		want  string
	}{
		"unknown flag":        {[]string{"--bogus"}, nil, "unexpected argument"},
		"unknown key":         {[]string{"--cpus", "boot=1,cores=2"}, nil, "unknown parameter"},
		"max below boot":      {[]string{"--cpus", "boot=2,max=1"}, nil, "lower than boot"},
		"bad bool":            {[]string{"--disk", "path=" + disk + ",readonly=yes"}, nil, "not on or off"},
		"missing disk":        {[]string{"--disk", "path=" + dir + "/nope.raw"}, nil, "nope.raw"},
		"queues vs fds":       {[]string{"--net", "fd=[3],mac=02:00:00:00:00:01,num_queues=4"}, []*os.File{null}, "does not match"},
		"fd not a TAP":        {[]string{"--net", "fd=[3],mac=02:00:00:00:00:01,num_queues=2"}, []*os.File{null}, "not an open TAP"},
		"missing TAP":         {[]string{"--net", "tap=nosuchtap0,mac=02:00:00:00:00:01"}, nil, "nosuchtap0"},
		"balloon too big":     {[]string{"--memory", "size=128M", "--balloon", "size=256M"}, nil, "balloon size"},
		"console socket":      {[]string{"--console", "socket=/tmp/x"}, nil, "only for --serial"},
		"hotplug not aligned": {[]string{"--memory", "size=256M,hotplug_size=100M"}, nil, "128 MiB"},
	} {
		cmd := exec.Command(standin, append(slices.Clone(base), c.args...)...)
		cmd.ExtraFiles = c.files
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: want exit 1 saying %q, got %v: %s", name, c.want, err, out)
		}
	}
	// Without a payload, device options are refused; alone, --api-socket starts a bare VMM.
	if out, err := exec.Command(standin, "--api-socket", filepath.Join(dir, "x.sock"), "--cpus", "boot=1").CombinedOutput(); err == nil {
		t.Errorf("--cpus without a payload accepted: %s", out)
	}
}
