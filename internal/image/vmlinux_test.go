package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// debianKernel finds Debian's cloud kernel (a bzImage) in the guest image cache: unpacked,
// or inside the cached linux-image package.
func debianKernel(t *testing.T) string {
	t.Helper()
	cache, err := filepath.EvalSymlinks("../../os-image/.cache") // a link to the main checkout's cache
	if err != nil {
		t.Skipf("no guest image cache: %v", err)
	}
	var found, deb string
	_ = filepath.WalkDir(cache, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil || found != "":
			return filepath.SkipDir
		case !d.IsDir() && strings.HasPrefix(d.Name(), "vmlinuz-") && strings.HasSuffix(d.Name(), "-amd64"):
			found = p
		case !d.IsDir() && strings.HasPrefix(d.Name(), "linux-image-") && d.Name() >= "linux-image-0" && d.Name() < "linux-image-:" && strings.Contains(d.Name(), "-cloud-amd64_") && strings.HasSuffix(d.Name(), "_amd64.deb"):
			deb = p
		}
		return nil
	})
	if found != "" {
		data, err := os.ReadFile(found)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), filepath.Base(found)) // the test overwrites its copy
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if deb == "" {
		t.Skipf("no Debian cloud kernel (vmlinuz or linux-image .deb) under %s: build the guest images first", cache)
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found (needed to unpack the cached kernel package)")
	}
	out, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile %s: %v", deb, err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s holds no boot/vmlinuz-*", deb)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "./boot/vmlinuz-") {
			p := filepath.Join(t.TempDir(), filepath.Base(h.Name))
			data, err := io.ReadAll(tr)
			if err == nil {
				err = os.WriteFile(p, data, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
}

func TestELFKernelFromDebianBzImage(t *testing.T) {
	bz := debianKernel(t)
	cache := filepath.Join(t.TempDir(), "boot")
	got, err := ELFKernel(bz, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(cache, "vmlinux") {
		t.Fatalf("ELFKernel = %s, want the cached vmlinux", got)
	}
	f, err := elf.Open(got)
	if err != nil {
		t.Fatalf("extracted kernel is not ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Fatalf("extracted kernel is %v %v, want x86-64", f.Class, f.Machine)
	}
	st, err := os.Stat(got)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("vmlinux mode %v, want 0644", st.Mode().Perm())
	}
	// Reused, not extracted again: the bzImage (the test's own copy) no longer holds a kernel.
	if err := os.WriteFile(bz, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := ELFKernel(bz, cache)
	if err != nil || again != got {
		t.Fatalf("second ELFKernel = %q, %v; want the cached %s", again, err, got)
	}
	// An ELF kernel is used as it is.
	same, err := ELFKernel(got, t.TempDir())
	if err != nil || same != got {
		t.Fatalf("ELFKernel(vmlinux) = %q, %v; want it unchanged", same, err)
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Fatalf("cache dir holds %d entries, want only vmlinux (no temp files)", len(entries))
	}
}

func TestELFKernelRefusesNonKernel(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "vmlinuz")
	// A gzip magic followed by junk: found, tried, refused.
	if err := os.WriteFile(bad, append([]byte("MZ....\x1f\x8b\x08junk"), make([]byte, 64)...), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	_, err := ELFKernel(bad, cache)
	if err == nil || !strings.Contains(err.Error(), "uncompressed ELF kernel") {
		t.Fatalf("ELFKernel(junk) = %v, want a clear refusal", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "vmlinux")); !os.IsNotExist(err) {
		t.Fatalf("a failed extraction left %s/vmlinux (%v)", cache, err)
	}
	if _, err := ELFKernel(filepath.Join(dir, "missing"), cache); err == nil {
		t.Fatal("ELFKernel of a missing file succeeded")
	}
}
