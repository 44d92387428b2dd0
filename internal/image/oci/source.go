package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cocoonstack/cocoon/internal/image/untar"
	"github.com/cocoonstack/cocoon/internal/platform"
)

// parseRef parses an image reference the way Pull does.
func (s *Store) parseRef(ref string) (name.Reference, error) {
	var opts []name.Option
	if s.cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

// Pull fetches ref (a tag or repo@sha256:… digest) for plat (linux/ARCH, "" = the host's)
// and stores it.
func (s *Store) Pull(ctx context.Context, ref, plat string, force bool) (*Entry, Stats, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return nil, Stats{}, err
	}
	plat = platform.Or(plat)
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}
	if s.cfg.Transport != nil {
		opts = append(opts, remote.WithTransport(s.cfg.Transport))
	}
	img, err := remote.Image(r, append(opts, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: platform.Arch(plat)}))...)
	if err != nil {
		if strings.Contains(err.Error(), "no child with platform") {
			return nil, Stats{}, fmt.Errorf("pull %s: no %s image in this manifest list (it has %s): pick another --platform or tag",
				ref, plat, indexPlatforms(r, opts))
		}
		return nil, Stats{}, registryError(ref, r, err)
	}
	// A plain manifest (no index) is taken as is by remote.Image: check what it is built for.
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, Stats{}, registryError(ref, r, err)
	}
	if cfg.Architecture != "" && "linux/"+cfg.Architecture != plat {
		return nil, Stats{}, fmt.Errorf("pull %s: the image is %s/%s, not %s: pull it with --platform %s/%s",
			ref, cfg.OS, cfg.Architecture, plat, cfg.OS, cfg.Architecture)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, Stats{}, registryError(ref, r, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, Stats{}, registryError(ref, r, err)
	}
	src := Source{Key: r.String(), Digest: digest.String(), Origin: OriginRegistry, Platform: plat}
	for _, l := range layers {
		src.Layers = append(src.Layers, l)
	}
	e, st, err := s.Add(ctx, src, force)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) {
			return nil, st, registryError(ref, r, err)
		}
		return nil, st, fmt.Errorf("pull %s: %w", ref, err)
	}
	return e, st, nil
}

// registryError turns registry failures into one line that says what to do.
func registryError(ref string, r name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("pull %s: manifest unknown: check the image name and tag", ref)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("pull %s: access denied: run `docker login %s` or check the image name", ref, r.Context().RegistryStr())
			}
		}
		if te.StatusCode == 404 {
			return fmt.Errorf("pull %s: manifest unknown: check the image name and tag", ref)
		}
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("pull %s: registry %s refused the connection: check that it runs and the address is right", ref, r.Context().RegistryStr())
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("pull %s: registry %s speaks plain HTTP: pull with --insecure", ref, r.Context().RegistryStr())
	}
	return fmt.Errorf("pull %s: %s", ref, strings.ReplaceAll(err.Error(), "\n", " "))
}

// indexPlatforms lists the platforms of r's manifest list, for an error message.
func indexPlatforms(r name.Reference, opts []remote.Option) string {
	idx, err := remote.Index(r, opts...)
	if err != nil {
		return "no readable platform list"
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "no readable platform list"
	}
	var ps []string
	for _, d := range im.Manifests {
		if d.Platform != nil {
			ps = append(ps, d.Platform.String())
		}
	}
	if len(ps) == 0 {
		return "no platforms listed"
	}
	return strings.Join(ps, ", ")
}

// Import stores an image tar read from r under name: a `docker save` tar, an OCI layout tar,
// or a plain root filesystem tar (one layer). r must already be decompressed.
func (s *Store) Import(ctx context.Context, imageName string, r io.Reader) (*Entry, Stats, error) {
	work, maxBytes, done, err := s.importWork(ctx)
	if err != nil {
		return nil, Stats{}, err
	}
	defer done()
	tarPath := filepath.Join(work, "image.tar")
	sum, err := stage(r, tarPath, maxBytes)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("import %s: %w", imageName, s.explainLimit(err))
	}
	src, err := tarSource(ctx, tarPath, sum, work, maxBytes)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("import %s: %w", imageName, s.explainLimit(err))
	}
	src.Key, src.Origin = imageName, OriginImport
	e, st, err := s.Add(ctx, src, false)
	if err != nil {
		return nil, st, fmt.Errorf("import %s: %w", imageName, err)
	}
	return e, st, nil
}

// stage copies r (at most limit bytes of it: a gzip bomb must not fill the disk) to p and returns
// the hex sha256 of what it wrote.
func stage(r io.Reader, p string, limit int64) (string, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", p, err)
	}
	h := sha256.New()
	if err := copyBounded(io.MultiWriter(f, h), r, limit); err != nil {
		f.Close()
		return "", fmt.Errorf("read input: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tarSource recognises the kind of image tar by its entries.
func tarSource(ctx context.Context, tarPath, sum, work string, maxBytes int64) (Source, error) {
	names, err := tarNames(tarPath)
	if err != nil {
		return Source{}, err
	}
	opener := func() (io.ReadCloser, error) { return os.Open(tarPath) }
	var img v1.Image
	var digest v1.Hash
	switch {
	case names["index.json"] && names["oci-layout"]:
		dir := filepath.Join(work, "layout")
		if img, err = layoutImage(ctx, tarPath, dir, maxBytes); err == nil {
			digest, err = img.Digest()
		}
	case names["manifest.json"]:
		// A legacy `docker save` has no manifest digest; the config digest (Docker's image ID)
		// identifies the image instead, without recompressing every layer to compute one.
		if img, err = tarball.Image(opener, nil); err == nil {
			digest, err = img.ConfigName()
		}
	default:
		h := v1.Hash{Algorithm: "sha256", Hex: sum}
		return Source{Digest: h.String(), Layers: []Layer{fileLayer{path: tarPath, diffID: h}}}, nil
	}
	if err != nil {
		return Source{}, fmt.Errorf("read image tar: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Source{}, fmt.Errorf("read image tar layers: %w", err)
	}
	src := Source{Digest: digest.String()}
	// The image's own platform is recorded, so an arm64 image imported on an x86 host runs as arm64.
	if cfg, err := img.ConfigFile(); err == nil && cfg.Architecture != "" {
		p := cfg.OS + "/" + cfg.Architecture
		if !slices.Contains(platform.All, p) {
			return Source{}, fmt.Errorf("the image is %s: cocoon runs %s guests", p, strings.Join(platform.All, " and "))
		}
		src.Platform = p
	}
	for _, l := range layers {
		src.Layers = append(src.Layers, l)
	}
	return src, nil
}

func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		names[path.Clean(strings.TrimLeft(hdr.Name, "/"))] = true
	}
}

// layoutImage unpacks an OCI layout tar and picks its linux/GOARCH image, or else its only
// image of another supported platform.
func layoutImage(ctx context.Context, tarPath, dir string, maxBytes int64) (v1.Image, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := untar.Extract(ctx, f, dir, untar.Options{MaxBytes: maxBytes}); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	img, err := pickImage(idx, runtime.GOARCH)
	if err != nil && strings.Contains(err.Error(), "has no linux/") {
		for _, p := range platform.All {
			if platform.Arch(p) != runtime.GOARCH {
				if other, oerr := pickImage(idx, platform.Arch(p)); oerr == nil {
					return other, nil
				}
			}
		}
	}
	return img, err
}

func pickImage(idx v1.ImageIndex, arch string) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Image
	for _, d := range im.Manifests {
		if d.Platform != nil && (d.Platform.OS != "linux" || d.Platform.Architecture != arch) {
			continue
		}
		switch {
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			found = append(found, img)
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			img, err := pickImage(child, arch)
			if err != nil {
				return nil, err
			}
			found = append(found, img)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("the OCI layout has no linux/%s image", arch)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("the OCI layout holds %d images: export one image per file", len(found))
}

// fileLayer is a plain root filesystem tar used as a single layer.
type fileLayer struct {
	path   string
	diffID v1.Hash
}

func (l fileLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
