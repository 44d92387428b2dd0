package oci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/errgroup"

	"github.com/cocoonstack/cocoon/internal/image/blobstore"
	"github.com/cocoonstack/cocoon/internal/image/progress"
	"github.com/cocoonstack/cocoon/internal/store"
)

// Stats says what a pull or import did; tests use it to see that shared layers are not redone.
type Stats struct {
	Layers    int   // layers in the image
	Converted int   // layers downloaded and converted by this call
	Reused    int   // layers whose blob was already there
	Bytes     int64 // uncompressed layer bytes read
	UpToDate  bool  // the index already had this exact image with all its files
}

// Source is an image ready to be stored.
type Source struct {
	Key    string  // index key: the ref as given, or the import name
	Digest string  // manifest digest ("sha256:…")
	Origin string  // OriginRegistry or OriginImport
	Layers []Layer // bottom → top
	// Platform is the image's linux/ARCH; "" (imports) means the host's.
	Platform string
}

// Add converts the layers of src that have no blob yet (all of them when force), checks that the
// image can boot, publishes the blobs and records the entry. The index lock is only taken for the
// final commit; concurrent adds sharing layers wait on per-layer locks and reuse each other's work.
func (s *Store) Add(ctx context.Context, src Source, force bool) (*Entry, Stats, error) {
	stats := Stats{Layers: len(src.Layers)}
	if os.Geteuid() != 0 {
		return nil, stats, errors.New("converting OCI layers needs root (file owners, device nodes, trusted.* xattrs): run cocoon as root")
	}
	if len(src.Layers) == 0 {
		return nil, stats, errors.New("image has no layers: it is not a VM image")
	}
	hexes := make([]string, len(src.Layers))
	for i, l := range src.Layers {
		h, err := l.DiffID()
		if err != nil {
			return nil, stats, fmt.Errorf("layer %d: %w", i, err)
		}
		hexes[i] = h.Hex
	}
	if !force {
		if e, ok := s.upToDate(ctx, src, hexes); ok {
			stats.UpToDate, stats.Reused = true, len(hexes)
			return e, stats, nil
		}
	}
	act := s.Activity()
	if err := act.RLock(ctx); err != nil {
		return nil, stats, err
	}
	defer act.Unlock() //nolint:errcheck // closing releases the flock anyway
	release, err := s.lockLayers(ctx, hexes)
	if err != nil {
		return nil, stats, err
	}
	defer release()

	if err := os.MkdirAll(s.TempDir(), 0o750); err != nil {
		return nil, stats, fmt.Errorf("create temp dir: %w", err)
	}
	work, err := os.MkdirTemp(s.TempDir(), src.Origin+"-")
	if err != nil {
		return nil, stats, fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)

	results, err := s.convertAll(ctx, src, hexes, work, force, &stats)
	if err != nil {
		return nil, stats, err
	}
	entry := &Entry{Ref: src.Key, ManifestDigest: src.Digest, Origin: src.Origin, Platform: src.Platform}
	for i := len(hexes) - 1; i >= 0; i-- {
		kernel, initrd := s.bootFiles(hexes[i], results[hexes[i]])
		if kernel && entry.KernelLayer == "" {
			entry.KernelLayer = "sha256:" + hexes[i]
		}
		if initrd && entry.InitrdLayer == "" {
			entry.InitrdLayer = "sha256:" + hexes[i]
		}
	}
	if entry.KernelLayer == "" || entry.InitrdLayer == "" {
		return nil, stats, errors.New("image has no /boot/vmlinuz* or no /boot/initrd.img*: it is not a VM image; put a kernel and an initramfs in its /boot")
	}
	for _, h := range hexes {
		entry.Layers = append(entry.Layers, LayerRecord{Digest: "sha256:" + h})
	}
	for h, st := range results {
		if err := s.publish(h, st); err != nil {
			return nil, stats, err
		}
	}
	if err := s.commit(ctx, src, entry); err != nil {
		return nil, stats, err
	}
	slog.Info("image stored", "ref", src.Key, "layers", len(hexes), "converted", stats.Converted, "reused", stats.Reused)
	return entry, stats, nil
}

func (s *Store) upToDate(ctx context.Context, src Source, hexes []string) (*Entry, bool) {
	found, err := s.Lookup(ctx, src.Key)
	if err != nil || found == nil || found.ManifestDigest != src.Digest || len(found.Layers) != len(hexes) {
		return nil, false
	}
	for i, l := range found.Layers {
		if blobstore.Hex(l.Digest) != hexes[i] {
			return nil, false
		}
	}
	_, err = s.complete(found)
	return found, err == nil
}

// lockLayers takes the per-layer locks in sorted order, so adds sharing layers cannot deadlock.
func (s *Store) lockLayers(ctx context.Context, hexes []string) (func(), error) {
	sorted := slices.Clone(hexes)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var held []interface{ Unlock() error }
	release := func() {
		for _, l := range held {
			l.Unlock() //nolint:errcheck
		}
	}
	for _, h := range sorted {
		l := store.RecordLock(s.cfg.Dir, "layer", h)
		if err := l.Lock(ctx); err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}

// convertAll converts, in parallel up to PoolSize, every distinct layer that needs it. The map
// holds the staged layers; layers absent from it reuse their existing blob.
func (s *Store) convertAll(ctx context.Context, src Source, hexes []string, work string, force bool, stats *Stats) (map[string]*staged, error) {
	results := map[string]*staged{}
	var todo []int
	for i, h := range hexes {
		if _, dup := results[h]; dup {
			continue
		}
		if !force && s.hasBlob(h) {
			stats.Reused++
			continue
		}
		results[h] = nil
		todo = append(todo, i)
	}
	slog.Info("converting image layers", "ref", src.Key, "layers", len(hexes), "to_convert", len(todo))
	if len(todo) == 0 {
		return results, nil
	}
	maxBytes, err := s.limit(work)
	if err != nil {
		return nil, err
	}
	bar := progress.New(s.cfg.Progress, src.Key)
	defer bar.Close()
	staged := make([]*staged, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.PoolSize)
	for j, i := range todo {
		g.Go(func() error {
			item := bar.Add(hexes[i][:12], 0)
			st, err := convert(gctx, src.Layers[i], hexes[i], work, maxBytes, item)
			if err != nil {
				return fmt.Errorf("layer %d (sha256:%.12s): %w", i, hexes[i], s.explainLimit(err))
			}
			item.Done()
			staged[j] = st
			slog.Info("layer converted", "ref", src.Key, "layer", hexes[i][:12], "bytes", st.bytes)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for j, i := range todo {
		results[hexes[i]] = staged[j]
		stats.Converted++
		stats.Bytes += staged[j].bytes
	}
	return results, nil
}

func (s *Store) hasBlob(hex string) bool {
	_, err := fileSize(s.BlobPath(hex))
	return err == nil
}

// bootFiles says whether layer hex has a kernel and an initrd, staged or already published.
func (s *Store) bootFiles(hex string, st *staged) (kernel, initrd bool) {
	if st != nil {
		return st.kernel != "", st.initrd != ""
	}
	_, kerr := fileSize(s.KernelPath(hex))
	_, ierr := fileSize(s.InitrdPath(hex))
	return kerr == nil, ierr == nil
}

// publish moves a staged layer into place: boot files first, then the blob, whose presence is
// what marks a layer as done (a crash in between leaves no blob, so the layer is redone).
func (s *Store) publish(hex string, st *staged) error {
	for _, f := range []struct{ from, to string }{{st.kernel, s.KernelPath(hex)}, {st.initrd, s.InitrdPath(hex)}} {
		if f.from == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.to), 0o755); err != nil {
			return fmt.Errorf("create boot dir: %w", err)
		}
		if err := os.Rename(f.from, f.to); err != nil {
			return fmt.Errorf("publish boot file: %w", err)
		}
	}
	if err := os.Chmod(st.blob, 0o444); err != nil {
		return fmt.Errorf("chmod blob: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.BlobPath(hex)), 0o755); err != nil {
		return fmt.Errorf("create blob dir: %w", err)
	}
	if err := os.Rename(st.blob, s.BlobPath(hex)); err != nil {
		return fmt.Errorf("publish blob: %w", err)
	}
	return nil
}

func (s *Store) commit(ctx context.Context, src Source, entry *Entry) error {
	return s.Index.Update(ctx, func(idx *index) error {
		size, err := s.complete(entry)
		if err != nil {
			return fmt.Errorf("stored file vanished (%w): pull again", err)
		}
		entry.Size, entry.CreatedAt = size, time.Now().UTC()
		if src.Origin == OriginRegistry {
			// "ubuntu" and "docker.io/library/ubuntu:latest" are one image: keep one entry.
			for k, e := range idx.Images {
				if k != src.Key && e.Origin == OriginRegistry && sameName(k, src.Key) {
					delete(idx.Images, k)
				}
			}
		}
		idx.Images[src.Key] = entry
		return nil
	})
}

// sameName reports whether two refs name the same image once defaults are filled in.
func sameName(a, b string) bool {
	ra, err := name.ParseReference(a)
	if err != nil {
		return false
	}
	rb, err := name.ParseReference(b)
	return err == nil && ra.Name() == rb.Name()
}
