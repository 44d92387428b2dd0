package engine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/snapshot/snaptest"
)

func testEngine(t *testing.T) *Engine {
	t.Helper()
	d := t.TempDir()
	cfg := &config.Config{RootDir: filepath.Join(d, "root"), RunDir: filepath.Join(d, "run"), LogDir: filepath.Join(d, "log"),
		MemoryDir: filepath.Join(d, "mem"), PoolSize: 1, Hypervisor: "auto"}
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func requireQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (qemu-utils)")
	}
}

// importOf imports archive and checks that a refusal leaves no snapshot and no staging dir.
func importOf(t *testing.T, e *Engine, archive []byte) error {
	t.Helper()
	_, err := e.ImportSnapshot(context.Background(), bytes.NewReader(archive), SaveOptions{Name: "imp"})
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans several lines: %q", err)
	}
	if list, lerr := e.ListSnapshots(context.Background(), ""); lerr != nil || len(list) != 0 {
		t.Errorf("a refused import left snapshots: %v %v", list, lerr)
	}
	for _, sub := range []string{"staging", "data"} {
		if left, _ := os.ReadDir(filepath.Join(e.cfg.RootDir, "snapshot", sub)); len(left) != 0 {
			t.Errorf("a refused import left %s/%v", sub, left)
		}
	}
	return err
}

const injectedDriver = `[{"driver":"loader,file=/etc/shadow,addr=0","id":"cpu1","props":{"socket-id":1}}]`
const injectedKey = `[{"driver":"max-x86_64-cpu","id":"cpu1","props":{"socket-id,file=/etc/shadow":1}}]`

func TestImportRefusesCraftedSnapshots(t *testing.T) {
	requireQemuImg(t)
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		cloud bool
		edit  func(t *testing.T, dir string, m *snapshot.Manifest)
		want  string
	}{
		{"disk file escapes the snapshot dir", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Disks[1].File = "../../../../etc/shadow"
		}, `file "../../../../etc/shadow" is not a disk payload name`},
		{"disk file is an absolute path", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Disks[1].File = victim
		}, "is not a disk payload name"},
		{"disk file not declared", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Files = m.Files[1:] // cow.raw sorts first
		}, "file cow.raw is not declared in files"},
		{"raw payload declared qcow2", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Disks[1].Format = "qcow2"
		}, `cow.raw is a raw disk (read-only false), the manifest says "qcow2"`},
		{"writable layer", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Disks[0].ReadOnly = false
		}, "layer disks are raw and read-only"},
		{"unknown role", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Disks[1].Role = "swap"
		}, `role "swap" is not`},
		{"flipped byte in a payload", false, func(t *testing.T, dir string, _ *snapshot.Manifest) {
			flip(t, filepath.Join(dir, snapshot.FileCOW), 4096)
		}, "cow.raw does not match its manifest digest"},
		{"flipped byte in a hole", false, func(t *testing.T, dir string, _ *snapshot.Manifest) {
			flip(t, filepath.Join(dir, snapshot.FileCOW), 900_000)
		}, "cow.raw does not match its manifest digest"},
		{"vCPU driver injection in the state header", false, func(t *testing.T, dir string, m *snapshot.Manifest) {
			rewriteState(t, dir, m, snaptest.Layout(2, false, injectedDriver))
		}, `driver "loader,file=/etc/shadow,addr=0" is not the tcg vCPU type`},
		{"vCPU property key injection in the state header", false, func(t *testing.T, dir string, m *snapshot.Manifest) {
			rewriteState(t, dir, m, snaptest.Layout(2, false, injectedKey))
		}, `property "socket-id,file=/etc/shadow" is not a vCPU topology property`},
		{"memory file shorter than the guest RAM", false, func(t *testing.T, dir string, m *snapshot.Manifest) {
			shared := strings.Replace(snaptest.Layout(2, false, ""), `"shared":false`, `"shared":true`, 1)
			if err := os.WriteFile(filepath.Join(dir, snaptest.FileState), snaptest.StateFile(t, shared), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, snaptest.FileMemory), make([]byte, 1<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			snaptest.Declare(t, dir, m)
		}, "memory file is not a regular file of 268435456 bytes"},
		{"state header disagrees with the manifest", false, func(_ *testing.T, _ string, m *snapshot.Manifest) {
			m.Memory = 512 << 20
		}, "disagree"},
		{"cidata declared qcow2 with a backing host file", true, func(t *testing.T, dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileCidata)
			os.Remove(p)
			snaptest.Qcow2(t, p, "-F", "raw", "-b", victim)
			m.Disks[1].Format = "qcow2"
			snaptest.Declare(t, dir, m)
		}, `cidata.img is a raw disk (read-only true), the manifest says "qcow2"`},
		{"overlay with a backing host file", true, func(t *testing.T, dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileOverlay)
			os.Remove(p)
			snaptest.Qcow2(t, p, "-F", "raw", "-b", victim)
			snaptest.Declare(t, dir, m)
		}, `overlay.qcow2 has backing file "` + victim + `", not the snapshot's base image`},
		{"overlay with a relative backing blob name", true, func(t *testing.T, dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileOverlay)
			os.Remove(p)
			snaptest.Qcow2(t, p, "-F", "qcow2", "-u", "-b", "../"+snaptest.BlobID+".qcow2")
			snaptest.Declare(t, dir, m)
		}, "not the snapshot's base image"},
		{"overlay with an external data file", true, func(t *testing.T, dir string, m *snapshot.Manifest) {
			p := filepath.Join(dir, snapshot.FileOverlay)
			os.Remove(p)
			data := filepath.Join(t.TempDir(), "data.raw") // qemu-img create writes it
			snaptest.Qcow2(t, p, "-o", "data_file="+data+",data_file_raw=on")
			snaptest.Declare(t, dir, m)
		}, "has an external data file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := testEngine(t)
			dir, m := snaptest.OCI(t)
			if tc.cloud {
				dir, m = snaptest.Cloud(t)
			}
			tc.edit(t, dir, m)
			err := importOf(t, e, snaptest.Pack(t, dir, m))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if data, _ := os.ReadFile(victim); string(data) != "root:secret\n" {
		t.Errorf("the host file was changed: %q", data)
	}
}

func TestImportAcceptsUntamperedSnapshots(t *testing.T) {
	requireQemuImg(t)
	for _, cloud := range []bool{false, true} {
		e := testEngine(t)
		dir, m := snaptest.OCI(t)
		if cloud {
			dir, m = snaptest.Cloud(t)
		}
		if err := importOf(t, e, snaptest.Pack(t, dir, m)); err != nil {
			t.Fatalf("import of a valid %s snapshot: %v", m.ImageKind, err)
		}
		snap, err := e.InspectSnapshot(context.Background(), "imp")
		if err != nil || len(snap.Manifest.Files) != len(m.Files) {
			t.Fatalf("imported snapshot: %v %+v", err, snap)
		}
	}
}

// A snapshot already in the index (an older import, a hand-edited record) is checked again
// before clone copies anything: its disk file must still be a payload name.
func TestCloneRefusesDiskPathsOutsideTheSnapshot(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	dir, m := snaptest.OCI(t)
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := &snapshot.Snapshot{ID: "HOSTILE0", Name: "hostile", Manifest: *m}
	rel, err := filepath.Rel(e.snaps.Dir(snap.ID), victim)
	if err != nil {
		t.Fatal(err)
	}
	snap.Manifest.Disks[1].File = rel
	if err := e.snaps.Reserve(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := e.snaps.Commit(ctx, snap, dir); err != nil {
		t.Fatal(err)
	}
	_, err = e.Clone(ctx, CloneOptions{Snapshot: "hostile"})
	if err == nil || !strings.Contains(err.Error(), "is not a disk payload name") {
		t.Fatalf("clone = %v, want a refusal of the disk file name", err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "root:secret\n" {
		t.Errorf("the host file was changed: %q", data)
	}
}

func TestCheckOverlayBeforeLaunch(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, snaptest.BlobID+".qcow2")
	snaptest.Qcow2(t, blob)
	good := filepath.Join(dir, "good.qcow2")
	snaptest.Qcow2(t, good, "-F", "qcow2", "-b", blob)
	if err := checkOverlay(good, blob); err != nil {
		t.Errorf("overlay on the base blob refused: %v", err)
	}
	other := filepath.Join(dir, "other.qcow2")
	snaptest.Qcow2(t, other, "-F", "qcow2", "-b", good)
	withData := filepath.Join(dir, "data.qcow2")
	snaptest.Qcow2(t, withData, "-o", "data_file="+filepath.Join(dir, "data.raw"))
	for path, want := range map[string]string{other: "has backing file", withData: "external data file"} {
		if err := checkOverlay(path, blob); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", filepath.Base(path), err, want)
		}
	}
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// rewriteState replaces the state file with one whose header holds layout, and re-declares.
func rewriteState(t *testing.T, dir string, m *snapshot.Manifest, layout string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, snaptest.FileState), snaptest.StateFile(t, layout), 0o600); err != nil {
		t.Fatal(err)
	}
	m.CPU = 2 // the record agrees with the header's 1 boot + 1 hot-added vCPU
	snaptest.Declare(t, dir, m)
}
