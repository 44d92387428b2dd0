package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/network"
)

// newTestEngine wires an engine on temp dirs; nothing here starts a VM.
func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	d := t.TempDir()
	e, err := New(&config.Config{RootDir: filepath.Join(d, "root"), RunDir: filepath.Join(d, "run"),
		LogDir: filepath.Join(d, "log"), QEMUBinary: "qemu-system-x86_64", PoolSize: 2, Hypervisor: "auto"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// seedVMs writes n stopped records shaped like real ones (one NIC, one disk).
func seedVMs(t testing.TB, e *Engine, n int) {
	t.Helper()
	err := e.vms.Update(context.Background(), func(x *vmIndex) error {
		for i := range n {
			id := fmt.Sprintf("%026d", i)
			now := time.Unix(int64(i), 0).UTC()
			x.VMs[id] = &VM{ID: id, Name: fmt.Sprintf("vm%d", i), Hypervisor: "qemu", State: StateStopped,
				Config:   VMConfig{CPU: 1, Memory: 512 << 20, Storage: 10 << 30, NICs: 1, Image: "example/tiny:1", ImageKind: "oci"},
				Networks: []network.Attachment{{IP: fmt.Sprintf("10.88.%d.%d", i/250, i%250+2), MAC: "02:00:00:00:00:01", Tap: "tap0"}},
				RunDir:   "/nonexistent/run/" + id, LogDir: "/nonexistent/log/" + id, CreatedAt: now, UpdatedAt: now}
			x.Names[x.VMs[id].Name] = id
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Read commands must not rewrite the index when reconciliation changes nothing (each rewrite
// is a temp file, two fsyncs and a rename: the cost that made `vm list` slow at scale).
func TestListDoesNotRewriteUnchangedIndex(t *testing.T) {
	e := newTestEngine(t)
	seedVMs(t, e, 3)
	before := inode(t, e.vms.Path())
	vms, err := e.ListVMs(context.Background())
	if err != nil || len(vms) != 3 {
		t.Fatalf("ListVMs = %d VMs, %v; want 3", len(vms), err)
	}
	if _, err := e.InspectVM(context.Background(), "vm1"); err != nil {
		t.Fatal(err)
	}
	if after := inode(t, e.vms.Path()); after != before {
		t.Fatalf("index was rewritten by a read (inode %d → %d)", before, after)
	}
	for i, vm := range vms {
		if vm.Name != fmt.Sprintf("vm%d", i) {
			t.Fatalf("VM %d is %s: want creation order", i, vm.Name)
		}
	}
}

// A record claiming a process that has exited is reconciled to stopped and written back.
func TestListStopsDeadRecords(t *testing.T) {
	e := newTestEngine(t)
	seedVMs(t, e, 2)
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := c.Process.Pid
	if _, err := e.updateVM(context.Background(), fmt.Sprintf("%026d", 1), func(r *VM) error {
		r.State, r.PID, r.PIDStart = StateRunning, deadPID, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ListVMs(context.Background()); err != nil {
		t.Fatal(err)
	}
	vm, err := e.getVM(context.Background(), fmt.Sprintf("%026d", 1))
	if err != nil {
		t.Fatal(err)
	}
	if vm.State != StateStopped || vm.PID != 0 || vm.StoppedAt == nil {
		t.Fatalf("dead VM recorded as %s pid %d stopped_at %v; want stopped, pid 0, a stop time", vm.State, vm.PID, vm.StoppedAt)
	}
}

// BenchmarkListVMs1000: `vm list`'s engine side (read + reconcile + sort) at 1000 records.
func BenchmarkListVMs1000(b *testing.B) {
	e := newTestEngine(b)
	seedVMs(b, e, 1000)
	b.ResetTimer()
	for range b.N {
		if _, err := e.ListVMs(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexWrite1000: one record update (read, modify, atomic write) at 1000 records.
func BenchmarkIndexWrite1000(b *testing.B) {
	e := newTestEngine(b)
	seedVMs(b, e, 1000)
	id := fmt.Sprintf("%026d", 7)
	b.ResetTimer()
	for range b.N {
		if _, err := e.updateVM(context.Background(), id, func(r *VM) error { r.LastError = ""; return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRemove1000: `vm rm` of one stopped VM (resolve, lock, release, drop the record)
// with 1000 records in the index.
func BenchmarkRemove1000(b *testing.B) {
	e := newTestEngine(b)
	seedVMs(b, e, 1000+b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.Batch(ctx, []string{fmt.Sprintf("vm%d", i)}, func(ctx context.Context, id string) error {
			return e.Remove(ctx, id, false)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
