package cloudinit

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requireTool(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s binary not found (install mtools / dosfstools)", name)
		}
	}
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fsckClean runs fsck.fat read-only; it must exit 0 and report nothing to fix.
func fsckClean(t *testing.T, img string) {
	t.Helper()
	out := tool(t, "fsck.fat", "-n", "-V", img)
	for _, bad := range []string{"differ", "invalid", "Bad", "bad", "lost", "Free cluster", "mismatch", "Orphan"} {
		if strings.Contains(out, bad) {
			t.Fatalf("fsck.fat reports %q:\n%s", bad, out)
		}
	}
}

func mtype(t *testing.T, img, name string) []byte {
	t.Helper()
	out, err := exec.Command("mtype", "-i", img, "::/"+name).Output()
	if err != nil {
		t.Fatalf("mtype %s: %v", name, err)
	}
	return out
}

func TestWriteImageReadableByRealTools(t *testing.T) {
	requireTool(t, "fsck.fat", "mdir", "mtype", "mlabel", "blkid")
	dir := t.TempDir()
	img := filepath.Join(dir, "cidata.img")
	seed := referenceSeed()
	if err := WriteImage(img, seed); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 1<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("image size %d mode %v, want 1 MiB 0600", fi.Size(), fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("leftovers next to the image: %v", entries)
	}
	fsckClean(t, img)

	listing := tool(t, "mdir", "-i", img, "::")
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		if !strings.Contains(listing, " "+name+"\n") { // long names show only with valid LFN checksums
			t.Fatalf("mdir does not list %s by its long name:\n%s", name, listing)
		}
	}
	meta, user, network, err := Render(seed)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"meta-data": meta, "user-data": user, "network-config": network} {
		if got := mtype(t, img, name); !bytes.Equal(got, want) {
			t.Fatalf("%s read back through mtools:\n%q\nwant\n%q", name, got, want)
		}
	}
	if out := tool(t, "mlabel", "-i", img, "-s", "::"); !strings.Contains(out, "Volume label is CIDATA") {
		t.Fatalf("mlabel: %s", out)
	}
	if label := strings.TrimSpace(tool(t, "blkid", "-o", "value", "-s", "LABEL", img)); label != "CIDATA" {
		t.Fatalf("blkid label %q", label)
	}
	if typ := strings.TrimSpace(tool(t, "blkid", "-o", "value", "-s", "TYPE", img)); typ != "vfat" {
		t.Fatalf("blkid type %q", typ)
	}
}

func TestFAT12LongNamesAndShortNameCollisions(t *testing.T) {
	requireTool(t, "fsck.fat", "mdir", "mtype")
	files := []fatFile{
		{"network-config", []byte("a\n")},
		{"network-configs", []byte("b\n")}, // same 8.3 basis: needs NETWOR~2
		{"a-rather-long-file-name-for-several-lfn-entries.txt", bytes.Repeat([]byte("x"), 1300)},
		{"empty", nil},
		{"UPPER.TXT", []byte("upper\n")},
	}
	img := filepath.Join(t.TempDir(), "t.img")
	data, err := buildFAT12("CIDATA", files, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	listing := tool(t, "mdir", "-i", img, "::")
	for _, f := range files {
		if !strings.Contains(listing, " "+f.name+"\n") {
			t.Fatalf("mdir does not list %q:\n%s", f.name, listing)
		}
		if got := mtype(t, img, f.name); !bytes.Equal(got, f.data) {
			t.Fatalf("%s: read back %d bytes, want %d", f.name, len(got), len(f.data))
		}
	}
	for _, short := range []string{"NETWOR~1", "NETWOR~2"} {
		if !strings.Contains(listing, short) {
			t.Fatalf("no short name %s:\n%s", short, listing)
		}
	}
}

func TestFAT12CapacityLimit(t *testing.T) {
	requireTool(t, "fsck.fat", "mtype")
	full := make([]byte, Capacity)
	rand.Read(full)
	data, err := buildFAT12("CIDATA", []fatFile{{"user-data", full}}, time.Now())
	if err != nil {
		t.Fatalf("a file of exactly the capacity (%d bytes): %v", Capacity, err)
	}
	img := filepath.Join(t.TempDir(), "full.img")
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	if got := mtype(t, img, "user-data"); !bytes.Equal(got, full) {
		t.Fatalf("full-capacity file read back as %d bytes, differs", len(got))
	}

	_, err = buildFAT12("CIDATA", []fatFile{{"user-data", append(full, 'x')}}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), fmt.Sprint(Capacity)) {
		t.Fatalf("one byte over capacity: err %v", err)
	}
	var many []fatFile
	for i := range 64 { // 64 × (1 long + 1 short entry) + the label > 128 root entries
		many = append(many, fatFile{fmt.Sprintf("file-%02d", i), nil})
	}
	if _, err := buildFAT12("CIDATA", many, time.Now()); err == nil || !strings.Contains(err.Error(), "root directory entries") {
		t.Fatalf("too many files: err %v", err)
	}
}

func TestWriteImageSeedTooLarge(t *testing.T) {
	s := Seed{InstanceID: "big", Hostname: "big", DNS: []string{"8.8.8.8"}}
	for i := range 2500 {
		s.NICs = append(s.NICs, NIC{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), IP: "10.0.0.2", Prefix: 8, Gateway: "10.0.0.1"})
	}
	path := filepath.Join(t.TempDir(), "cidata.img")
	err := WriteImage(path, s)
	if err == nil || !strings.Contains(err.Error(), "cloud-init seed too large") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("oversized seed: err %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("oversized seed left %s (%v)", path, err)
	}
}
