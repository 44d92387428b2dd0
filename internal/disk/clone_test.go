package disk

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s binary not found", name)
	}
}

func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s", why)
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeSparse writes random data at the given MiB offsets (1 MiB each) into a file of sizeMiB,
// leaving everything else a hole.
func writeSparse(t *testing.T, path string, sizeMiB int64, dataAtMiB ...int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(sizeMiB * mib); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, mib)
	for _, at := range dataAtMiB {
		rand.Read(buf)
		if _, err := f.WriteAt(buf, at*mib); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func fileDigest(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func assertSameSparseCopy(t *testing.T, src, dst string) {
	t.Helper()
	if fileDigest(t, src) != fileDigest(t, dst) {
		t.Fatal("copy differs from source")
	}
	s, d := statT(t, src), statT(t, dst)
	if d.Size != s.Size {
		t.Fatalf("size %d, want %d", d.Size, s.Size)
	}
	if d.Blocks > s.Blocks {
		t.Fatalf("copy uses %d blocks, source %d: holes were filled", d.Blocks, s.Blocks)
	}
	if d.Mode&0o777 != s.Mode&0o777 {
		t.Fatalf("mode %o, want %o", d.Mode&0o777, s.Mode&0o777)
	}
}

func isExt4(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.EXT4_SUPER_MAGIC
}

func TestCloneFileSparseCopyKeepsHolesAndContent(t *testing.T) {
	dir := t.TempDir()
	if !isExt4(t, dir) {
		t.Skip("temp dir is not on ext4 (the no-reflink case this test covers)")
	}
	src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "dst.raw")
	writeSparse(t, src, 64, 0, 31, 32, 63) // includes data touching EOF and two adjacent MiBs
	method, err := CloneFile(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodSparseCopy {
		t.Fatalf("method %q on ext4, want %q", method, MethodSparseCopy)
	}
	assertSameSparseCopy(t, src, dst)
	if blocks := statT(t, dst).Blocks * 512; blocks > 8*mib {
		t.Fatalf("copy of 4 MiB of data allocates %d bytes", blocks)
	}
}

func TestCloneFileAcrossFilesystemsKeepsHoles(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("/dev/shm is not a tmpfs (needed for a cross-filesystem source)")
	}
	srcDir, err := os.MkdirTemp("/dev/shm", "disk-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(srcDir) })
	src, dst := filepath.Join(srcDir, "src.raw"), filepath.Join(t.TempDir(), "dst.raw")
	writeSparse(t, src, 16, 2, 9)
	method, err := CloneFile(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodSparseCopy {
		t.Fatalf("method %q across filesystems, want %q", method, MethodSparseCopy)
	}
	assertSameSparseCopy(t, src, dst)
}

func TestCloneFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparse(t, src, 4, 1)
	// A non-empty directory at dst makes the final rename fail after the copy was made.
	dst := filepath.Join(dir, "dst")
	if err := os.MkdirAll(filepath.Join(dst, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := CloneFile(dst, src); err == nil {
		t.Fatal("clone onto a non-empty directory succeeded")
	}
	if _, err := CloneFile(filepath.Join(dir, "other.raw"), filepath.Join(dir, "missing.raw")); err == nil {
		t.Fatal("clone of a missing source succeeded")
	}
	assertOnly(t, dir, "dst", "src.raw") // no leftovers after failed clones
}

// mountXFS mounts a fresh reflink-capable XFS (1 GiB loop file) and returns its mount point.
func mountXFS(t *testing.T) string {
	t.Helper()
	requireRoot(t, "mount a loop XFS")
	requireTool(t, "mkfs.xfs")
	requireTool(t, "mount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(img, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mkfs.xfs", "-q", "-m", "reflink=1", img)
	mustRun(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func TestCloneFileReflinkSharesExtentsOnXFS(t *testing.T) {
	requireTool(t, "filefrag")
	mnt := mountXFS(t)
	if !SupportsReflink(mnt) {
		t.Fatal("SupportsReflink is false on XFS made with reflink=1")
	}
	src, dst := filepath.Join(mnt, "src.raw"), filepath.Join(mnt, "dst.raw")
	writeSparse(t, src, 64, 0, 40)
	method, err := CloneFile(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if method != MethodReflink {
		t.Fatalf("method %q on reflink XFS, want %q", method, MethodReflink)
	}
	if fileDigest(t, src) != fileDigest(t, dst) {
		t.Fatal("clone differs from source")
	}
	if out := mustRun(t, "filefrag", "-v", dst); !strings.Contains(out, "shared") {
		t.Fatalf("clone's extents are not shared:\n%s", out)
	}
}

func TestSupportsReflinkFalseOnExt4(t *testing.T) {
	dir := t.TempDir()
	if !isExt4(t, dir) {
		t.Skip("temp dir is not on ext4")
	}
	if SupportsReflink(dir) {
		t.Fatal("SupportsReflink is true on ext4")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("probe left files: %v", entries)
	}
}

func TestSupportsDirectIO(t *testing.T) {
	dir := t.TempDir()
	if isExt4(t, dir) && !SupportsDirectIO(dir) {
		t.Fatal("SupportsDirectIO is false on ext4")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("probe left files: %v", entries)
	}
	requireRoot(t, "mount a ramfs (a filesystem that refuses O_DIRECT)")
	mnt := t.TempDir()
	mustRun(t, "mount", "-t", "ramfs", "ramfs", mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	if SupportsDirectIO(mnt) {
		t.Fatal("SupportsDirectIO is true on ramfs")
	}
}

// The unsynced copy is the same copy (content, holes, mode, no temp file left); SyncFiles then
// flushes it, and refuses a path that is not there.
func TestCloneFileUnsyncedThenSync(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "dst.raw")
	writeSparse(t, src, 16, 0, 7, 15)
	if _, err := CloneFileUnsynced(dst, src); err != nil {
		t.Fatal(err)
	}
	assertSameSparseCopy(t, src, dst)
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
	if err := SyncFiles(dst); err != nil {
		t.Fatal(err)
	}
	if err := SyncFiles(filepath.Join(dir, "missing.raw")); err == nil {
		t.Fatal("SyncFiles of a missing file succeeded")
	}
}
