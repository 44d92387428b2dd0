package firecracker

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Built once in TestMain: the stand-in binary (named firecracker, so the ownership check by
// binary name is real) and an ELF file to boot as the "kernel".
var standin, kernel string

func TestMain(m *testing.M) {
	relay.Init()
	flag.Parse()
	dir, err := os.MkdirTemp("", "fc-standin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	standin, kernel = filepath.Join(dir, "firecracker"), filepath.Join(dir, "vmlinux")
	out, err := exec.Command("go", "build", "-o", standin, "github.com/cocoonstack/cocoon/test/standin/firecracker").CombinedOutput()
	if err == nil {
		// Any ELF image will do: the stand-in checks the magic, as FC's loader would.
		err = exec.Command("cp", standin, kernel).Run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build stand-in: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newBackend() *Backend { return New(Options{Binary: standin, SocketWait: 20 * time.Second}) }

// testVM is one VM's directories under its own root: run, log and disks.
type testVM struct {
	root string
	spec hypervisor.VMSpec
}

// newVM plans a 2-vCPU, 256 MiB VM with a read-only layer and a writable COW, no NICs.
func newVM(t *testing.T, agent bool) testVM {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"run", "log", "disks", "mem"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	layer, cow := filepath.Join(root, "disks", "layer0.erofs"), filepath.Join(root, "disks", "cow.raw")
	for _, p := range []string{layer, cow} {
		if err := os.WriteFile(p, []byte("disk "+filepath.Base(p)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return testVM{root: root, spec: hypervisor.VMSpec{
		ID: "fc" + hvtest.RandomID(10), Name: "fc-test", CPUs: 2, MemoryBytes: 256 << 20,
		Boot: hypervisor.Boot{Kernel: kernel, Cmdline: "console=ttyS0 reboot=k pci=off"},
		Disks: []hypervisor.Disk{
			{Path: layer, Format: hypervisor.FormatRaw, ReadOnly: true, Role: "layer"},
			{Path: cow, Format: hypervisor.FormatRaw, Role: "cow"},
		},
		RunDir: filepath.Join(root, "run"), LogDir: filepath.Join(root, "log"), MemoryDir: filepath.Join(root, "mem"),
		Balloon: true, Agent: agent,
	}}
}

// requestLog points the stand-ins this test starts at a fresh request log.
func requestLog(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "requests.jsonl")
	t.Setenv("COCOON_STANDIN_LOG", p)
	return p
}

func records(t *testing.T, log string) []apicheck.Record {
	t.Helper()
	recs, err := apicheck.ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Error != "" {
			t.Errorf("request rejected by the API definition: %s %s: %s", r.Method, r.Path, r.Error)
		}
	}
	return recs
}

func golden(t *testing.T, recs []apicheck.Record, name string, vms map[string]testVM, extra map[string]string) {
	t.Helper()
	replace := map[string]string{kernel: "$KERNEL"}
	for k, v := range extra {
		replace[k] = v
	}
	for name, vm := range vms {
		replace[vm.root] = "$" + name
	}
	apicheck.CompareGolden(t, recs, filepath.Join("testdata", name), replace, *update)
}

func refOf(spec hypervisor.VMSpec, p hypervisor.Process) hypervisor.VMRef {
	return hypervisor.VMRef{ID: spec.ID, RunDir: spec.RunDir, PID: p.PID, StartTime: p.StartTime}
}

// start starts spec and makes sure the VM is gone when the test ends, even on failure.
func start(t *testing.T, b *Backend, spec hypervisor.VMSpec, fn func() (hypervisor.Process, error)) hypervisor.Process {
	t.Helper()
	p, err := fn()
	if err != nil {
		t.Fatalf("start VM %s: %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := b.Stop(context.Background(), refOf(spec, p), hypervisor.StopOptions{Force: true}); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return p
}

// assertGone checks that no runtime file and no process of spec's VM is left.
func assertGone(t *testing.T, b *Backend, spec hypervisor.VMSpec, p hypervisor.Process) {
	t.Helper()
	if b.Alive(refOf(spec, p)) {
		t.Errorf("VM %s still alive", spec.ID)
	}
	for _, f := range []string{apiPath(spec.RunDir), pidPath(spec.RunDir), vsockPath(spec.RunDir), diskLinkDir(spec.RunDir)} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s still exists after stop", f)
		}
	}
	for _, d := range spec.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			t.Errorf("disk %s gone after stop: %v", d.Path, err)
		}
	}
}

// waitFor reads r until it has seen want. The deadline is a guard against a hung test.
func waitFor(t *testing.T, conn net.Conn, want string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var seen strings.Builder
	br := bufio.NewReader(conn)
	buf := make([]byte, 256)
	for !strings.Contains(seen.String(), want) {
		n, err := br.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("console: waiting for %q, got %q: %v", want, seen.String(), err)
		}
	}
}

// eventually polls cond; the bound only guards against a hung test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func fileContains(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
