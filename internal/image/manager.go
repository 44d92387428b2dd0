package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/cocoonstack/cocoon/internal/image/blobstore"
	"github.com/cocoonstack/cocoon/internal/image/cloudimg"
	"github.com/cocoonstack/cocoon/internal/image/oci"
	"github.com/cocoonstack/cocoon/internal/platform"
)

// Manager is the entry point for images of both kinds under one root dir.
type Manager struct {
	oci   *oci.Store
	cloud *cloudimg.Store
}

// NewManager returns a Manager for <rootDir>/oci and <rootDir>/cloudimg.
func NewManager(rootDir string, opts Options) *Manager {
	if opts.PoolSize <= 0 {
		opts.PoolSize = runtime.NumCPU()
	}
	var transport http.RoundTripper
	if opts.HTTPClient != nil {
		transport = opts.HTTPClient.Transport
	}
	return &Manager{
		oci: oci.New(oci.Config{Dir: filepath.Join(rootDir, "oci"), PoolSize: opts.PoolSize,
			Progress: opts.Progress, Insecure: opts.Insecure, Transport: transport, MaxLayerBytes: opts.MaxLayerBytes}),
		cloud: cloudimg.New(cloudimg.Config{Dir: filepath.Join(rootDir, "cloudimg"),
			Progress: opts.Progress, Client: opts.HTTPClient}),
	}
}

func isURL(ref string) bool {
	return strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://")
}

// Pull stores ref for the host's platform (see PullFor).
func (m *Manager) Pull(ctx context.Context, ref string, force bool) (*Image, PullStats, error) {
	return m.PullFor(ctx, ref, "", force)
}

// PullFor stores ref: an http(s) URL is a cloud image, anything else an OCI ref (tag or
// repo@sha256:…) whose plat (linux/ARCH, "" = the host's) image is taken from a manifest
// list. Without force a stored, complete image is not fetched again.
func (m *Manager) PullFor(ctx context.Context, ref, plat string, force bool) (*Image, PullStats, error) {
	if isURL(ref) {
		e, st, err := m.cloud.Pull(ctx, ref, force)
		if err != nil {
			return nil, PullStats{}, err
		}
		img := m.fromCloud(ref, *e)
		return &img, cloudStats(st), nil
	}
	e, st, err := m.oci.Pull(ctx, ref, plat, force)
	if err != nil {
		return nil, ociStats(st), err
	}
	img := m.fromOCI(e.Ref, *e)
	return &img, ociStats(st), nil
}

func ociStats(s oci.Stats) PullStats {
	return PullStats{Layers: s.Layers, Converted: s.Converted, Reused: s.Reused, Bytes: s.Bytes, UpToDate: s.UpToDate}
}

func cloudStats(s cloudimg.Stats) PullStats {
	st := PullStats{Layers: 1, Bytes: s.Bytes, UpToDate: s.UpToDate}
	if s.Converted {
		st.Converted = 1
	} else {
		st.Reused = 1
	}
	return st
}

func (m *Manager) fromOCI(key string, e oci.Entry) Image {
	img := Image{Kind: KindOCI, Ref: key, Digest: e.ManifestDigest, Size: e.Size, CreatedAt: e.CreatedAt,
		Source: e.Origin, Platform: platform.Or(e.Platform), KernelPath: m.oci.KernelPath(blobstore.Hex(e.KernelLayer)), InitrdPath: m.oci.InitrdPath(blobstore.Hex(e.InitrdLayer))}
	for _, l := range e.Layers {
		img.Layers = append(img.Layers, Layer{Digest: l.Digest, Path: m.oci.BlobPath(blobstore.Hex(l.Digest))})
	}
	return img
}

func (m *Manager) fromCloud(key string, e cloudimg.Entry) Image {
	return Image{Kind: KindCloud, Ref: key, Digest: e.ContentSum, BlobDigest: e.BlobDigest,
		BlobPath: m.cloud.BlobPath(blobstore.Hex(e.ContentSum)), VirtualSize: e.VirtualSize,
		Size: e.Size, CreatedAt: e.CreatedAt, Source: e.Source}
}

// List returns every image of both kinds, sorted by kind then ref.
func (m *Manager) List(ctx context.Context) ([]Image, error) {
	ociEntries, err := m.oci.Entries(ctx)
	if err != nil {
		return nil, err
	}
	cloudEntries, err := m.cloud.Entries(ctx)
	if err != nil {
		return nil, err
	}
	var out []Image
	for k, e := range ociEntries {
		out = append(out, m.fromOCI(k, e))
	}
	for k, e := range cloudEntries {
		out = append(out, m.fromCloud(k, e))
	}
	slices.SortFunc(out, func(a, b Image) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Ref, b.Ref)
	})
	return out, nil
}

// Resolve finds the one image ref names (lookup order: exact ref, normalised OCI ref, digest or
// digest prefix of at least 12 hex digits). Errors wrap ErrNotFound or ErrAmbiguous.
func (m *Manager) Resolve(ctx context.Context, ref string) (*Image, error) {
	matches, err := m.match(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &matches[0], nil
}

// Remove drops the index entries of refs (a digest removes every ref pointing at it). Every ref
// is resolved first; if one fails nothing is removed. Blobs stay until GC.
func (m *Manager) Remove(ctx context.Context, refs []string) ([]string, error) {
	var ociKeys, cloudKeys []string
	for _, ref := range refs {
		matches, err := m.match(ctx, ref)
		if err != nil {
			return nil, err
		}
		for _, img := range matches {
			if img.Kind == KindOCI {
				ociKeys = append(ociKeys, img.Ref)
			} else {
				cloudKeys = append(cloudKeys, img.Ref)
			}
		}
	}
	slices.Sort(ociKeys)
	ociKeys = slices.Compact(ociKeys)
	slices.Sort(cloudKeys)
	cloudKeys = slices.Compact(cloudKeys)
	if err := m.oci.Remove(ctx, ociKeys); err != nil {
		return nil, err
	}
	if err := m.cloud.Remove(ctx, cloudKeys); err != nil {
		return ociKeys, err
	}
	return append(ociKeys, cloudKeys...), nil
}

// match returns every image ref names, all of one kind and one digest, or an error.
func (m *Manager) match(ctx context.Context, ref string) ([]Image, error) {
	all, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	pick := func(ok func(Image) bool) []Image {
		var out []Image
		for _, img := range all {
			if ok(img) {
				out = append(out, img)
			}
		}
		return out
	}
	matches := pick(func(i Image) bool { return i.Ref == ref })
	if len(matches) == 0 && !isURL(ref) {
		if r, err := name.ParseReference(ref); err == nil {
			matches = pick(func(i Image) bool {
				if i.Kind != KindOCI || i.Source != oci.OriginRegistry {
					return false
				}
				ir, err := name.ParseReference(i.Ref)
				return err == nil && ir.Name() == r.Name()
			})
		}
	}
	if h := strings.TrimPrefix(ref, "sha256:"); len(matches) == 0 && isHex(h) && len(h) >= 12 {
		matches = pick(func(i Image) bool { return strings.HasPrefix(digestHex(i.Digest), h) })
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("image %q: %w: check `cocoon image list`", ref, ErrNotFound)
	}
	return matches, unambiguous(ref, matches)
}

func unambiguous(ref string, matches []Image) error {
	first := matches[0]
	for _, img := range matches[1:] {
		if img.Kind != first.Kind {
			return fmt.Errorf("image %q: %w: it matches both an oci image (%s) and a cloud image (%s): use the full ref or digest",
				ref, ErrAmbiguous, refOf(matches, KindOCI), refOf(matches, KindCloud))
		}
		if img.Digest != first.Digest {
			return fmt.Errorf("image %q: %w: it matches %s and %s: use more of the digest", ref, ErrAmbiguous, first.Ref, img.Ref)
		}
	}
	return nil
}

func refOf(imgs []Image, k Kind) string {
	for _, i := range imgs {
		if i.Kind == k {
			return i.Ref
		}
	}
	return ""
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// GC removes blobs (and OCI boot dirs) that no index entry references and pinned (blob IDs held
// by VMs and snapshots) does not name, plus work files older than an hour. It never waits: when
// an index is in use or a pull or import runs, it fails with an error wrapping lock.ErrBusy.
func (m *Manager) GC(ctx context.Context, pinned map[string]struct{}) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	releaseOCI, err := m.oci.TryLockGC()
	if err != nil {
		return nil, fmt.Errorf("image gc skipped: %w: retry when it finishes", err)
	}
	defer releaseOCI()
	releaseCloud, err := m.cloud.TryLockGC()
	if err != nil {
		return nil, fmt.Errorf("image gc skipped: %w: retry when it finishes", err)
	}
	defer releaseCloud()
	now := time.Now()
	removed, err := m.oci.Collect(pinned, now)
	more, err2 := m.cloud.Collect(pinned, now)
	return append(removed, more...), errors.Join(err, err2)
}
