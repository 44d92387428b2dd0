package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/pgzip"
)

func TestRoundTripKeepsContentHolesAndOrder(t *testing.T) {
	src, staging := t.TempDir(), t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)

	// Export and Import run at once through a pipe: neither side may seek or buffer it all.
	pr, pw := io.Pipe()
	exportErr := make(chan error, 1)
	go func() {
		err := Export(context.Background(), src, names(files), pw, ExportOptions{Workers: 2})
		pw.CloseWithError(err)
		exportErr <- err
	}()
	got, err := Import(context.Background(), pr, staging, Limits{MaxFiles: 5, MaxTotalBytes: 2 * gib})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if err := <-exportErr; err != nil {
		t.Fatalf("Export: %v", err)
	}
	if !slices.Equal(entryNames(got), names(files)) {
		t.Errorf("Import returned %q, want the export order %q", entryNames(got), names(files))
	}
	checkSameFiles(t, src, staging, files)
	// The digest Import computes from the stream is the one FileDigest reads from the source
	// (data extents only) and from the extracted copy (whose holes may lie elsewhere).
	for _, e := range got {
		for _, dir := range []string{src, staging} {
			want, err := FileDigest(filepath.Join(dir, e.Name))
			if err != nil {
				t.Fatal(err)
			}
			if e.Digest != want {
				t.Errorf("%s: Import digest %s, FileDigest of %s %s", e.Name, e.Digest, dir, want)
			}
		}
	}
}

func TestExportWritesSparseEntriesOnlyForFilesWithHoles(t *testing.T) {
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	archive := exportTo(t, src, names(files), ExportOptions{})

	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	sparse := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sparse[hdr.Name] = hdr.PAXRecords["GNU.sparse.major"] + "." + hdr.PAXRecords["GNU.sparse.minor"]
	}
	want := map[string]string{"snapshot.json": ".", "mem": "1.0", "empty": ".", "full.bin": ".", "hole.raw": "1.0"}
	for name, version := range want {
		if sparse[name] != version {
			t.Errorf("%s: GNU sparse version %q, want %q", name, sparse[name], version)
		}
	}
	// 1 GiB + 64 MiB of apparent size hold ~3.1 MiB of incompressible data.
	if st, _ := os.Stat(archive); st.Size() > 4<<20 {
		t.Errorf("archive is %d bytes: holes were archived as data", st.Size())
	}
}

func TestExportRejectsBadFileLists(t *testing.T) {
	dir := t.TempDir()
	writeTestFiles(t, dir, []testFile{{name: "a", size: 1, mode: 0o644, data: map[int64][]byte{0: {1}}}})
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{nil, "no files given"},
		{[]string{"a", "a"}, "listed twice"},
		{[]string{"sub/a"}, "sub-directory"},
		{[]string{"../a"}, "escapes"},
		{[]string{"link"}, "symbolic link"},
		{[]string{"sub"}, "not a regular file"},
		{[]string{"missing"}, "no such file"},
	} {
		err := Export(context.Background(), dir, tc.files, io.Discard, ExportOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Export(%q) = %v, want an error containing %q", tc.files, err, tc.want)
		}
	}
}

func TestExportAndImportStopOnCancel(t *testing.T) {
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Export(ctx, src, names(files), io.Discard, ExportOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Export with a cancelled context = %v, want context.Canceled", err)
	}
	archive := exportTo(t, src, names(files), ExportOptions{})
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Import(ctx, f, t.TempDir(), Limits{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Import with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestImportNeedsAnEmptyStagingDir(t *testing.T) {
	src, staging := t.TempDir(), t.TempDir()
	files := snapshotFiles()[:1]
	writeTestFiles(t, src, files)
	archive := exportTo(t, src, names(files), ExportOptions{})
	if err := os.WriteFile(filepath.Join(staging, "left-over"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := importFile(t, archive, staging, Limits{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Import into a non-empty dir = %v, want a 'not empty' error", err)
	}
}

func TestFitSparseMapBoundsTheMap(t *testing.T) {
	// 300k single-page extents at scattered offsets of a 64 GiB file: a ~5 MiB map.
	const size = 64 * gib
	var exts []extent
	for off := int64(0); off < size && len(exts) < 300_000; off += int64(len(exts)%7+2) * holeBlock * 5 {
		exts = append(exts, extent{off, holeBlock})
	}
	original := slices.Clone(exts)
	fitted := fitSparseMap(exts, size)
	if n := len(encodeSparseMap(fitted, size)); n > maxSparseMapBytes {
		t.Fatalf("fitted map is %d bytes, want at most %d", n, maxSparseMapBytes)
	}
	if n := len(encodeSparseMap(fitted, size)); n < maxSparseMapBytes*9/10 {
		t.Errorf("fitted map is %d bytes: merged far more holes than needed", n)
	}
	j := 0
	for i, e := range fitted {
		if i > 0 && fitted[i-1].Offset+fitted[i-1].Length >= e.Offset {
			t.Fatalf("fitted extents %d and %d touch or overlap", i-1, i)
		}
		for ; j < len(original) && original[j].Offset+original[j].Length <= e.Offset+e.Length; j++ {
			if original[j].Offset < e.Offset {
				t.Fatalf("data extent %v is not covered by the fitted map", original[j])
			}
		}
	}
	if j != len(original) {
		t.Fatalf("data extent %v is not covered by the fitted map", original[j])
	}
}
