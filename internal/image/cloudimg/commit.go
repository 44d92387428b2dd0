package cloudimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/image/blobstore"
	"github.com/cocoonstack/cocoon/internal/image/sniff"
	"github.com/cocoonstack/cocoon/internal/store"
)

// Import stores the disk image read from r (already decompressed, format as sniffed) under name.
func (s *Store) Import(ctx context.Context, name string, r io.Reader, format sniff.Format) (*Entry, Stats, error) {
	act := s.Activity()
	if err := act.RLock(ctx); err != nil {
		return nil, Stats{}, err
	}
	defer act.Unlock() //nolint:errcheck
	f, err := tempFile(s.TempDir(), "import-*.img")
	if err != nil {
		return nil, Stats{}, err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, Stats{}, fmt.Errorf("import %s: read input: %w", name, err)
	}
	if err := checkDisk(format, n); err != nil {
		return nil, Stats{}, fmt.Errorf("import %s: %w", name, err)
	}
	e, converted, err := s.commit(ctx, name, OriginImport, f.Name(), hex.EncodeToString(h.Sum(nil)), format, false)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("import %s: %w", name, err)
	}
	return e, Stats{Converted: converted, Bytes: n}, nil
}

// commit makes sure blobs/<contentHex>.qcow2 exists (converting src unless it does, or always
// with force) and records key → blob. Conversions of one content are serialised by a lock.
func (s *Store) commit(ctx context.Context, key, source, src, contentHex string, format sniff.Format, force bool) (*Entry, bool, error) {
	bl := store.RecordLock(s.cfg.Dir, "blob", contentHex)
	if err := bl.Lock(ctx); err != nil {
		return nil, false, err
	}
	defer bl.Unlock() //nolint:errcheck
	blob := s.BlobPath(contentHex)
	converted := force || !blobOK(blob)
	blobDigest := ""
	if converted {
		var err error
		if blobDigest, err = s.convert(ctx, src, string(format), blob); err != nil {
			return nil, false, err
		}
	} else {
		blobDigest = s.knownBlobDigest(ctx, contentHex)
		if blobDigest == "" {
			sum, err := hashFile(blob)
			if err != nil {
				return nil, false, err
			}
			blobDigest = "sha256:" + sum
		}
	}
	i, err := info(ctx, blob, "qcow2")
	if err != nil {
		return nil, false, err
	}
	st, err := os.Stat(blob)
	if err != nil {
		return nil, false, err
	}
	e := &Entry{Ref: key, Source: source, ContentSum: "sha256:" + contentHex, BlobDigest: blobDigest,
		VirtualSize: i.VirtualSize, Size: st.Size(), CreatedAt: time.Now().UTC()}
	err = s.Index.Update(ctx, func(idx *index) error {
		idx.Images[key] = e
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	slog.Info("cloud image stored", "ref", key, "blob", contentHex[:12], "converted", converted)
	return e, converted, nil
}

// convert writes src as a qcow2 v3 blob (mode 0444) and returns its digest. The blob is renamed
// into place only when complete.
func (s *Store) convert(ctx context.Context, src, format, blob string) (string, error) {
	tmp, err := tempFile(s.TempDir(), "convert-*.qcow2")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := toQcow2(ctx, src, format, tmp.Name()); err != nil {
		return "", err
	}
	sum, err := hashFile(tmp.Name())
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return "", fmt.Errorf("chmod blob: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return "", fmt.Errorf("create blob dir: %w", err)
	}
	if err := os.Rename(tmp.Name(), blob); err != nil {
		return "", fmt.Errorf("publish blob: %w", err)
	}
	return "sha256:" + sum, nil
}

// knownBlobDigest finds the recorded digest of an existing blob, sparing a re-hash.
func (s *Store) knownBlobDigest(ctx context.Context, contentHex string) string {
	entries, err := s.Entries(ctx)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if blobstore.Hex(e.ContentSum) == contentHex && e.BlobDigest != "" {
			return e.BlobDigest
		}
	}
	return ""
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
