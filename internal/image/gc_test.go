package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/lock"
)

func TestListRemoveAndGC(t *testing.T) {
	needOCI(t)
	needBin(t, "qemu-img")
	reg := startRegistry(t)
	base := bootLayer(t, "gc")
	refA := reg.push(t, "vm/a:1", makeImage(t, base, layer(t, file("a", "a"))))
	refB := reg.push(t, "vm/b:1", makeImage(t, base, layer(t, file("b", "b"))))
	m, root := newManager(t)
	ctx := context.Background()
	a, _, err := m.Pull(ctx, refA, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := m.Pull(ctx, refB, false)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := m.Import(ctx, "disk", []string{rawDisk(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, i := range list {
		refs = append(refs, string(i.Kind)+":"+i.Ref)
	}
	if want := []string{"cloudimg:disk", "oci:" + refA, "oci:" + refB}; !slices.Equal(refs, want) {
		t.Errorf("List = %v, want %v", refs, want)
	}

	// An old work dir left by a crash goes, a fresh one (a running pull's) stays.
	old, fresh := filepath.Join(root, "oci/temp/pull-old"), filepath.Join(root, "oci/temp/pull-fresh")
	for _, d := range []string{old, fresh} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	removed, err := m.GC(ctx, nil)
	if err != nil || len(removed) != 1 || removed[0] != old {
		t.Errorf("GC with everything referenced removed %v, %v; want only the old work dir", removed, err)
	}

	if got, err := m.Remove(ctx, []string{refA, "disk"}); err != nil || len(got) != 2 {
		t.Fatalf("Remove = %v, %v", got, err)
	}
	if _, err := m.Resolve(ctx, refA); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed image still resolves: %v", err)
	}
	if _, err := os.Stat(a.Layers[1].Path); err != nil {
		t.Errorf("Remove deleted a blob: %v", err)
	}
	if _, err := m.Remove(ctx, []string{refB, "no-such-image"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove with an unknown ref = %v, want ErrNotFound", err)
	}
	if _, err := m.Resolve(ctx, refB); err != nil {
		t.Errorf("a failed Remove removed %s: %v", refB, err)
	}

	// A VM still uses the cloud image: its blob is pinned.
	pinned := map[string]struct{}{}
	for _, id := range cloud.BlobIDs() {
		pinned[id] = struct{}{}
	}
	removed, err = m.GC(ctx, pinned)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != a.Layers[1].Path {
		t.Errorf("GC removed %v, want only %s", removed, a.Layers[1].Path)
	}
	for _, p := range []string{b.Layers[0].Path, b.Layers[1].Path, b.KernelPath, b.InitrdPath, cloud.BlobPath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("GC removed a needed file: %v", err)
		}
	}

	// Busy indexes make GC fail at once instead of waiting.
	l := lock.New(filepath.Join(root, "cloudimg/db/images.lock"))
	if err := l.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GC(ctx, nil); !errors.Is(err, lock.ErrBusy) {
		t.Errorf("GC with a held index lock = %v, want ErrBusy", err)
	}
	l.Unlock() //nolint:errcheck

	if _, err := m.Remove(ctx, []string{refB}); err != nil {
		t.Fatal(err)
	}
	removed, err = m.GC(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"oci/blobs", "oci/boot", "cloudimg/blobs"} {
		if names := dirNames(t, filepath.Join(root, d)); len(names) != 0 {
			t.Errorf("%s still has %v after GC of everything", d, names)
		}
	}
	if !slices.ContainsFunc(removed, func(p string) bool { return strings.HasSuffix(p, ".qcow2") }) {
		t.Errorf("GC did not report the cloud blob: %v", removed)
	}
}
