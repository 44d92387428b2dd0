// Package disk makes the disk files a VM runs on: reflink clones with a sparse-copy fallback, raw
// ext4 disks, qcow2 overlays on shared bases, growth, and probes of what the filesystem supports.
package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CloneMethod says how CloneFile produced the copy.
type CloneMethod string

const (
	// MethodReflink: the copy shares the source's extents (instant, no extra space until written).
	MethodReflink CloneMethod = "reflink"
	// MethodSparseCopy: data regions were copied, holes were kept as holes.
	MethodSparseCopy CloneMethod = "sparse-copy"
)

// CloneFile copies src to dst, sharing extents when the filesystem can reflink and otherwise copying
// only the data regions. dst appears complete or not at all; it gets src's permission bits.
func CloneFile(dst, src string) (CloneMethod, error) {
	return cloneFile(dst, src, true)
}

// CloneFileUnsynced is CloneFile without the fsyncs: the copy is whole once in place, but a
// host crash may lose it until SyncFiles returns. A caller that overlaps the flush with other
// work (a clone does with the hypervisor's start) must not commit anything that relies on
// the file before SyncFiles succeeds.
func CloneFileUnsynced(dst, src string) (CloneMethod, error) {
	return cloneFile(dst, src, false)
}

// SyncFiles makes files and their directory entries durable.
func SyncFiles(paths ...string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		f, err := os.Open(p) // fsync needs no write access
		if err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("fsync %s: %w", p, err)
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func cloneFile(dst, src string, durable bool) (CloneMethod, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", src, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", src, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("clone %s: not a regular file", src)
	}
	var method CloneMethod
	err = createFile(dst, st.Mode().Perm(), durable, func(out *os.File) error {
		err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		if err == nil {
			method = MethodReflink
			return nil
		}
		if !reflinkUnsupported(err) {
			return fmt.Errorf("reflink: %w", err)
		}
		method = MethodSparseCopy
		return sparseCopy(out, in, st.Size())
	})
	if err != nil {
		return "", fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	slog.Debug("cloned file", "src", src, "dst", dst, "method", method)
	return method, nil
}

// SupportsReflink reports whether files in dir can be cloned by FICLONE (XFS with reflink, btrfs…).
func SupportsReflink(dir string) bool {
	src, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		slog.Debug("reflink probe", "dir", dir, "err", err)
		return false
	}
	defer os.Remove(src.Name())
	defer src.Close()
	dst, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		slog.Debug("reflink probe", "dir", dir, "err", err)
		return false
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		slog.Debug("reflink probe", "dir", dir, "err", err)
		return false
	}
	err = unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	slog.Debug("reflink probe", "dir", dir, "err", err)
	return err == nil
}

// Errors with which FICLONE says "not here" (filesystem without reflink, different filesystems).
func reflinkUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS)
}

// sparseCopy copies the data regions of in (found with SEEK_DATA/SEEK_HOLE) into out, which is
// first truncated to size so every region not copied stays a hole.
func sparseCopy(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	inFd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(inFd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains up to EOF
		}
		if errors.Is(err, unix.EINVAL) {
			// Filesystem without SEEK_DATA: treat the rest as data.
			return copyRange(out, in, off, size-off)
		}
		if err != nil {
			return fmt.Errorf("seek data at %d: %w", off, err)
		}
		hole, err := unix.Seek(inFd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole at %d: %w", data, err)
		}
		hole = min(hole, size)
		if err := copyRange(out, in, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRange copies [off, off+n) with copy_file_range (in-kernel, may share blocks on NFS/XFS),
// falling back to read/write when the kernel refuses it (e.g. across filesystems).
func copyRange(out, in *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) ||
				errors.Is(err, unix.EINVAL) {
				return bufferedCopy(out, in, roff, n)
			}
			return fmt.Errorf("copy_file_range at %d: %w", roff, err)
		}
		if c == 0 {
			return fmt.Errorf("copy at %d: source ended early (file changed while copying?)", roff)
		}
		n -= int64(c)
	}
	return nil
}

// bufferedCopy is the portable path; all-zero chunks are skipped so they stay holes in out.
func bufferedCopy(out, in *os.File, off, n int64) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	zero := make([]byte, chunk)
	for n > 0 {
		want := int(min(n, chunk))
		got, err := in.ReadAt(buf[:want], off)
		if got < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if !bytes.Equal(buf[:got], zero[:got]) {
			if _, err := out.WriteAt(buf[:got], off); err != nil {
				return fmt.Errorf("write at %d: %w", off, err)
			}
		}
		off += int64(got)
		n -= int64(got)
	}
	return nil
}
