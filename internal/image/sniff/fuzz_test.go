package sniff

import (
	"bytes"
	"testing"
)

// FuzzDetect checks that Detect never panics, whatever the head's length or content, and that
// it only calls raw what carries a partition table or filesystem signature. `go test` runs the seeds.
func FuzzDetect(f *testing.F) {
	for _, seed := range [][]byte{
		{}, []byte("QFI\xfb"), {0x1f, 0x8b}, []byte("<!DOCTYPE html>"), mbrHead(), randomHead(),
		withAt(mbrHead(), 512, "EFI PART"), withAt(make([]byte, 2048), 1024+56, "\x53\xef"),
		withAt(make([]byte, 600), 257, "ustar"), withAt(make([]byte, 512), 510, "\x55\xaa"),
		[]byte("KDMV"), []byte("hello\xc3"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		format, err := Detect(head)
		switch {
		case err != nil && format != "":
			t.Fatalf("Detect = %q with error %v", format, err)
		case err == nil && format == "":
			t.Fatal("Detect gave neither a format nor an error")
		case format == Raw && rawKind(head) == "":
			t.Fatal("raw without a partition table or filesystem")
		case format == Qcow2 && !bytes.HasPrefix(head, []byte("QFI\xfb")):
			t.Fatal("qcow2 without its magic")
		}
	})
}
