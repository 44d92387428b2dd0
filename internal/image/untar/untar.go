// Package untar extracts an image layer tar into a directory without ever leaving it.
//
// Layers come from registries and files we do not control, and the extracted tree is read back by
// mkfs.erofs as root, so every step is relative to a directory fd opened with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: no entry can escape the root, and no symlink — including
// one the same layer created — is ever followed. A layer that tries (a `..` name, a path through a
// symlink, a hardlink out of the root) is refused as a whole, like containerd and Docker do, so
// that no half-applied layer becomes a blob.
//
// Names with a leading "/" are taken relative to the root, as container runtimes and GNU tar do.
// Device nodes and fifos are created as they are: the tree lives in a root-only temp directory and
// the nodes only mean something inside the guest that mounts the finished image.
//
// A few KiB of tar can declare terabytes (a huge size field, a sparse entry, a gzip bomb), so the
// declared sizes are added up against Options.MaxBytes before anything is written, and zero
// blocks are written as holes: only real data takes space on the host.
package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Options tune Extract.
type Options struct {
	// Whiteouts turns OCI whiteouts into overlayfs ones: `.wh.NAME` becomes a 0/0 character device
	// NAME, and `.wh..wh..opq` sets trusted.overlay.opaque=y on its directory.
	Whiteouts bool
	// OnFile, when set, is called with the cleaned relative name of each regular file written.
	OnFile func(name string)
	// MaxBytes bounds what the layer may expand to: the sum of the logical sizes of its regular
	// files (holes included, as mkfs.erofs and the guest read them) plus EntryCost per entry.
	// Zero means DefaultMaxBytes.
	MaxBytes int64
	// KeepRootMode leaves root's mode alone: root is an existing directory (vm cp), not a layer.
	KeepRootMode bool
}

// DefaultMaxBytes is the expansion bound when Options.MaxBytes is zero.
const DefaultMaxBytes = 64 << 30

// EntryCost is what each entry counts against MaxBytes besides its data: one filesystem block,
// about what its inode and directory entry take, so a bomb of empty entries is bounded too.
const EntryCost = 4096

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	overlayXattrs  = "trusted.overlay."
	paxXattr       = "SCHILY.xattr."
	resolveSafe    = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
)

// ErrUnsafe marks a layer refused because an entry would escape the root or follow a symlink.
var ErrUnsafe = errors.New("unsafe layer")

// ErrTooLarge marks a layer refused because it declares more than Options.MaxBytes.
var ErrTooLarge = errors.New("too large")

type extractor struct {
	rootFd int
	opts   Options
	dirs   []dirTimes
	used   int64  // bytes counted against opts.MaxBytes so far
	buf    []byte // file data staging, allocated on first use
}

type dirTimes struct {
	name string
	ts   []unix.Timespec
}

// Extract writes the tar stream r into root, which must be an existing directory; root's mode
// becomes 0755 unless the tar has a "./" entry.
func Extract(ctx context.Context, r io.Reader, root string, opts Options) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open extraction root %s: %w", root, err)
	}
	defer unix.Close(fd)
	x := &extractor{rootFd: fd, opts: opts}
	// A layer root is 0755 unless the tar has a "./" entry saying otherwise.
	if !opts.KeepRootMode {
		if err := unix.Fchmod(fd, 0o755); err != nil {
			return fmt.Errorf("set mode of extraction root %s: %w", root, err)
		}
	}
	if x.opts.MaxBytes <= 0 {
		x.opts.MaxBytes = DefaultMaxBytes
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	}
	return x.finishDirs()
}

// OpenFile opens the regular file name under root for reading, with the same no-escape,
// no-symlink rules as Extract.
func OpenFile(root, name string) (*os.File, error) {
	rel, err := clean(name)
	if err != nil {
		return nil, err
	}
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: resolveSafe})
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", rel, root, err)
	}
	f := os.NewFile(uintptr(fd), path.Join(root, rel))
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s in %s: not a regular file", rel, root)
	}
	return f, nil
}

// clean turns a tar name into a path relative to the root, refusing names that climb out of it.
func clean(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: name %q escapes the layer root", ErrUnsafe, name)
	}
	return rel, nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	if err := x.account(hdr); err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag == tar.TypeDir {
			return x.dirMeta(x.rootFd, ".", hdr)
		}
		return nil
	}
	base := path.Base(rel)
	if x.opts.Whiteouts && strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(rel, base)
	}
	pfd, err := x.parent(rel)
	if err != nil {
		return err
	}
	defer x.closeParent(pfd)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(pfd, base, rel, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return x.file(pfd, base, rel, hdr, r)
	case tar.TypeSymlink:
		if err := x.replace(pfd, base); err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("create symlink: %w", err)
		}
		return x.nodeMeta(pfd, base, hdr, false)
	case tar.TypeLink:
		return x.hardlink(pfd, base, rel, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.node(pfd, base, hdr)
	default:
		slog.Debug("skipping tar entry of unsupported type", "name", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
}

// parent returns a directory fd on the parent of rel, creating missing directories (mode 0755).
func (x *extractor) parent(rel string) (int, error) {
	dir := path.Dir(rel)
	if dir == "." {
		return x.rootFd, nil
	}
	fd, err := x.openDir(x.rootFd, dir)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	cur := x.rootFd
	for _, comp := range strings.Split(dir, "/") {
		err := unix.Mkdirat(cur, comp, 0o755)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			x.closeParent(cur)
			return -1, fmt.Errorf("create parent %s: %w", dir, err)
		}
		created := err == nil
		next, err := x.openDir(cur, comp)
		x.closeParent(cur)
		if err != nil {
			return -1, err
		}
		if created { // the umask must not shape directories the tar did not describe
			if err := unix.Fchmod(next, 0o755); err != nil {
				unix.Close(next)
				return -1, fmt.Errorf("set mode of parent %s: %w", dir, err)
			}
		}
		cur = next
	}
	return cur, nil
}

func (x *extractor) openDir(at int, name string) (int, error) {
	fd, err := unix.Openat2(at, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: resolveSafe})
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%w: path %q goes through a symlink", ErrUnsafe, name)
	case errors.Is(err, unix.ENOTDIR):
		var st unix.Stat_t
		if unix.Fstatat(at, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, fmt.Errorf("%w: path %q goes through a symlink", ErrUnsafe, name)
		}
		return -1, fmt.Errorf("parent %q is not a directory", name)
	case err != nil:
		return -1, fmt.Errorf("open directory %q: %w", name, err)
	}
	return fd, nil
}

func (x *extractor) closeParent(fd int) {
	if fd != x.rootFd && fd >= 0 {
		unix.Close(fd)
	}
}

// replace removes whatever is at base so a new entry can take its place (later entries win).
func (x *extractor) replace(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if errors.Is(err, unix.EISDIR) {
		// os.RemoveAll works below the /proc/self/fd link with *at calls and never follows symlinks.
		err = os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base))
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("replace existing entry: %w", err)
	}
	return nil
}

func (x *extractor) whiteout(rel, base string) error {
	if name := strings.TrimPrefix(base, whiteoutPrefix); name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q names no entry of its directory", ErrUnsafe, rel)
	}
	pfd, err := x.parent(rel)
	if err != nil {
		return err
	}
	defer x.closeParent(pfd)
	if base == whiteoutOpaque {
		if err := unix.Fsetxattr(pfd, overlayXattrs+"opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark directory opaque: %w", err)
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if strings.HasPrefix(name, whiteoutPrefix) {
		slog.Debug("skipping aufs metadata entry", "name", rel)
		return nil
	}
	if err := x.replace(pfd, name); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout for %s: %w", name, err)
	}
	return nil
}

func (x *extractor) dir(pfd int, base, rel string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700) // final mode comes from the header below
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat existing entry: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := x.replace(pfd, base); err != nil {
				return err
			}
			err = unix.Mkdirat(pfd, base, 0o700)
		} else {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	dfd, err := x.openDir(pfd, base)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return x.dirMeta(dfd, rel, hdr)
}

// dirMeta applies ownership, mode and xattrs now, and mtime once all children exist.
func (x *extractor) dirMeta(dfd int, rel string, hdr *tar.Header) error {
	if err := fdMeta(dfd, hdr); err != nil {
		return err
	}
	x.dirs = append(x.dirs, dirTimes{name: rel, ts: times(hdr)})
	return nil
}

func (x *extractor) finishDirs() error {
	for _, d := range x.dirs {
		if d.name == "." {
			if err := unix.UtimesNanoAt(x.rootFd, ".", d.ts, 0); err != nil {
				return fmt.Errorf("set times of root: %w", err)
			}
			continue
		}
		pfd, err := x.parent(d.name)
		if err != nil {
			return err
		}
		err = unix.UtimesNanoAt(pfd, path.Base(d.name), d.ts, unix.AT_SYMLINK_NOFOLLOW)
		x.closeParent(pfd)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("set times of %s: %w", d.name, err)
		}
	}
	return nil
}

func (x *extractor) file(pfd int, base, rel string, hdr *tar.Header, r io.Reader) error {
	if err := x.replace(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	f := os.NewFile(uintptr(fd), rel)
	if err := x.writeData(f, r, hdr.Size); err != nil {
		f.Close()
		return fmt.Errorf("write file: %w", err)
	}
	if err := fdMeta(fd, hdr); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close file: %w", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	if x.opts.OnFile != nil {
		x.opts.OnFile(rel)
	}
	return nil
}

func (x *extractor) hardlink(pfd int, base, rel string, hdr *tar.Header) error {
	target, err := clean(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%w: hardlink target %q escapes the layer root", ErrUnsafe, hdr.Linkname)
	}
	if target == rel {
		return nil
	}
	tfd, err := x.parent(target)
	if err != nil {
		return err
	}
	defer x.closeParent(tfd)
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hardlink target %q is not an earlier entry of this layer: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory", hdr.Linkname)
	}
	if err := x.replace(pfd, base); err != nil {
		return err
	}
	// Flags 0: a symlink target is linked itself, never followed.
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("create hardlink: %w", err)
	}
	return nil
}

func (x *extractor) node(pfd int, base string, hdr *tar.Header) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	if err := x.replace(pfd, base); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, mode|uint32(hdr.Mode&0o7777), int(dev)); err != nil {
		return fmt.Errorf("create device node: %w", err)
	}
	return x.nodeMeta(pfd, base, hdr, true)
}
