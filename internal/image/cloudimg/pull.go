package cloudimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"syscall"

	"github.com/cocoonstack/cocoon/internal/image/progress"
	"github.com/cocoonstack/cocoon/internal/image/sniff"
	"github.com/cocoonstack/cocoon/internal/store"
)

// Stats says what a pull or import did.
type Stats struct {
	Converted bool  // a new blob was made
	Bytes     int64 // bytes downloaded or read
	UpToDate  bool  // the URL was already stored and force was not given
}

// Pull downloads url (unless already stored and not force), converts it to a qcow2 blob and
// records it. Two pulls of one URL at once download it once.
func (s *Store) Pull(ctx context.Context, url string, force bool) (*Entry, Stats, error) {
	if !force {
		if e, ok := s.valid(ctx, url); ok {
			return e, Stats{UpToDate: true}, nil
		}
	}
	act := s.Activity()
	if err := act.RLock(ctx); err != nil {
		return nil, Stats{}, err
	}
	defer act.Unlock() //nolint:errcheck
	sum := sha256.Sum256([]byte(url))
	ul := store.RecordLock(s.cfg.Dir, "url", hex.EncodeToString(sum[:8]))
	if err := ul.Lock(ctx); err != nil {
		return nil, Stats{}, err
	}
	defer ul.Unlock() //nolint:errcheck
	if !force {       // another pull of the same URL may have finished while we waited
		if e, ok := s.valid(ctx, url); ok {
			return e, Stats{UpToDate: true}, nil
		}
	}
	tmp, contentHex, n, err := s.download(ctx, url)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("pull %s: %w", url, err)
	}
	defer os.Remove(tmp)
	format, err := detectFile(tmp, n)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("pull %s: %w", url, err)
	}
	e, converted, err := s.commit(ctx, url, url, tmp, contentHex, format, force)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("pull %s: %w", url, err)
	}
	return e, Stats{Converted: converted, Bytes: n}, nil
}

// download saves url into a temp file, returning its path, sha256 hex and size. The temp file is
// removed on any failure, including a body shorter than its Content-Length.
func (s *Store) download(ctx context.Context, url string) (string, string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", 0, fmt.Errorf("bad URL: %w", err)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "", "", 0, fmt.Errorf("connection refused by %s: check the URL and that the server is up", req.URL.Host)
		}
		return "", "", 0, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", 0, fmt.Errorf("server answered %s: check the URL", resp.Status)
	}
	f, err := tempFile(s.TempDir(), "pull-*.img")
	if err != nil {
		return "", "", 0, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bar := progress.New(s.cfg.Progress, "download")
	item := bar.Add(path.Base(req.URL.Path), resp.ContentLength)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), item.Wrap(resp.Body))
	item.Done()
	bar.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", "", 0, fmt.Errorf("download: %w", err)
	}
	if err != nil || resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", "", 0, fmt.Errorf("download truncated after %d of %d bytes: the connection broke, pull again", n, resp.ContentLength)
	}
	if err := f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("fsync download: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("close download: %w", err)
	}
	ok = true
	slog.Info("downloaded cloud image", "url", url, "bytes", n)
	return f.Name(), hex.EncodeToString(h.Sum(nil)), n, nil
}

// detectFile sniffs a complete file of size n: qcow2, or raw of whole sectors.
func detectFile(p string, n int64) (sniff.Format, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, sniff.HeadSize)
	k, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	format, err := sniff.Detect(head[:k])
	if err != nil {
		return "", err
	}
	return format, checkDisk(format, n)
}

// checkDisk refuses what cannot be a cloud disk image.
func checkDisk(format sniff.Format, n int64) error {
	switch format {
	case sniff.Qcow2:
		return nil
	case sniff.Raw:
		if !sniff.RawSizeOK(n) {
			return fmt.Errorf("not a qcow2 image, and %d bytes is not a whole number of 512-byte sectors, so not a raw disk either", n)
		}
		return nil
	case sniff.Gzip:
		return errors.New("input is gzip-compressed: decompress it first (gunzip)")
	}
	return errors.New("input is a tar archive, not a disk image: import image tars with `cocoon image import`")
}
