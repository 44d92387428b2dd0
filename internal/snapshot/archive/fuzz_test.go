package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzImport: no input, however crafted, may panic Import or write outside the staging dir,
// and what it accepts is flat regular files with the names it reports.
func FuzzImport(f *testing.F) {
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name} }
	f.Add(tarGz(f, entry{reg("manifest.json"), "{}"}, entry{reg("state"), "QEVM"}))
	f.Add(tarGz(f, entry{reg("../evil"), "x"}))
	f.Add(tarGz(f, entry{tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc"}, ""}, entry{reg("link/passwd"), "x"}))
	f.Add(tarGz(f, entry{reg("a"), "1"}, entry{reg("a"), "2"}))
	f.Add(sparseTarGz(f, "mem", []extent{{0, 512}, {8192, 100}}, 1<<20))
	f.Add(sparseTarGz(f, "mem", []extent{{8192, 100}}, 4096))
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		staging := filepath.Join(parent, "staging")
		if err := os.Mkdir(staging, 0o700); err != nil {
			t.Fatal(err)
		}
		got, err := Import(context.Background(), bytes.NewReader(archive), staging, Limits{MaxFiles: 8, MaxTotalBytes: 64 << 20})
		if left, _ := os.ReadDir(parent); len(left) != 1 {
			t.Fatalf("Import wrote outside the staging dir: %v", left)
		}
		if err != nil {
			return
		}
		entries, _ := os.ReadDir(staging)
		if len(entries) != len(got) {
			t.Fatalf("Import reported %v, the staging dir holds %v", got, entries)
		}
		for _, e := range got {
			st, err := os.Lstat(filepath.Join(staging, e.Name))
			if err != nil || !st.Mode().IsRegular() || st.Size() != e.Size {
				t.Fatalf("entry %+v: %v %v", e, st, err)
			}
		}
	})
}
