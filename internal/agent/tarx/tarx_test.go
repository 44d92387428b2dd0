package tarx

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("extraction keeps owners: needs root")
	}
}

func writeTree(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "d", "e"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "d", "e", "f.txt"), []byte("data"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "d", "e", "f.txt"), 0o604); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "d", "e", "f.txt"), old, old); err != nil {
		t.Fatal(err)
	}
}

func TestPackExtractDockerCpNaming(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	writeTree(t, src)
	var buf bytes.Buffer
	top, err := Pack(&buf, filepath.Join(src, "d"))
	if err != nil || top != "d" {
		t.Fatalf("Pack: %q %v", top, err)
	}
	// Into an existing directory: keeps the name. Elsewhere: becomes the destination.
	into := t.TempDir()
	if err := os.Chmod(into, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), into, top, true); err != nil {
		t.Fatal(err)
	}
	as := filepath.Join(t.TempDir(), "renamed")
	if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), as, top, true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(into, "d", "e", "f.txt"), filepath.Join(as, "e", "f.txt")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o604 || st.ModTime().Unix() != time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC).Unix() {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	if st, _ := os.Stat(into); st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Fatalf("extraction changed the destination's mode: %v", st.Mode())
	}
	// A stream with no known top entry needs an existing directory.
	if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), filepath.Join(into, "missing"), "", true); err == nil {
		t.Fatal("extracting a raw stream to a missing directory succeeded")
	}
}

func TestExtractHostSafeDropsDevices(t *testing.T) {
	needRoot(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "x/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "x/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			_, _ = tw.Write([]byte("hi"))
		}
	}
	tw.Close()
	dst := t.TempDir()
	if err := Extract(context.Background(), &buf, dst, "x", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "x", "null")); !os.IsNotExist(err) {
		t.Fatalf("device node extracted on the host side: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "x", "f")); string(data) != "hi" {
		t.Fatalf("regular file: %q", data)
	}
}

func TestExtractRefusesEscape(t *testing.T) {
	needRoot(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "x/../../evil", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	dst := filepath.Join(t.TempDir(), "in")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Extract(context.Background(), &buf, dst, "x", true); err == nil {
		t.Fatal("an entry escaping the destination was extracted")
	}
}
