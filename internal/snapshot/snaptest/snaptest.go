// Package snaptest builds snapshot archives for tests the way another host (or an attacker)
// could: payload files and a manifest, any manifest, packed into a valid export archive.
package snaptest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/snapshot/archive"
)

// BlobID is the image blob the test snapshots are based on.
const BlobID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// MAC is the NIC address of the test snapshots.
const MAC = "02:00:00:00:00:0a"

// Names of the QEMU backend's state files (its hypervisor.Snapshotter.StateFile set), which
// the test snapshots carry; init declares them as the engine does for the registered backend.
const (
	FileState  = "state"
	FileMemory = "memory"
)

func init() {
	snapshot.DeclareStateFiles("qemu", func(name string) bool { return name == FileState || name == FileMemory })
}

// StateFile is a cocoon QEMU state file (qemu/statefile.go): a 4 KiB header, one JSON line
// padded with spaces, holding layout (raw JSON), then a stub migration stream.
func StateFile(t testing.TB, layout string) []byte {
	t.Helper()
	stream := []byte("QEVM\x00\x00\x00\x03 stub stream")
	hdr := `{"format":"cocoon-qemu-state","version":1,"stream_bytes":` + itoa(len(stream)) + `,"layout":` + layout + `}`
	if len(hdr) >= 4096 {
		t.Fatalf("state header of %d bytes does not fit", len(hdr))
	}
	buf := bytes.Repeat([]byte{' '}, 4096)
	copy(buf, hdr)
	buf[4095] = '\n'
	return append(buf, stream...)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// Layout is the device layout (JSON) of the test snapshots under TCG with RAM in the state
// stream, hotCPUs (a JSON array) hot-added; disks gives the number of disks.
func Layout(disks int, uefi bool, hotCPUs string) string {
	d := strings.TrimSuffix(strings.Repeat(`{"queues":1,"queue_size":512},`, disks), ",")
	if hotCPUs == "" {
		hotCPUs = "[]"
	}
	return `{"accel":"tcg","boot_cpus":1,"max_cpus":2,"hot_cpus":` + hotCPUs + `,"memory_bytes":268435456,` +
		`"ram":{"file":"/dev/shm/x","shared":false},"uefi":` + map[bool]string{true: "true", false: "false"}[uefi] +
		`,"balloon":false,"disks":[` + d + `],"nics":[{"mac":"` + MAC + `","queues":1,"queue_size":512}]}`
}

// OCI writes the payloads of a valid OCI-image snapshot into a new dir and returns it with
// its manifest (files declared).
func OCI(t testing.TB) (string, *snapshot.Manifest) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, FileState, StateFile(t, Layout(2, false, "")))
	cow := make([]byte, 1<<20)
	copy(cow[4096:], "guest data")
	write(t, dir, snapshot.FileCOW, cow)
	m := base("oci")
	m.Disks = []snapshot.Disk{
		{Role: snapshot.RoleLayer, Serial: "cocoon-layer0", Format: "raw", ReadOnly: true, Layer: BlobID},
		{Role: snapshot.RoleCOW, Serial: "cocoon-cow", Format: "raw", File: snapshot.FileCOW},
	}
	Declare(t, dir, m)
	return dir, m
}

// Cloud writes the payloads of a valid cloud-image snapshot (needs qemu-img) into a new dir
// and returns it with its manifest. Its overlay refers to a blob path of another host.
func Cloud(t testing.TB) (string, *snapshot.Manifest) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, FileState, StateFile(t, Layout(2, true, "")))
	Qcow2(t, filepath.Join(dir, snapshot.FileOverlay), "-F", "qcow2", "-b", "/var/lib/cocoon/cloudimg/blobs/"+BlobID+".qcow2", "-u")
	write(t, dir, snapshot.FileCidata, make([]byte, 64<<10))
	write(t, dir, snapshot.FileFirmware, bytes.Repeat([]byte{0x5a}, 128<<10))
	m := base("cloudimg")
	m.Disks = []snapshot.Disk{
		{Role: snapshot.RoleCOW, Format: "qcow2", File: snapshot.FileOverlay},
		{Role: snapshot.RoleCidata, Format: "raw", ReadOnly: true, File: snapshot.FileCidata},
	}
	Declare(t, dir, m)
	return dir, m
}

// Qcow2 creates a 1 MiB qcow2 image at path with extra qemu-img create options.
func Qcow2(t testing.TB, path string, opts ...string) {
	t.Helper()
	args := append(append([]string{"create", "-q", "-f", "qcow2"}, opts...), path, "1M")
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
}

func base(kind string) *snapshot.Manifest {
	return &snapshot.Manifest{Version: snapshot.ManifestVersion, Hypervisor: "qemu", CPU: 1, MaxCPU: 2,
		Memory: 256 << 20, Storage: 1 << 20, NICs: 1, MACs: []string{MAC}, Image: "example.com/tiny:1",
		ImageKind: kind, ImageBlobIDs: []string{BlobID}, Accel: "tcg"}
}

func write(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Declare lists every payload file of dir in m.Files with its size and digest.
func Declare(t testing.TB, dir string, m *snapshot.Manifest) {
	t.Helper()
	m.Files = nil
	for _, name := range payloads(t, dir) {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		digest, err := archive.FileDigest(p)
		if err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, snapshot.File{Name: name, Size: st.Size(), Digest: digest})
	}
}

// Pack writes m as the manifest of dir, unchecked, and returns an export archive of dir.
func Pack(t testing.TB, dir string, m *snapshot.Manifest) []byte {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, snapshot.ManifestName, data)
	var out bytes.Buffer
	files := append([]string{snapshot.ManifestName}, payloads(t, dir)...)
	if err := archive.Export(context.Background(), dir, files, &out, archive.ExportOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// payloads are the files of dir but the manifest, sorted.
func payloads(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != snapshot.ManifestName {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}
