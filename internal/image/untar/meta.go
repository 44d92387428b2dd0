package untar

import (
	"archive/tar"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sys/unix"
)

// nodeMeta sets metadata on entries that cannot be opened for writing (symlinks, devices, fifos).
func (x *extractor) nodeMeta(pfd int, base string, hdr *tar.Header, chmod bool) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	if chmod {
		// Never a symlink here (we just created the node), so following is not an issue.
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("set mode: %w", err)
		}
	}
	p := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base)
	for k, v := range xattrs(hdr) {
		if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW)
}

// fdMeta sets owner, then mode (chown clears setuid bits), then xattrs (chown clears
// security.capability) on an open file or directory.
func fdMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	for k, v := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return nil
}

// xattrs returns the entry's PAX xattrs, minus overlayfs' own: only whiteout conversion may set
// those, or a layer could forge redirects and metacopy entries in the stacked guest filesystem.
func xattrs(hdr *tar.Header) map[string]string {
	out := map[string]string{}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, overlayXattrs) {
			slog.Debug("dropping overlayfs xattr from layer", "entry", hdr.Name, "xattr", name)
			continue
		}
		out[name] = v
	}
	return out
}

func times(hdr *tar.Header) []unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
}
