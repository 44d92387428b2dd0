package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// inode identifies a file so that hard links are stored once and linked afterwards.
type inode struct{ dev, ino uint64 }

// writeDirTar writes the tree under root as a tar stream. Entries are visited in lexical
// order and every mtime is set to mtime, so identical trees give identical bytes (and
// identical layer digests). Ownership, modes, symlinks, hard links, device nodes and
// extended attributes (file capabilities) are kept because the tar becomes a root filesystem.
// Hand-written because go-containerregistry only reads tars, it does not build them.
func writeDirTar(w io.Writer, root string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	seen := map[inode]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil // sockets are runtime state, never image content
		}
		hdr, err := headerFor(path, rel, info, seen)
		if err != nil {
			return fmt.Errorf("tar header for %s: %w", path, err)
		}
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header for %s: %w", path, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		return copyFile(tw, path)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func headerFor(path, rel string, info fs.FileInfo, seen map[inode]string) (*tar.Header, error) {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(path)
		if err != nil {
			return nil, err
		}
		link = target
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return nil, err
	}
	hdr.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		hdr.Name += "/"
	}
	// Host user names are meaningless inside the guest; numeric ids are what counts.
	hdr.Uname, hdr.Gname = "", ""
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && info.Mode().IsRegular() && st.Nlink > 1 {
		key := inode{uint64(st.Dev), st.Ino}
		if first, dup := seen[key]; dup {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			seen[key] = hdr.Name
		}
	}
	xattrs, err := readXattrs(path)
	if err != nil {
		return nil, err
	}
	if len(xattrs) > 0 {
		hdr.Format = tar.FormatPAX
		hdr.PAXRecords = map[string]string{}
		for k, v := range xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return hdr, nil
}

// readXattrs returns the security.* and user.* attributes of path (not following symlinks).
func readXattrs(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		return nil, nil // file systems without xattr support simply have none
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "security.") && !strings.HasPrefix(name, "user.") {
			continue
		}
		vsize, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, path, err)
		}
		val := make([]byte, vsize)
		if _, err := unix.Lgetxattr(path, name, val); err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, path, err)
		}
		out[name] = string(val)
	}
	return out, nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("copy %s into tar: %w", path, err)
	}
	return nil
}
