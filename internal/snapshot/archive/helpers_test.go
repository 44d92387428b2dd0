package archive

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// testFile describes one file of a test snapshot: its apparent size, its data written at the
// given offsets (the rest is hole) and its mode.
type testFile struct {
	name string
	size int64
	data map[int64][]byte
	mode os.FileMode
}

const gib = 1 << 30

// snapshotFiles is the round-trip fixture: the manifest first, then a 1 GiB sparse file with
// three extents (one 512-unaligned in offset and length, one ending exactly at the end of the
// file), an empty file, a file of data only and a file of hole only.
func snapshotFiles() []testFile {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return b
	}
	manifest := []byte("{\n  \"config\": {},\n  \"version\": 1\n}\n")
	return []testFile{
		{name: "snapshot.json", size: int64(len(manifest)), data: map[int64][]byte{0: manifest}, mode: 0o644},
		{name: "mem", size: gib, mode: 0o600, data: map[int64][]byte{
			40960:             random(64 << 10),
			300<<20 + 123:     random(1000),
			gib - (8<<10 + 1): random(8<<10 + 1),
		}},
		{name: "empty", size: 0, mode: 0o644},
		{name: "full.bin", size: 3<<20 + 17, mode: 0o600, data: map[int64][]byte{0: random(3<<20 + 17)}},
		{name: "hole.raw", size: 64 << 20, mode: 0o600},
	}
}

func names(files []testFile) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.name)
	}
	return out
}

func writeTestFiles(t testing.TB, dir string, files []testFile) {
	t.Helper()
	for _, tf := range files {
		f, err := os.OpenFile(filepath.Join(dir, tf.name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, tf.mode)
		if err != nil {
			t.Fatal(err)
		}
		for off, b := range tf.data {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(tf.size); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// allocated is the space a file really occupies (st_blocks), which holes do not count in.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// checkSameFiles compares every file of want against got: bytes, apparent size, mode, and
// that holes stayed holes (allocation no bigger than the data plus a block per extent).
func checkSameFiles(t *testing.T, wantDir, gotDir string, files []testFile) {
	t.Helper()
	for _, tf := range files {
		want, got := filepath.Join(wantDir, tf.name), filepath.Join(gotDir, tf.name)
		if !sameContent(t, want, got) {
			t.Errorf("%s: content differs after the round trip", tf.name)
		}
		st, err := os.Stat(got)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != tf.size {
			t.Errorf("%s: size %d, want %d", tf.name, st.Size(), tf.size)
		}
		if st.Mode().Perm() != tf.mode {
			t.Errorf("%s: mode %v, want %v", tf.name, st.Mode().Perm(), tf.mode)
		}
		var data int64
		for _, b := range tf.data {
			data += int64(len(b)) + 2*holeBlock // rounding to blocks at both ends
		}
		if a := allocated(t, got); a > data {
			t.Errorf("%s: %d bytes allocated, want at most %d: holes were filled", tf.name, a, data)
		}
	}
}

func sameContent(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF)
		}
	}
}

// exportTo writes an archive of files in dir to a new file and returns its path.
func exportTo(t testing.TB, dir string, files []string, opts ExportOptions) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap.tar.gz")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Export(context.Background(), dir, files, f, opts); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return out
}

// entryNames are the names of Import's entries, in order.
func entryNames(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name)
	}
	return out
}

func importFile(t testing.TB, archive, staging string, lim Limits) ([]Entry, error) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Import(context.Background(), f, staging, lim)
}
