package snapshot_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/snapshot/snaptest"
)

func TestValidateRefusesHostileManifests(t *testing.T) {
	cases := map[string]struct {
		edit func(m *snapshot.Manifest)
		want string
	}{
		"disk file traversal":  {func(m *snapshot.Manifest) { m.Disks[1].File = "../../../../etc/shadow" }, "not a disk payload name"},
		"disk file absolute":   {func(m *snapshot.Manifest) { m.Disks[1].File = "/etc/shadow" }, "not a disk payload name"},
		"disk file is state":   {func(m *snapshot.Manifest) { m.Disks[1].File = snaptest.FileState }, "not a disk payload name"},
		"disk without file":    {func(m *snapshot.Manifest) { m.Disks[1].File = "" }, "not a disk payload name"},
		"cow as cidata":        {func(m *snapshot.Manifest) { m.Disks[1].Role = snapshot.RoleCidata }, "cannot be a cidata disk"},
		"overlay in OCI":       {func(m *snapshot.Manifest) { m.Disks[1].File, m.Disks[1].Format = snapshot.FileOverlay, "qcow2" }, "cannot be a cow disk of an oci snapshot"},
		"raw declared qcow2":   {func(m *snapshot.Manifest) { m.Disks[1].Format = "qcow2" }, "is a raw disk"},
		"unknown format":       {func(m *snapshot.Manifest) { m.Disks[1].Format = "vmdk" }, "is a raw disk"},
		"unknown role":         {func(m *snapshot.Manifest) { m.Disks[1].Role = "swap" }, `role "swap"`},
		"writable layer":       {func(m *snapshot.Manifest) { m.Disks[0].ReadOnly = false }, "read-only"},
		"layer with a file":    {func(m *snapshot.Manifest) { m.Disks[0].File = snapshot.FileCOW }, "no file"},
		"layer by path":        {func(m *snapshot.Manifest) { m.Disks[0].Layer = "../../blobs/x" }, "64 hex digits"},
		"disk attached twice":  {func(m *snapshot.Manifest) { m.Disks = append(m.Disks, m.Disks[1]) }, "attached twice"},
		"no writable disk":     {func(m *snapshot.Manifest) { m.Disks = m.Disks[:1]; m.Files = m.Files[1:] }, "no writable"},
		"serial injection":     {func(m *snapshot.Manifest) { m.Disks[1].Serial = "a,drive=x" }, "serial"},
		"undeclared disk file": {func(m *snapshot.Manifest) { m.Files = m.Files[1:] }, "not declared in files"},
		"declared file unused": {func(m *snapshot.Manifest) { m.Disks = m.Disks[:1] }, "no disk uses it"},
		"file name traversal":  {func(m *snapshot.Manifest) { m.Files[0].Name = "../cow.raw" }, "not a snapshot payload name"},
		"file declared twice":  {func(m *snapshot.Manifest) { m.Files = append(m.Files, m.Files[0]) }, "declared twice"},
		"manifest as payload":  {func(m *snapshot.Manifest) { m.Files[0].Name = snapshot.ManifestName }, "not a snapshot payload name"},
		"missing digest":       {func(m *snapshot.Manifest) { m.Files[0].Digest = "" }, "digest"},
		"plain sha256 digest":  {func(m *snapshot.Manifest) { m.Files[0].Digest = "sha256:" + snaptest.BlobID }, "digest"},
		"no state":             {func(m *snapshot.Manifest) { m.Files = m.Files[:1] }, "no state file"},
		"unknown image type":   {func(m *snapshot.Manifest) { m.ImageKind = "iso" }, "image type"},
		"unknown platform":     {func(m *snapshot.Manifest) { m.Platform = "linux/riscv64" }, "platform"},
		"bad blob ID":          {func(m *snapshot.Manifest) { m.ImageBlobIDs = []string{"../x"} }, "blob ID"},
		"bad image digest":     {func(m *snapshot.Manifest) { m.ImageDigest = "sha256:../../x" }, "image digest"},
		"hypervisor name":      {func(m *snapshot.Manifest) { m.Hypervisor = "../qemu" }, "hypervisor"},
		"zero CPUs":            {func(m *snapshot.Manifest) { m.CPU = 0 }, "cpu 0"},
		"negative memory":      {func(m *snapshot.Manifest) { m.Memory = -1 }, "memory"},
		"MACs for NICs":        {func(m *snapshot.Manifest) { m.NICs = 2 }, "one MAC per NIC"},
		"multicast MAC":        {func(m *snapshot.Manifest) { m.MACs[0] = "01:00:5e:00:00:01" }, "unicast"},
		"network name":         {func(m *snapshot.Manifest) { m.Network = "../../etc/cni" }, "network"},
		"accel":                {func(m *snapshot.Manifest) { m.Accel = "kvm,kernel-irqchip=off" }, "accel"},
		"image ref newline":    {func(m *snapshot.Manifest) { m.Image = "x\ny" }, "control characters"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, m := snaptest.OCI(t)
			if err := m.Validate(); err != nil {
				t.Fatalf("the untouched manifest is refused: %v", err)
			}
			c.edit(m)
			if err := m.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestDiskFormatFollowsTheRole(t *testing.T) {
	for _, c := range []struct {
		d        snapshot.Disk
		format   string
		readOnly bool
	}{
		{snapshot.Disk{Role: snapshot.RoleCOW, File: snapshot.FileCOW, Format: "qcow2", ReadOnly: true}, "raw", false},
		{snapshot.Disk{Role: snapshot.RoleCOW, File: snapshot.FileOverlay, Format: "raw"}, "qcow2", false},
		{snapshot.Disk{Role: snapshot.RoleCidata, File: snapshot.FileCidata, Format: "qcow2"}, "raw", true},
		{snapshot.Disk{Role: snapshot.RoleLayer, File: snapshot.FileOverlay, Format: "qcow2"}, "raw", true},
	} {
		if f, ro := snapshot.DiskFormat(c.d), snapshot.DiskReadOnly(c.d); f != c.format || ro != c.readOnly {
			t.Errorf("%+v: format %s read-only %v, want %s %v", c.d, f, ro, c.format, c.readOnly)
		}
	}
}

func TestReadManifestChecksTheDirectory(t *testing.T) {
	cases := map[string]struct {
		edit func(t *testing.T, dir string, m *snapshot.Manifest) []byte
		want string
	}{
		"unknown field": {func(t *testing.T, _ string, m *snapshot.Manifest) []byte {
			data, _ := json.Marshal(m)
			return append(data[:len(data)-1], `,"disk_path":"/etc/shadow"}`...)
		}, "unknown field"},
		"two JSON values": {func(t *testing.T, _ string, m *snapshot.Manifest) []byte {
			data, _ := json.Marshal(m)
			return append(data, "{}"...)
		}, "more than one JSON value"},
		"old version": {func(t *testing.T, _ string, m *snapshot.Manifest) []byte {
			m.Version = 1
			data, _ := json.Marshal(m)
			return data
		}, "version 1 is not supported"},
		"size differs": {func(t *testing.T, _ string, m *snapshot.Manifest) []byte {
			m.Files[0].Size++
			data, _ := json.Marshal(m)
			return data
		}, "manifest declares"},
		"undeclared extra file": {func(t *testing.T, dir string, m *snapshot.Manifest) []byte {
			if err := os.WriteFile(filepath.Join(dir, snaptest.FileMemory), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(m)
			return data
		}, "undeclared file memory"},
		"payload is a symlink": {func(t *testing.T, dir string, m *snapshot.Manifest) []byte {
			p := filepath.Join(dir, snapshot.FileCOW)
			os.Remove(p)
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(m)
			return data
		}, "not a regular file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir, m := snaptest.OCI(t)
			data := c.edit(t, dir, m)
			if err := os.WriteFile(filepath.Join(dir, snapshot.ManifestName), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := snapshot.ReadManifest(dir); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadManifest = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// FuzzReadManifest: no manifest, however crafted, may panic the reader, and one it accepts
// names only fixed payload files that are in the directory.
func FuzzReadManifest(f *testing.F) {
	dir, good := snaptest.OCI(f) // ReadManifest only reads: one payload dir serves every input
	data, err := json.Marshal(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(strings.Replace(string(data), `"file":"cow.raw"`, `"file":"../../../../etc/shadow"`, 1)))
	f.Add([]byte(strings.Replace(string(data), `"format":"raw","file":"cow.raw"`, `"format":"qcow2","file":"cow.raw"`, 1)))
	f.Add([]byte(`{"version":2,"disks":[{"role":"cow","format":"raw","file":"/etc/shadow"}],"files":[{"name":"state"}]}`))
	f.Add([]byte("[]"))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(dir, snapshot.ManifestName), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := snapshot.ReadManifest(dir)
		if err != nil {
			return
		}
		for _, d := range m.Disks {
			if d.Role == snapshot.RoleLayer {
				continue
			}
			if !snapshot.Allowed(d.File) || d.File == snapshot.ManifestName || filepath.Base(d.File) != d.File {
				t.Fatalf("accepted disk file %q", d.File)
			}
			if _, err := os.Lstat(filepath.Join(dir, d.File)); err != nil {
				t.Fatalf("accepted disk file %q that is not in the snapshot: %v", d.File, err)
			}
		}
	})
}
