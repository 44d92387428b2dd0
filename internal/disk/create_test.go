package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func assertOnly(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("files in %s: %v, want %v", dir, names, want)
	}
}

func TestCreateRawExt4PassesFsck(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	requireTool(t, "e2fsck")
	requireTool(t, "blkid")
	dir := t.TempDir()
	path := filepath.Join(dir, "cow.raw")
	if err := CreateRawExt4(path, 256*mib, "cocoon-cow"); err != nil {
		t.Fatal(err)
	}
	st := statT(t, path)
	if st.Size != 256*mib || st.Mode&0o777 != 0o600 {
		t.Fatalf("size %d mode %o, want %d 0600", st.Size, st.Mode&0o777, 256*mib)
	}
	if st.Blocks*512 > 64*mib {
		t.Fatalf("fresh ext4 disk allocates %d bytes: not sparse", st.Blocks*512)
	}
	mustRun(t, "e2fsck", "-fn", path)
	if label := strings.TrimSpace(mustRun(t, "blkid", "-o", "value", "-s", "LABEL", path)); label != "cocoon-cow" {
		t.Fatalf("label %q", label)
	}
	assertOnly(t, dir, "cow.raw")
}

func TestCreateRawExt4FailureLeavesNothing(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	if err := CreateRawExt4(filepath.Join(dir, "tiny.raw"), 4096, ""); err == nil ||
		!strings.Contains(err.Error(), "mkfs.ext4") {
		t.Fatalf("4 KiB ext4 disk: err %v, want mkfs.ext4 failure", err)
	}
	if err := CreateRawExt4(filepath.Join(dir, "x.raw"), 64*mib, "a-label-that-is-too-long"); err == nil {
		t.Fatal("17-byte label accepted")
	}
	assertOnly(t, dir)
}

func TestCreateRawIsSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data-none.raw")
	if err := CreateRaw(path, 32*mib); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, path); st.Size != 32*mib || st.Blocks != 0 || st.Mode&0o777 != 0o600 {
		t.Fatalf("size %d blocks %d mode %o", st.Size, st.Blocks, st.Mode&0o777)
	}
	if err := CreateRaw(path, 0); err == nil {
		t.Fatal("zero size accepted")
	}
}

func TestQcow2OverlayBackingAndSize(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
	overlay := filepath.Join(dir, "overlay.qcow2")
	if err := CreateQcow2Overlay(overlay, base, 128*mib); err != nil {
		t.Fatal(err)
	}
	info, err := Info(overlay, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 128*mib || info.BackingFile != base || info.ActualSize <= 0 {
		t.Fatalf("overlay info %+v", info)
	}
	if st := statT(t, overlay); st.Mode&0o777 != 0o600 {
		t.Fatalf("overlay mode %o", st.Mode&0o777)
	}
	mustRun(t, "qemu-img", "check", overlay)

	small := filepath.Join(dir, "small.qcow2")
	err = CreateQcow2Overlay(small, base, 32*mib)
	if err == nil || !strings.Contains(err.Error(), "33554432") || !strings.Contains(err.Error(), "67108864") {
		t.Fatalf("overlay smaller than base: err %v, want both sizes named", err)
	}
	assertOnly(t, dir, "base.qcow2", "overlay.qcow2")
}

func TestResizeGrowsAndRefusesToShrink(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	q := filepath.Join(dir, "disk.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", q, "64M")
	if err := Resize(q, "qcow2", 256*mib); err != nil {
		t.Fatal(err)
	}
	if info, err := Info(q, "qcow2"); err != nil || info.VirtualSize != 256*mib {
		t.Fatalf("after grow: %+v %v", info, err)
	}
	if err := Resize(q, "qcow2", 128*mib); err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Fatalf("qcow2 shrink: err %v", err)
	}
	if err := Resize(q, "qcow2", 256*mib); err != nil {
		t.Fatalf("same size: %v", err)
	}

	r := filepath.Join(dir, "cow.raw")
	if err := CreateRaw(r, 16*mib); err != nil {
		t.Fatal(err)
	}
	if err := Resize(r, "raw", 48*mib); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, r); st.Size != 48*mib || st.Blocks != 0 {
		t.Fatalf("raw after grow: size %d blocks %d", st.Size, st.Blocks)
	}
	if err := Resize(r, "raw", 16*mib); err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Fatalf("raw shrink: err %v", err)
	}
	if err := Resize(r, "qcow2", 64*mib); err == nil {
		t.Fatal("resizing a raw file as qcow2 accepted")
	}
	if st := statT(t, r); st.Size != 48*mib {
		t.Fatalf("refused resizes changed the raw size to %d", st.Size)
	}
}

// A guest may write a qcow2 header, naming a host file as backing, at the start of its raw disk:
// qemu-img must read the disk as raw, never probe it.
func TestInfoNeverProbesGuestDisks(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	hdr := filepath.Join(dir, "hdr.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", hdr, "1G")
	header, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dir, "cow.raw")
	if err := CreateRaw(r, 16*mib); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(r, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(header, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := Info(r, "raw")
	if err != nil || info.Format != "raw" || info.VirtualSize != 16*mib || info.BackingFile != "" {
		t.Fatalf("guest disk read as %+v (%v), want raw of 16 MiB without backing", info, err)
	}
	if err := Resize(r, "raw", 32*mib); err != nil {
		t.Fatalf("grow guest disk: %v", err)
	}
	if st := statT(t, r); st.Size != 32*mib {
		t.Fatalf("size %d after grow", st.Size)
	}
	if _, err := Info(r, "vmdk"); err == nil {
		t.Fatal("unknown format accepted")
	}
}
