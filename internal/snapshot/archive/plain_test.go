package archive

import (
	"bytes"
	"os"
	"slices"
	"testing"
)

// An uncompressed export (the original's default) round-trips, and GNU tar reads it; a plain
// GNU tar imports as well.
func TestPlainTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	plain := exportTo(t, src, names(files), ExportOptions{Plain: true})
	data, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		t.Fatal("Plain export is gzip-compressed")
	}
	staging := t.TempDir()
	got, err := importFile(t, plain, staging, Limits{})
	if err != nil {
		t.Fatalf("Import of a plain export: %v", err)
	}
	if !slices.Equal(entryNames(got), names(files)) {
		t.Errorf("Import returned %q, want %q", entryNames(got), names(files))
	}
	checkSameFiles(t, src, staging, files)

	needGNUTar(t)
	runTar(t, "-tf", plain)
	gnu := t.TempDir() + "/gnu.tar"
	runTar(t, append([]string{"--sparse", "-cf", gnu, "-C", src}, names(files)...)...)
	staging = t.TempDir()
	if _, err := importFile(t, gnu, staging, Limits{}); err != nil {
		t.Fatalf("Import of a plain GNU tar: %v", err)
	}
	checkSameFiles(t, src, staging, files)
}
