package archive

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkSparseScan: list the data extents of a 1 GiB file with 256 scattered 4 KiB extents
// (SEEK_DATA/SEEK_HOLE), the scan export and sparse copies do per disk file.
func BenchmarkSparseScan(b *testing.B) {
	const size, n = 1 << 30, 256
	f, err := os.Create(filepath.Join(b.TempDir(), "disk"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	page[0] = 1
	for i := range n {
		if _, err := f.WriteAt(page, int64(i)*(size/n)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		exts, err := dataExtents(f, size)
		if err != nil {
			b.Fatal(err)
		}
		if len(exts) == 0 || len(exts) > n {
			b.Fatalf("%d extents", len(exts))
		}
	}
}
