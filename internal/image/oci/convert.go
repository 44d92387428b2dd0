package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cocoonstack/cocoon/internal/image/progress"
	"github.com/cocoonstack/cocoon/internal/image/untar"
)

const (
	kernelName = "vmlinuz"
	initrdName = "initrd.img"
)

// Layer is what conversion needs from an image layer; every v1.Layer has it.
type Layer interface {
	DiffID() (v1.Hash, error)
	Uncompressed() (io.ReadCloser, error)
}

// staged is one layer converted into a work dir, not yet published.
type staged struct {
	blob           string // <work>/<hex>.erofs
	kernel, initrd string // <work>/boot-<hex>/…, empty when the layer has none
	bytes          int64  // uncompressed tar bytes read
}

// convert streams layer l once: the tar is extracted safely into a scratch tree (Debian 12's
// mkfs.erofs 1.5 has no --tar), its DiffID is verified, boot files are copied out, and the tree
// becomes an EROFS image. The scratch tree is removed before returning.
func convert(ctx context.Context, l Layer, hexID, work string, maxBytes int64, item *progress.Item) (*staged, error) {
	root := filepath.Join(work, "layer-"+hexID)
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, fmt.Errorf("create layer dir: %w", err)
	}
	defer os.RemoveAll(root)

	rc, err := l.Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("open layer: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	var size byteCounter
	r := item.Wrap(io.TeeReader(rc, io.MultiWriter(h, &size)))
	var kernel, initrd string
	onFile := func(name string) {
		dir, base := path.Split(name)
		if dir != "boot/" || strings.HasSuffix(base, ".old") {
			return
		}
		switch {
		case strings.HasPrefix(base, kernelName):
			kernel = name
		case strings.HasPrefix(base, initrdName):
			initrd = name
		}
	}
	if err := untar.Extract(ctx, r, root, untar.Options{Whiteouts: true, OnFile: onFile, MaxBytes: maxBytes}); err != nil {
		if errors.Is(err, untar.ErrUnsafe) {
			return nil, fmt.Errorf("%w: the image is broken or malicious, do not use it", err)
		}
		return nil, err
	}
	// Read to the end so the digest covers the tar's trailing padding too, but not without
	// bound: a compressed layer can hide endless zeros after the end of its tar.
	if err := copyBounded(io.Discard, r, maxBytes); err != nil {
		return nil, fmt.Errorf("read layer after its tar end: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexID {
		return nil, fmt.Errorf("layer content has digest sha256:%s, expected sha256:%s: the download is corrupt, pull again", got, hexID)
	}
	st := &staged{blob: filepath.Join(work, hexID+".erofs"), bytes: int64(size)}
	bootDir := filepath.Join(work, "boot-"+hexID)
	if kernel != "" {
		if st.kernel, err = copyBootFile(root, kernel, bootDir, kernelName); err != nil {
			return nil, err
		}
	}
	if initrd != "" {
		if st.initrd, err = copyBootFile(root, initrd, bootDir, initrdName); err != nil {
			return nil, err
		}
	}
	if err := mkfsEROFS(ctx, root, st.blob); err != nil {
		return nil, err
	}
	return st, nil
}

func copyBootFile(root, name, dir, as string) (string, error) {
	src, err := untar.OpenFile(root, name)
	if err != nil {
		return "", fmt.Errorf("read boot file: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create boot dir: %w", err)
	}
	dst := filepath.Join(dir, as)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return "", fmt.Errorf("copy %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", dst, err)
	}
	return dst, nil
}

// mkfsEROFS builds a read-only, lz4-compressed EROFS image of dir. mkfs.erofs keeps owners,
// modes, mtimes, xattrs (trusted.overlay.* included) and device nodes, which the overlay
// whiteouts rely on. lz4 rather than lz4hc: on the Debian guest image lz4hc builds 4.5x slower
// (5.6 s vs 1.2 s for 284 MB) for blobs only 10% smaller, and guests decompress both equally fast.
func mkfsEROFS(ctx context.Context, dir, out string) error {
	bin, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return errors.New("mkfs.erofs not found: install erofs-utils")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-zlz4", "--quiet", out, dir)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkfs.erofs %s: %w: %s", out, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}
