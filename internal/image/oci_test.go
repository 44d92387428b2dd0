package image

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// whiteoutImage: a bottom layer with boot files and content, an upper one that deletes a file,
// makes a directory opaque and adds files.
func whiteoutImage(t *testing.T) (v1.Image, []v1.Layer) {
	mtime := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	bottom := layer(t,
		file("boot/vmlinuz-6.1.0-w", "kernel w"), file("boot/initrd.img-6.1.0-w", "initrd w"),
		file("boot/vmlinuz-6.0.0-w.old", "old kernel"),
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/keep", body: "keep", mode: 0o640, uid: 1234, gid: 4321, mtime: mtime},
		file("etc/gone", "gone"),
		file("dir/a", "a"), file("dir/b", "b"),
	)
	top := layer(t,
		file("etc/.wh.gone", ""),
		file("dir/.wh..wh..opq", ""),
		file("dir/c", "c"),
		file("usr/bin/tool", "tool"),
		entry{name: "usr/bin/tool-link", typ: tar.TypeLink, link: "usr/bin/tool"},
		entry{name: "usr/bin/sym", typ: tar.TypeSymlink, link: "/usr/bin/tool"},
	)
	return makeImage(t, bottom, top), []v1.Layer{bottom, top}
}

func TestPullConvertsLayersAndOverlayStacksThem(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	img, layers := whiteoutImage(t)
	ref := reg.push(t, "vm/whiteout:1", img)
	m, root := newManager(t)
	ctx := context.Background()

	got, st, err := m.Pull(ctx, ref, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Layers != 2 || st.Converted != 2 || st.Reused != 0 || st.UpToDate {
		t.Errorf("stats %+v, want 2 converted", st)
	}
	digest, _ := img.Digest()
	if got.Kind != KindOCI || got.Ref != ref || got.Digest != digest.String() || len(got.Layers) != 2 {
		t.Fatalf("image %+v", got)
	}
	for i, l := range layers {
		diffID, _ := l.DiffID()
		want := filepath.Join(root, "oci/blobs", diffID.Hex+".erofs")
		if got.Layers[i].Digest != diffID.String() || got.Layers[i].Path != want {
			t.Errorf("layer %d = %+v, want %s at %s", i, got.Layers[i], diffID, want)
		}
		if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o444 {
			t.Errorf("blob %s: %v %v", want, fi, err)
		}
	}
	bottomID, _ := layers[0].DiffID()
	if got.KernelPath != filepath.Join(root, "oci/boot", bottomID.Hex, "vmlinuz") {
		t.Errorf("kernel path %s", got.KernelPath)
	}
	for p, want := range map[string]string{got.KernelPath: "kernel w", got.InitrdPath: "initrd w"} {
		if data, err := os.ReadFile(p); err != nil || string(data) != want {
			t.Errorf("%s = %q, %v; want %q", p, data, err, want)
		}
	}
	if ids := got.BlobIDs(); len(ids) != 2 || ids[0] != bottomID.Hex {
		t.Errorf("BlobIDs %v", ids)
	}
	if names := dirNames(t, filepath.Join(root, "oci/temp")); len(names) != 0 {
		t.Errorf("work dirs left: %v", names)
	}

	// The top blob keeps the overlayfs whiteout (char 0/0) and the opaque xattr.
	upper := mountEROFS(t, got.Layers[1].Path)
	var s unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc/gone"), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("whiteout in the EROFS blob: mode %o rdev %d %v", s.Mode, s.Rdev, err)
	}
	buf := make([]byte, 4)
	if n, err := unix.Getxattr(filepath.Join(upper, "dir"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr in the EROFS blob: %q %v", buf[:n], err)
	}
	// Stack the blobs as the guest does: top layer first.
	merged := mountOverlay(t, []string{upper, mountEROFS(t, got.Layers[0].Path)})
	for _, p := range []string{"etc/gone", "dir/a", "dir/b"} {
		if _, err := os.Lstat(filepath.Join(merged, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s should be hidden by a whiteout: %v", p, err)
		}
	}
	for p, want := range map[string]string{"etc/keep": "keep", "dir/c": "c", "usr/bin/tool-link": "tool", "boot/vmlinuz-6.1.0-w": "kernel w"} {
		if data, err := os.ReadFile(filepath.Join(merged, p)); err != nil || string(data) != want {
			t.Errorf("%s = %q, %v; want %q", p, data, err, want)
		}
	}
	if err := unix.Stat(filepath.Join(merged, "etc/keep"), &s); err != nil {
		t.Fatal(err)
	}
	if s.Uid != 1234 || s.Gid != 4321 || s.Mode&0o7777 != 0o640 || s.Mtim.Sec != time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC).Unix() {
		t.Errorf("etc/keep metadata: uid %d gid %d mode %o mtime %d", s.Uid, s.Gid, s.Mode&0o7777, s.Mtim.Sec)
	}
	if target, err := os.Readlink(filepath.Join(merged, "usr/bin/sym")); err != nil || target != "/usr/bin/tool" {
		t.Errorf("symlink: %q %v", target, err)
	}
	if err := unix.Stat(filepath.Join(merged, "usr/bin/tool"), &s); err != nil || s.Nlink != 2 {
		t.Errorf("hardlink count %d %v, want 2", s.Nlink, err)
	}

	// Same image again: nothing to do. With force: everything is redone.
	if _, st, err = m.Pull(ctx, ref, false); err != nil || !st.UpToDate || st.Converted != 0 {
		t.Errorf("second pull: %+v %v", st, err)
	}
	gets := reg.blobGets(t, layers[0])
	if _, st, err = m.Pull(ctx, ref, true); err != nil || st.Converted != 2 || st.UpToDate {
		t.Errorf("forced pull: %+v %v", st, err)
	}
	if reg.blobGets(t, layers[0]) != gets+1 {
		t.Errorf("forced pull did not download the layer again")
	}
}

func TestSharedLayerIsDownloadedAndConvertedOnce(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	base := bootLayer(t, "shared")
	ref1 := reg.push(t, "vm/a:1", makeImage(t, base, layer(t, file("a", "a"))))
	ref2 := reg.push(t, "vm/b:1", makeImage(t, base, layer(t, file("b", "b"))))
	m, root := newManager(t)
	ctx := context.Background()
	if _, st, err := m.Pull(ctx, ref1, false); err != nil || st.Converted != 2 {
		t.Fatalf("pull 1: %+v %v", st, err)
	}
	_, st, err := m.Pull(ctx, ref2, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Converted != 1 || st.Reused != 1 {
		t.Errorf("pull 2 stats %+v, want 1 converted 1 reused", st)
	}
	if n := reg.blobGets(t, base); n != 1 {
		t.Errorf("shared layer downloaded %d times, want 1", n)
	}
	if n := len(dirNames(t, filepath.Join(root, "oci/blobs"))); n != 3 {
		t.Errorf("%d blobs, want 3", n)
	}
}

func TestPullRefusesImageWithoutKernel(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	noKernel := reg.push(t, "vm/nokernel:1", makeImage(t, layer(t, file("boot/initrd.img-1", "i"), file("etc/x", "x"))))
	m, root := newManager(t)
	_, _, err := m.Pull(context.Background(), noKernel, false)
	if err == nil || !strings.Contains(err.Error(), "not a VM image") {
		t.Fatalf("err = %v, want a not-a-VM-image error", err)
	}
	t.Log(err)
	assertNothingStored(t, m, root)
}

func TestPullRefusesUnsafeLayers(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := map[string]v1.Layer{
		"dotdot": layer(t, file("../../../../../../.."+outside+"/pwned", "x")),
		"symlink": layer(t, entry{name: "evil", typ: tar.TypeSymlink, link: outside},
			file("evil/pwned", "x")),
		"hardlink": layer(t, entry{name: "h", typ: tar.TypeLink, link: "../../../../../../.." + secret}),
	}
	for name, l := range bad {
		t.Run(name, func(t *testing.T) {
			ref := reg.push(t, "vm/unsafe:"+name, makeImage(t, bootLayer(t, name), l))
			m, root := newManager(t)
			_, _, err := m.Pull(context.Background(), ref, false)
			if err == nil || !strings.Contains(err.Error(), "unsafe layer") {
				t.Fatalf("err = %v, want an unsafe layer error", err)
			}
			t.Log(err)
			assertNothingStored(t, m, root)
			if names := dirNames(t, outside); len(names) != 1 {
				t.Errorf("something was written outside: %v", names)
			}
			var st unix.Stat_t
			if err := unix.Stat(secret, &st); err != nil || st.Nlink != 1 {
				t.Errorf("host file got linked: nlink %d %v", st.Nlink, err)
			}
		})
	}
}

func TestConcurrentPullsOfOneRefDoTheWorkOnce(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	base, top := bootLayer(t, "conc"), layer(t, file("x", "x"))
	ref := reg.push(t, "vm/conc:1", makeImage(t, base, top))
	m, root := newManager(t)
	var wg sync.WaitGroup
	stats := make([]PullStats, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second Manager on the same root behaves like a second cocoon process.
			mm := m
			if i == 1 {
				mm = NewManager(root, Options{PoolSize: 2})
			}
			_, stats[i], errs[i] = mm.Pull(context.Background(), ref, false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := stats[0].Converted + stats[1].Converted; c != 2 {
		t.Errorf("layers converted %d times in total, want 2 (stats %+v)", c, stats)
	}
	for _, l := range []v1.Layer{base, top} {
		if n := reg.blobGets(t, l); n != 1 {
			t.Errorf("layer downloaded %d times, want 1", n)
		}
	}
}

func TestSlowPullDoesNotBlockReadersAndCancelLeavesNothing(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	base := bootLayer(t, "slow")
	ref := reg.push(t, "vm/slow:1", makeImage(t, base))
	m, root := newManager(t)
	started, release := reg.hold(t, base)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := m.Pull(ctx, ref, false)
		done <- err
	}()
	<-started // the pull is now downloading a layer
	readCtx, readCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer readCancel()
	if _, err := m.List(readCtx); err != nil {
		t.Fatalf("List during a pull: %v", err)
	}
	if _, err := m.GC(readCtx, nil); err == nil || !strings.Contains(err.Error(), "held by another operation") {
		t.Errorf("GC during a pull = %v, want a busy error", err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled pull succeeded")
	}
	assertNothingStored(t, m, root)
}

func TestPullErrorsAreOneLineWithAFix(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	m, root := newManager(t)
	ctx := context.Background()
	dead := startRegistry(t)
	dead.srv.Close()
	cases := map[string]string{
		reg.host + "/nope:1":            "manifest unknown: check the image name and tag",
		dead.host + "/x:1":              "refused the connection",
		"Invalid Ref!!":                 "invalid image reference",
		reg.host + "/x@sha256:" + zeros: "manifest unknown",
	}
	for ref, want := range cases {
		_, _, err := m.Pull(ctx, ref, false)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Pull(%q) = %v, want one line containing %q", ref, err, want)
		}
	}
	assertNothingStored(t, m, root)
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

func TestPullByDigestAndResolve(t *testing.T) {
	needOCI(t)
	reg := startRegistry(t)
	img := makeImage(t, bootLayer(t, "dig"))
	ref := reg.push(t, "vm/dig:1", img)
	digest, _ := img.Digest()
	m, _ := newManager(t)
	ctx := context.Background()
	byDigest := reg.host + "/vm/dig@" + digest.String()
	got, _, err := m.Pull(ctx, byDigest, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest.String() || got.Ref != byDigest {
		t.Errorf("pulled %+v", got)
	}
	if _, _, err := m.Pull(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{ref, digest.String(), digest.Hex, digest.Hex[:12]} {
		r, err := m.Resolve(ctx, q)
		if err != nil || r.Digest != digest.String() {
			t.Errorf("Resolve(%q) = %+v, %v", q, r, err)
		}
	}
	if _, err := m.Resolve(ctx, digest.Hex[:11]); !errors.Is(err, ErrNotFound) {
		t.Errorf("an 11-digit prefix resolved: %v", err)
	}
	removed, err := m.Remove(ctx, []string{digest.Hex[:12]})
	if err != nil || len(removed) != 2 {
		t.Errorf("Remove by digest = %v, %v; want both refs", removed, err)
	}
}
