package disk

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestQcow2RefsReportsBackingAndDataFiles(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (qemu-utils)")
	}
	dir := t.TempDir()
	host := filepath.Join(dir, "host-file")
	if err := os.WriteFile(host, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	create := func(name string, opts ...string) string {
		p := filepath.Join(dir, name)
		args := append(append([]string{"create", "-q", "-f", "qcow2"}, opts...), p, "1M")
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
		return p
	}
	for _, c := range []struct {
		path              string
		backing, dataFile string
	}{
		{create("plain.qcow2"), "", ""},
		{create("backed.qcow2", "-F", "raw", "-b", host), host, ""},
		{create("data.qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw")), "", filepath.Join(dir, "data.raw")},
	} {
		backing, dataFile, err := Qcow2Refs(c.path)
		if err != nil || backing != c.backing || dataFile != c.dataFile {
			t.Errorf("%s: backing %q data file %q (%v), want %q %q", filepath.Base(c.path), backing, dataFile, err, c.backing, c.dataFile)
		}
	}
	// A raw file is never probed into something else: read as qcow2 it is an error.
	if _, _, err := Qcow2Refs(host); err == nil {
		t.Error("a raw file was read as qcow2")
	}
}
