package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The digest depends on the content only: the same bytes with holes or with written zeros
// hash alike, and a byte changed anywhere (in data, in a hole, or the size) changes it.
func TestFileDigestFollowsContentNotHoles(t *testing.T) {
	dir := t.TempDir()
	const size = 3<<20 + 100
	data := map[int64][]byte{5000: []byte("data across a block edge"), 2<<20 + 4090: []byte("tail")}
	sparse := []testFile{{name: "sparse", size: size, mode: 0o600, data: data}}
	writeTestFiles(t, dir, sparse)
	full := make([]byte, size)
	for off, b := range data {
		copy(full[off:], b)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	digest := func(p string) string {
		d, err := FileDigest(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(d, DigestPrefix) {
			t.Fatalf("digest %q lacks its prefix", d)
		}
		return d
	}
	want := digest(filepath.Join(dir, "sparse"))
	if got := digest(write("dense", full)); got != want {
		t.Errorf("the same content without holes digests to %s, with holes %s", got, want)
	}
	flipAt := func(at int) []byte {
		b := append([]byte(nil), full...)
		b[at] ^= 0x01
		return b
	}
	for name, b := range map[string][]byte{
		"flip in data":   flipAt(5003),
		"flip in a hole": flipAt(1 << 20),
		"flip last byte": flipAt(size - 1),
		"longer":         append(append([]byte(nil), full...), 0),
		"shorter":        full[:size-1],
	} {
		if digest(write(name, b)) == want {
			t.Errorf("%s: digest unchanged", name)
		}
	}
}
