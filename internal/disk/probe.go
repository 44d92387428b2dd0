package disk

import (
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// SupportsDirectIO reports whether files in dir accept an O_DIRECT write. Some filesystems (ramfs,
// tmpfs before Linux 6.6, some FUSE mounts) refuse O_DIRECT; the engine then turns direct I/O off.
func SupportsDirectIO(dir string) bool {
	f, err := os.CreateTemp(dir, ".directio-probe-*")
	if err != nil {
		slog.Debug("direct I/O probe", "dir", dir, "err", err)
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	fd, err := unix.Open(name, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		slog.Debug("direct I/O probe", "dir", dir, "err", err)
		return false
	}
	defer unix.Close(fd)
	// O_DIRECT needs a block-aligned buffer; an anonymous mapping is page aligned (4 KiB covers
	// both 512-byte and 4 KiB logical sectors).
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		slog.Debug("direct I/O probe", "dir", dir, "err", err)
		return false
	}
	defer unix.Munmap(buf)
	_, err = unix.Pwrite(fd, buf, 0)
	slog.Debug("direct I/O probe", "dir", dir, "err", err)
	return err == nil
}
