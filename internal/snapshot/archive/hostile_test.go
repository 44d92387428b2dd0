package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one member of a hand-built archive.
type entry struct {
	hdr  tar.Header
	data string
}

func gzipBytes(t testing.TB, raw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// tarGz builds a .tar.gz with archive/tar, as an attacker could.
func tarGz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return gzipBytes(t, raw.Bytes())
}

// sparseTarGz builds a one-entry GNU sparse 1.0 archive from a map and a claimed real size,
// with every data byte 0xAB, through the same hand-written encoder Export uses.
func sparseTarGz(t testing.TB, name string, exts []extent, realSize int64) []byte {
	t.Helper()
	sparseMap := encodeSparseMap(exts, realSize)
	var data int64
	for _, e := range exts {
		data += e.Length
	}
	payload := int64(len(sparseMap)) + data
	raw := sparseHeaders(name, realSize, payload, 0o600, 0)
	raw = append(raw, sparseMap...)
	raw = append(raw, bytes.Repeat([]byte{0xAB}, int(data))...)
	raw = append(raw, make([]byte, blockPadding(payload)+2*blockSize)...)
	return gzipBytes(t, raw)
}

// importHostile imports archive into parent/staging and checks that nothing appeared in
// parent besides the staging dir.
func importHostile(t *testing.T, archive []byte, lim Limits) error {
	t.Helper()
	parent := t.TempDir()
	staging := filepath.Join(parent, "staging")
	if err := os.Mkdir(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Import(context.Background(), bytes.NewReader(archive), staging, lim)
	left, rerr := os.ReadDir(parent)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if len(left) != 1 || left[0].Name() != "staging" {
		t.Errorf("Import wrote outside the staging dir: %s holds %v", parent, left)
	}
	return err
}

func TestImportRefusesHostileArchives(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "abs")
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name} }
	truncated := sparseTarGz(t, "mem", []extent{{0, 64 << 10}}, 1<<20)
	corruptCRC := bytes.Clone(truncated)
	corruptCRC[len(corruptCRC)-8] ^= 0xff // the gzip footer's CRC-32
	for _, tc := range []struct {
		name    string
		archive []byte
		lim     Limits
		want    string
	}{
		{"parent traversal", tarGz(t, entry{reg("../evil"), "x"}), Limits{}, `"../evil" escapes`},
		{"traversal inside a path", tarGz(t, entry{reg("a/../../evil"), "x"}), Limits{}, "escapes"},
		{"absolute path", tarGz(t, entry{reg(outside), "x"}), Limits{}, "absolute path"},
		{"sub-directory", tarGz(t, entry{reg("dir/file"), "x"}), Limits{}, "sub-directory"},
		{"directory", tarGz(t, entry{tar.Header{Typeflag: tar.TypeDir, Name: "dir/"}, ""}), Limits{}, "is a directory"},
		{"symlink", tarGz(t, entry{tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "../outside"}, ""}), Limits{}, `"link" is a symbolic link`},
		{"hard link", tarGz(t, entry{tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: "/etc/passwd"}, ""}), Limits{}, `"hl" is a hard link`},
		{"char device", tarGz(t, entry{tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, ""}), Limits{}, `"null" is a device node`},
		{"fifo", tarGz(t, entry{tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}, ""}), Limits{}, `"pipe" is a fifo`},
		{"duplicate", tarGz(t, entry{reg("a"), "1"}, entry{reg("a"), "2"}), Limits{}, `"a" appears twice`},
		{"not allowed", tarGz(t, entry{reg("evil.sh"), "x"}), Limits{Allowed: func(n string) bool { return n == "mem" }}, `"evil.sh" is not a snapshot file`},
		{"too many files", tarGz(t, entry{reg("a"), ""}, entry{reg("b"), ""}, entry{reg("c"), ""}), Limits{MaxFiles: 2}, `"c" exceeds the limit of 2 files`},
		{"too many bytes", tarGz(t, entry{reg("a"), "12345"}, entry{reg("b"), "67890"}), Limits{MaxTotalBytes: 8}, `"b" (5 bytes) brings the snapshot past its limit of 8 bytes`},
		{"sparse realsize over the limit", sparseTarGz(t, "mem", []extent{{0, 512}}, 1<<40), Limits{MaxTotalBytes: 1 << 30}, `"mem" (1099511627776 bytes) brings the snapshot past`},
		{"sparse map past realsize", sparseTarGz(t, "mem", []extent{{8192, 100}}, 4096), Limits{}, "sparse map"},
		{"truncated stream", truncated[:len(truncated)/2], Limits{}, "truncated"},
		{"footer cut off", truncated[:len(truncated)-4], Limits{}, "truncated"},
		{"flipped CRC byte", corruptCRC, Limits{}, "checksum mismatch"},
		{"neither gzip nor tar", []byte("plain text, not an archive"), Limits{}, "neither gzip nor tar"},
		{"empty input", nil, Limits{}, "archive is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := importHostile(t, tc.archive, tc.lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Import = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
	if _, err := os.Lstat(outside); err == nil {
		t.Errorf("the absolute-path entry was written to %s", outside)
	}
}

func TestImportRejectsCorruptDeflateData(t *testing.T) {
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	archive, err := os.ReadFile(exportTo(t, src, names(files), ExportOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte in several places of the compressed body: whatever deflate makes of it,
	// a bad block, a bad tar header or a CRC mismatch, Import must fail.
	for _, at := range []int{len(archive) / 5, len(archive) / 2, len(archive) * 4 / 5} {
		bad := bytes.Clone(archive)
		bad[at] ^= 0x55
		if err := importHostile(t, bad, Limits{}); err == nil {
			t.Errorf("Import accepted an archive with byte %d of %d flipped", at, len(archive))
		}
	}
}

func TestImportReadsTheLargestSparseMapExportWrites(t *testing.T) {
	// 200k one-byte extents two bytes apart: a ~1.5 MiB map that Export must shrink to fit.
	var exts []extent
	for i := int64(0); i < 200_000; i++ {
		exts = append(exts, extent{100_000 + 2*i, 1})
	}
	const realSize = 1 << 20
	exts = fitSparseMap(exts, realSize)
	staging := t.TempDir()
	got, err := Import(context.Background(), bytes.NewReader(sparseTarGz(t, "mem", exts, realSize)), staging, Limits{})
	if err != nil {
		t.Fatalf("Import of a %d-extent map: %v", len(exts), err)
	}
	if len(got) != 1 || got[0].Name != "mem" {
		t.Fatalf("Import returned %v, want [mem]", got)
	}
	content, err := os.ReadFile(filepath.Join(staging, "mem"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, realSize)
	for _, e := range exts {
		copy(want[e.Offset:e.Offset+e.Length], bytes.Repeat([]byte{0xAB}, int(e.Length)))
	}
	if !bytes.Equal(content, want) {
		t.Error("content of the extracted sparse file differs from its map")
	}
}
