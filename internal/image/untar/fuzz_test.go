package untar

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzExtract feeds arbitrary bytes to Extract: it may fail, but never panic, never write
// outside its root, and never allocate more than its bound. `go test` runs the seeds.
func FuzzExtract(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root: extraction sets ownership, creates device nodes and trusted.* xattrs")
	}
	seeds := [][]*tar.Header{
		{{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, reg("etc/passwd"), {Name: "etc/l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}},
		{reg("a/../../escape")},
		{{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/"}, reg("s/escape")},
		{{Name: "s", Typeflag: tar.TypeSymlink, Linkname: ".."}, {Name: "h", Typeflag: tar.TypeLink, Linkname: "s/outside/secret"}},
		{{Name: "o", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, reg("o/secret"), reg("o/new")},
		{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside/secret"}},
		{reg(".wh."), reg(".wh.."), reg("d/.wh..wh..opq"), reg("d/.wh.x")},
		{{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}, {Name: "p", Typeflag: tar.TypeFifo}},
		{{Name: "xyz", Typeflag: tar.TypeReg, Size: 3, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/"}}},
	}
	for _, s := range seeds {
		f.Add(build(f, s...))
	}
	f.Add(gnuSparse("bomb", 1<<40, 1<<40, nil))
	f.Add(gnuSparse("sparse", 1<<20, 4096, []byte("data")))
	f.Add([]byte{})
	const maxBytes = 8 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
		secret := filepath.Join(outside, "secret")
		if err := os.Mkdir(root, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(outside, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Whatever the outcome, only root may have changed.
		_ = Extract(context.Background(), bytes.NewReader(data), root, Options{Whiteouts: true, MaxBytes: maxBytes})
		if names := dirList(t, dir); !slices.Equal(names, []string{"outside", "root"}) {
			t.Fatalf("extraction wrote beside its root: %v", names)
		}
		var st unix.Stat_t
		if got, err := os.ReadFile(secret); err != nil || string(got) != "host" || unix.Stat(secret, &st) != nil || st.Nlink != 1 ||
			!slices.Equal(dirList(t, outside), []string{"secret"}) {
			t.Fatalf("extraction touched a file outside its root: %q %v nlink %d", got, err, st.Nlink)
		}
		var used int64
		filepath.Walk(root, func(p string, _ os.FileInfo, err error) error { //nolint:errcheck // sums what exists
			var st unix.Stat_t
			if err == nil && unix.Lstat(p, &st) == nil {
				used += st.Blocks * 512
			}
			return nil
		})
		if used > maxBytes+1<<20 {
			t.Fatalf("extraction allocated %d bytes, bound is %d", used, maxBytes)
		}
	})
}

func dirList(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
