// Package tarx packs and unpacks the tar streams of `cocoon vm cp`, with docker cp's naming
// rule on both ends (the agent in the guest, the CLI on the host): the stream's top entry is
// the source's base name; extracted into an existing directory it keeps that name, otherwise it
// becomes the destination path itself.
package tarx

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cocoonstack/cocoon/internal/image/untar"
)

// Pack writes src (a file or a directory tree, symlinks not followed) to w with src's base
// name as the top entry; it returns that name.
func Pack(w io.Writer, src string) (string, error) {
	src = filepath.Clean(src)
	top := filepath.Base(src)
	if top == "/" || top == "." {
		return "", fmt.Errorf("copy %s: name a file or directory below the root", src)
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return addEntry(tw, p, path.Join(top, filepath.ToSlash(rel)))
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", src, err)
	}
	return top, nil
}

func addEntry(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil // sockets cannot be archived
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}

// Extract unpacks r at dst by docker cp's rule: into dst when it is an existing directory,
// else as dst itself (the entry named top is renamed; top "" means a stream with no single
// top entry, which needs an existing directory). hostSafe drops device nodes and fifos, which
// a guest must not create on the host.
func Extract(ctx context.Context, r io.Reader, dst, top string, hostSafe bool) error {
	root, rename := dst, ""
	if st, err := os.Stat(dst); err != nil || !st.IsDir() {
		if top == "" {
			return fmt.Errorf("%s is not a directory: a tar stream extracts into an existing directory", dst)
		}
		root, rename = filepath.Dir(dst), filepath.Base(dst)
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			return fmt.Errorf("directory %s does not exist", root)
		}
	}
	if rename != "" || hostSafe {
		r = rewrite(r, top, rename, hostSafe)
	}
	if err := untar.Extract(ctx, r, root, untar.Options{KeepRootMode: true}); err != nil {
		return fmt.Errorf("extract into %s: %w", root, err)
	}
	return nil
}

// rewrite streams r through a tar reader/writer pair, renaming top to rename and dropping
// special files when hostSafe.
func rewrite(r io.Reader, top, rename string, hostSafe bool) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tr, tw := tar.NewReader(r), tar.NewWriter(pw)
		err := func() error {
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return tw.Close()
				}
				if err != nil {
					return err
				}
				switch hdr.Typeflag {
				case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
					if hostSafe {
						continue
					}
				}
				if rename != "" {
					hdr.Name = renameTop(hdr.Name, top, rename)
					if hdr.Typeflag == tar.TypeLink {
						hdr.Linkname = renameTop(hdr.Linkname, top, rename)
					}
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := io.Copy(tw, tr); err != nil {
					return err
				}
			}
		}()
		pw.CloseWithError(err)
	}()
	return pr
}

func renameTop(name, top, rename string) string {
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == top {
		return rename
	}
	if rest, ok := strings.CutPrefix(clean, top+"/"); ok {
		return rename + "/" + rest
	}
	return name // outside the top entry: left to untar's checks
}
