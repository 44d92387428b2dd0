// Package archive writes and reads snapshot archives: a PAX tar, gzip-compressed unless asked
// otherwise, that standard GNU tar lists and extracts, sparse files included (GNU sparse 1.0).
//
// Layout: flat. Every entry is one regular file named by a single path component (no
// directories), in the order the exporter was given, the manifest first. Files with holes are
// written as GNU sparse 1.0 entries (only their data travels); other files as plain entries.
// Compression runs on several cores (klauspost/pgzip) and both directions stream, so neither
// the archive nor a file is ever held in memory and the archive may go to or come from a pipe.
package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"
)

// copyBufferSize is the read size when copying file data; large reads keep pgzip's blocks full.
const copyBufferSize = 1 << 20

// ExportOptions tunes compression.
type ExportOptions struct {
	// Workers is how many gzip blocks are compressed in parallel; 0 means runtime.NumCPU().
	Workers int
	// Level is the gzip level (1-9, or -1 for gzip's default); 0 means gzip.BestSpeed, since
	// snapshot disks are large and mostly holes or already-compressed data.
	Level int
	// Plain writes an uncompressed tar (sparse files still carry only their data).
	Plain bool
}

// Export writes the files of dir named in files (single path components, in archive order, the
// manifest first) to w as a .tar.gz (a .tar with opts.Plain). w is only written, never seeked, so it may be a pipe.
// On error the bytes already written are garbage and the caller discards them.
func Export(ctx context.Context, dir string, files []string, w io.Writer, opts ExportOptions) error {
	if err := checkExportList(files); err != nil {
		return err
	}
	workers, level := opts.Workers, opts.Level
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	if workers < 0 {
		return fmt.Errorf("export workers %d is negative; use 0 for one per CPU", workers)
	}
	if level == 0 {
		level = gzip.BestSpeed
	}
	var raw io.Writer = w
	closeGzip := func() error { return nil }
	if !opts.Plain {
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return fmt.Errorf("export: gzip level %d: %w", level, err)
		}
		if err := zw.SetConcurrency(copyBufferSize, workers); err != nil {
			return fmt.Errorf("export: gzip concurrency: %w", err)
		}
		raw, closeGzip = zw, zw.Close
	}
	tw := tar.NewWriter(raw)
	buf := make([]byte, copyBufferSize)
	for _, name := range files {
		if err := writeEntry(ctx, tw, raw, filepath.Join(dir, name), name, buf); err != nil {
			closeGzip() //nolint:errcheck // stops pgzip's workers; its own error adds nothing to err
			return fmt.Errorf("export %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		closeGzip() //nolint:errcheck
		return fmt.Errorf("export: finish tar stream: %w", err)
	}
	if err := closeGzip(); err != nil {
		return fmt.Errorf("export: finish gzip stream: %w", err)
	}
	return nil
}

func checkExportList(files []string) error {
	if len(files) == 0 {
		return fmt.Errorf("export: no files given; pass the snapshot manifest and its data files")
	}
	seen := make(map[string]bool, len(files))
	for _, name := range files {
		if err := checkFlatName(name); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if seen[name] {
			return fmt.Errorf("export: file %q is listed twice", name)
		}
		seen[name] = true
	}
	return nil
}

// writeEntry archives one regular file. raw is the stream under tw: sparse entries are written
// to it directly between tar.Writer entries, which is safe because tar.Writer does not buffer
// and Flush leaves the stream on a block boundary.
func writeEntry(ctx context.Context, tw *tar.Writer, raw io.Writer, path, name string, buf []byte) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is a %s, not a regular file; snapshots hold only regular files", path, st.Mode().Type())
	}
	size, mode, mtime := st.Size(), int64(st.Mode().Perm()), st.ModTime().Unix()
	exts, err := dataExtents(f, size)
	if err != nil {
		return err
	}
	if !isSparse(exts, size) {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: mode, ModTime: st.ModTime().Truncate(time.Second)}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header: %w", err)
		}
		if err := copyExtent(ctx, tw, f, extent{0, size}, buf); err != nil {
			return err
		}
		return tw.Flush()
	}

	exts = fitSparseMap(exts, size)
	sparseMap := encodeSparseMap(exts, size)
	payload := int64(len(sparseMap))
	for _, e := range exts {
		payload += e.Length
	}
	if _, err := raw.Write(sparseHeaders(name, size, payload, mode, mtime)); err != nil {
		return fmt.Errorf("write sparse header: %w", err)
	}
	if _, err := raw.Write(sparseMap); err != nil {
		return fmt.Errorf("write sparse map: %w", err)
	}
	for _, e := range exts {
		if err := copyExtent(ctx, raw, f, e, buf); err != nil {
			return err
		}
	}
	if _, err := raw.Write(make([]byte, blockPadding(payload))); err != nil {
		return fmt.Errorf("pad sparse entry: %w", err)
	}
	return nil
}

// copyExtent copies exactly e's bytes of f to w, checking ctx between reads.
func copyExtent(ctx context.Context, w io.Writer, f *os.File, e extent, buf []byte) error {
	src := ctxReader{ctx, io.NewSectionReader(f, e.Offset, e.Length)}
	n, err := io.CopyBuffer(w, src, buf)
	if err != nil {
		return fmt.Errorf("copy bytes %d-%d: %w", e.Offset, e.Offset+e.Length, err)
	}
	if n != e.Length {
		return fmt.Errorf("file shrank during export (read %d of %d bytes at offset %d); snapshot files must not change while exported", n, e.Length, e.Offset)
	}
	return nil
}

// ctxReader makes long copies stop soon after ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
