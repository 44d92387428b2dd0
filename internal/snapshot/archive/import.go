package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/pgzip"
)

// holeBlock is the granularity at which Import leaves all-zero data as holes: the page and
// filesystem block size, so skipping never splits a block that has data.
const holeBlock = 4096

// Limits bounds what Import accepts. Zero values mean "no limit" (nil Allowed: any name).
type Limits struct {
	MaxFiles      int
	MaxTotalBytes int64 // sum of the files' apparent sizes, holes included
	Allowed       func(name string) bool
}

// Entry is one file Import extracted: its name, apparent size and digest (see FileDigest),
// computed from the stream as it was written, so verifying it needs no second read.
type Entry struct {
	Name   string
	Size   int64
	Digest string
}

// Import reads a .tar.gz or .tar written by Export (or by GNU tar, sparse or not) from r and extracts
// its files into stagingDir, which must exist and be empty. It returns the files in archive
// order.
//
// Only flat regular files are accepted (a leading "./" and the archive's top "." directory, as
// `tar -C dir .` writes them, are tolerated): absolute or escaping names, sub-directories, links,
// devices, fifos, duplicate or disallowed names, too many files or bytes, inconsistent sparse
// maps and corrupt or truncated streams are all errors naming the entry. Import never writes
// outside stagingDir (files are opened through an os.Root); after an error stagingDir may hold
// partial files and the caller removes it.
func Import(ctx context.Context, r io.Reader, stagingDir string, lim Limits) ([]Entry, error) {
	root, err := os.OpenRoot(stagingDir)
	if err != nil {
		return nil, fmt.Errorf("import: open staging dir: %w", err)
	}
	defer root.Close()
	if err := checkEmpty(root, stagingDir); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(ctxReader{ctx, r}, copyBufferSize)
	magic, err := br.Peek(2)
	switch {
	case len(magic) == 0 && err == io.EOF:
		return nil, errors.New("import: the snapshot archive is empty")
	case len(magic) < 2 && err != io.EOF:
		return nil, fmt.Errorf("import: read snapshot archive: %w", err)
	}
	// gzip is detected by its magic bytes; anything else is read as a plain tar.
	var zr io.Reader = br
	gzipped := bytes.Equal(magic, []byte{0x1f, 0x8b})
	if gzipped {
		gz, err := pgzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("import: read snapshot archive: %w", err)
		}
		defer gz.Close()
		zr = gz
	}

	tr := tar.NewReader(zr)
	x := extractor{ctx: ctx, root: root, lim: lim, seen: map[string]bool{}, buf: make([]byte, copyBufferSize)}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			return nil, fmt.Errorf("import: entry %q escapes the staging directory; snapshot archives hold plain file names", hdr.Name)
		}
		if err != nil && !gzipped && len(x.files) == 0 {
			return nil, fmt.Errorf("import: not a snapshot archive: neither gzip nor tar (%v); pass a file made by `cocoon snapshot export`", err)
		}
		if err != nil {
			return nil, x.streamError("read entry header", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return nil, err
		}
	}
	// The gzip checksum is only checked at the end of the stream, past the tar trailer; a plain
	// tar's trailing padding is read to the end likewise.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, x.streamError("verify archive end", err)
	}
	if err := syncDir(root); err != nil {
		return nil, fmt.Errorf("import: sync staging dir: %w", err)
	}
	return x.files, nil
}

func checkEmpty(root *os.Root, dir string) error {
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("import: open staging dir: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("import: read staging dir: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("import: staging dir %s is not empty (holds %q); import needs a fresh empty dir", dir, names[0])
	}
	return nil
}

type extractor struct {
	ctx   context.Context
	root  *os.Root
	lim   Limits
	seen  map[string]bool
	files []Entry
	total int64
	buf   []byte
}

// streamError describes a failure of the archive stream itself, naming where it happened.
func (x *extractor) streamError(what string, err error) error {
	where := "at the start of the archive"
	if n := len(x.files); n > 0 {
		where = fmt.Sprintf("after entry %q", x.files[n-1].Name)
	}
	switch {
	case x.ctx.Err() != nil:
		return fmt.Errorf("import: %w", x.ctx.Err())
	case errors.Is(err, pgzip.ErrChecksum):
		return fmt.Errorf("import: %s %s: gzip checksum mismatch, the archive is corrupt: %w", what, where, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("import: %s %s: the archive is truncated: %w", what, where, err)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("import: %s %s: invalid tar header or sparse map (sparse map inconsistent with its size?): %w", what, where, err)
	}
	return fmt.Errorf("import: %s %s: the archive is corrupt: %w", what, where, err)
}

// entry checks one header against the rules and limits, then extracts it.
func (x *extractor) entry(hdr *tar.Header, data io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide metadata (e.g. from other tar writers); nothing to extract
	}
	name := strings.TrimPrefix(hdr.Name, "./")
	if hdr.Typeflag == tar.TypeDir && (name == "" || name == ".") {
		return nil // the archive's top directory is the staging dir itself
	}
	if err := checkType(hdr); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := checkFlatName(name); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	switch {
	case x.seen[name]:
		return fmt.Errorf("import: entry %q appears twice in the archive", name)
	case x.lim.Allowed != nil && !x.lim.Allowed(name):
		return fmt.Errorf("import: entry %q is not a snapshot file this version knows", name)
	case x.lim.MaxFiles > 0 && len(x.files) >= x.lim.MaxFiles:
		return fmt.Errorf("import: entry %q exceeds the limit of %d files per snapshot", name, x.lim.MaxFiles)
	case x.lim.MaxTotalBytes > 0 && hdr.Size > x.lim.MaxTotalBytes-x.total:
		return fmt.Errorf("import: entry %q (%d bytes) brings the snapshot past its limit of %d bytes", name, hdr.Size, x.lim.MaxTotalBytes)
	}
	x.seen[name] = true
	x.total += hdr.Size
	digest, err := x.extract(name, hdr, data)
	if err != nil {
		return err
	}
	x.files = append(x.files, Entry{Name: name, Size: hdr.Size, Digest: digest})
	return nil
}

// checkFlatName accepts a single, ordinary path component.
func checkFlatName(name string) error {
	switch {
	case name == "" || name == ".":
		return fmt.Errorf("entry %q is not a file name", name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("entry %q has an absolute path; snapshot archives hold plain file names", name)
	case strings.Contains("/"+name+"/", "/../"):
		return fmt.Errorf("entry %q escapes the staging directory; snapshot archives hold plain file names", name)
	case strings.Contains(name, "/"):
		return fmt.Errorf("entry %q is inside a sub-directory; snapshot archives are flat", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("entry %q contains a NUL byte", name)
	}
	return nil
}

func checkType(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		return nil
	case tar.TypeSymlink:
		return fmt.Errorf("entry %q is a symbolic link (to %q); snapshot archives hold only regular files", hdr.Name, hdr.Linkname)
	case tar.TypeLink:
		return fmt.Errorf("entry %q is a hard link (to %q); snapshot archives hold only regular files", hdr.Name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("entry %q is a device node; snapshot archives hold only regular files", hdr.Name)
	case tar.TypeFifo:
		return fmt.Errorf("entry %q is a fifo; snapshot archives hold only regular files", hdr.Name)
	case tar.TypeDir:
		return fmt.Errorf("entry %q is a directory; snapshot archives are flat", hdr.Name)
	}
	return fmt.Errorf("entry %q has unsupported tar type %q; snapshot archives hold only regular files", hdr.Name, hdr.Typeflag)
}

// extract writes one entry into a new file, leaving zero blocks as holes, then gives it the
// apparent size and permissions from the header and syncs it. It returns the file's digest.
func (x *extractor) extract(name string, hdr *tar.Header, data io.Reader) (string, error) {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("import: create %s: %w", name, err)
	}
	defer f.Close()
	d := newDigester()
	readErr, writeErr := x.copyKeepingHoles(f, data, d)
	if readErr != nil {
		return "", x.streamError(fmt.Sprintf("read data of entry %q", name), readErr)
	}
	if writeErr != nil {
		return "", fmt.Errorf("import: write %s: %w", name, writeErr)
	}
	if err := f.Truncate(hdr.Size); err != nil { // a trailing hole was skipped, not written
		return "", fmt.Errorf("import: set size of %s: %w", name, err)
	}
	if err := f.Chmod(os.FileMode(hdr.Mode) & os.ModePerm); err != nil {
		return "", fmt.Errorf("import: set mode of %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("import: sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("import: close %s: %w", name, err)
	}
	return d.sum(hdr.Size), nil
}

// copyKeepingHoles copies src into f at matching offsets, skipping all-zero blocks so that
// holes (archive/tar hands sparse-map holes over as zeros) stay holes, and adds the data
// blocks to d. Read and write failures are returned apart: the first means a bad archive,
// the second a problem on this host.
func (x *extractor) copyKeepingHoles(f *os.File, src io.Reader, d *digester) (readErr, writeErr error) {
	zero := make([]byte, holeBlock)
	for off := int64(0); ; {
		if err := x.ctx.Err(); err != nil {
			return err, nil
		}
		n, rerr := fill(src, x.buf)
		runStart := -1 // start of the pending run of data blocks in x.buf
		flush := func(end int) error {
			if runStart < 0 {
				return nil
			}
			_, err := f.WriteAt(x.buf[runStart:end], off+int64(runStart))
			runStart = -1
			return err
		}
		for b := 0; b < n; b += holeBlock {
			end := min(b+holeBlock, n)
			if !bytes.Equal(x.buf[b:end], zero[:end-b]) {
				d.block(off+int64(b), x.buf[b:end]) // off is a multiple of len(x.buf), so aligned
				if runStart < 0 {
					runStart = b
				}
				continue
			}
			if err := flush(b); err != nil {
				return nil, err
			}
		}
		if err := flush(n); err != nil {
			return nil, err
		}
		off += int64(n)
		if rerr == io.EOF {
			return nil, nil
		}
		if rerr != nil {
			return rerr, nil
		}
	}
}

// fill reads until buf is full or src fails; unlike io.ReadFull it keeps io.EOF distinct from
// a truncated stream's io.ErrUnexpectedEOF.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func syncDir(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
