package snapshot

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/snapshot/archive"
)

// A manifest may come from another host (snapshot import), and clone launches a hypervisor
// from it, so everything in it is checked against closed sets and bounds before use: a name
// that becomes a path is one of the fixed payload names, declared in Files; a disk's format
// and writability follow from its role and file, never from the manifest's say-so.

// Disk roles.
const (
	RoleLayer  = "layer"
	RoleCOW    = "cow"
	RoleCidata = "cidata"
	RoleData   = "data"
	RoleAgent  = "agent"
)

// Image kinds a snapshot can be taken from (image.Kind values).
const (
	kindOCI   = "oci"
	kindCloud = "cloudimg"
)

// diskPayload is what a disk payload file is: the role it serves and the format and
// writability that role has.
type diskPayload struct {
	role, format string
	readOnly     bool
	kind         string // the image kind whose VMs have this disk; "" for both
}

var diskPayloads = map[string]diskPayload{
	FileCOW:     {RoleCOW, "raw", false, kindOCI},
	FileOverlay: {RoleCOW, "qcow2", false, kindCloud},
	FileCidata:  {RoleCidata, "raw", true, kindCloud},
	FileAgent:   {RoleAgent, "raw", true, ""},
}

// Bounds on what a manifest may ask for; the backend checks its own tighter limits.
const (
	maxCPUs     = 1024
	maxMemory   = 16 << 40
	maxStorage  = 1 << 50
	maxNICs     = 64
	maxDisks    = 128
	maxQueue    = 1 << 16
	maxTextLen  = 4096
	maxExtra    = 32
	maxFileSize = 1 << 50
)

var (
	hexIDRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	serialRE    = regexp.MustCompile(`^[A-Za-z0-9._-]{0,20}$`)
	hypervRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	networkRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	imgDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	digestRE    = regexp.MustCompile(`^` + regexp.QuoteMeta(archive.DigestPrefix) + `[0-9a-f]{64}$`)
	extraKeyRE  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
)

// DiskFormat is the format the disk d is opened with: raw for layers and for the payloads
// named so, qcow2 only for the cloud overlay. It ignores d.Format.
func DiskFormat(d Disk) string {
	if isDataDisk(d) {
		return "raw"
	}
	if p, ok := diskPayloads[d.File]; ok && d.Role != RoleLayer {
		return p.format
	}
	return "raw"
}

// DiskReadOnly reports whether d is attached read-only: layers (shared by every VM of an
// image) and the cloud-init seed always are, whatever d.ReadOnly says.
func DiskReadOnly(d Disk) bool {
	if isDataDisk(d) {
		return false
	}
	if p, ok := diskPayloads[d.File]; ok && d.Role != RoleLayer {
		return p.readOnly
	}
	return true
}

// Validate checks the manifest's structure: closed sets for names, roles, formats and kinds,
// bounds for sizes and counts, and that every disk payload is declared in Files. Files must
// carry digests from manifest version 2 on. It does not look at the files (see ReadManifest).
func (m *Manifest) Validate() error {
	if err := m.validateMachine(); err != nil {
		return fmt.Errorf("invalid snapshot manifest: %w", err)
	}
	files, err := m.validateFiles()
	if err != nil {
		return fmt.Errorf("invalid snapshot manifest: %w", err)
	}
	if err := m.validateDisks(files); err != nil {
		return fmt.Errorf("invalid snapshot manifest: %w", err)
	}
	return nil
}

func (m *Manifest) validateMachine() error {
	switch {
	case !hypervRE.MatchString(m.Hypervisor):
		return fmt.Errorf("hypervisor %q is not a hypervisor name", m.Hypervisor)
	case m.CPU < 1 || m.CPU > maxCPUs:
		return fmt.Errorf("cpu %d is out of range 1-%d", m.CPU, maxCPUs)
	case m.MaxCPU < m.CPU || m.MaxCPU > maxCPUs:
		return fmt.Errorf("max_cpu %d is out of range %d-%d", m.MaxCPU, m.CPU, maxCPUs)
	case m.Memory < 1 || m.Memory > maxMemory:
		return fmt.Errorf("memory %d bytes is out of range", m.Memory)
	case m.Storage < 0 || m.Storage > maxStorage:
		return fmt.Errorf("storage %d bytes is out of range", m.Storage)
	case m.NICs < 0 || m.NICs > maxNICs || len(m.MACs) != m.NICs:
		return fmt.Errorf("%d NICs with %d MACs: need one MAC per NIC, at most %d", m.NICs, len(m.MACs), maxNICs)
	case m.QueueSize < 0 || m.QueueSize > maxQueue || m.DiskQueueSize < 0 || m.DiskQueueSize > maxQueue:
		return fmt.Errorf("queue sizes %d/%d are out of range", m.QueueSize, m.DiskQueueSize)
	case m.Network != "" && !networkRE.MatchString(m.Network):
		return fmt.Errorf("network %q is not a network name", m.Network)
	case m.Image == "" || !plainText(m.Image, 1024):
		return fmt.Errorf("image reference %q is empty, too long or holds control characters", m.Image)
	case m.ImageDigest != "" && !imgDigestRE.MatchString(m.ImageDigest):
		return fmt.Errorf("image digest %q is not sha256:<64 hex digits>", m.ImageDigest)
	case m.ImageKind != kindOCI && m.ImageKind != kindCloud:
		return fmt.Errorf("image type %q is not %s or %s", m.ImageKind, kindOCI, kindCloud)
	case m.Platform != "" && !slices.Contains(platform.All, m.Platform):
		return fmt.Errorf("platform %q is not one of %s", m.Platform, strings.Join(platform.All, ", "))
	case m.Accel != "" && m.Accel != "auto" && m.Accel != "kvm" && m.Accel != "tcg":
		return fmt.Errorf("accel %q is not auto, kvm or tcg", m.Accel)
	case !plainText(m.Cmdline, maxTextLen):
		return fmt.Errorf("kernel command line is too long or holds control characters")
	case len(m.Extra) > maxExtra:
		return fmt.Errorf("%d extra entries, at most %d", len(m.Extra), maxExtra)
	}
	for i, mac := range m.MACs {
		if hw, err := net.ParseMAC(mac); err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return fmt.Errorf("MAC %d %q is not a unicast Ethernet address", i, mac)
		}
	}
	for _, id := range m.ImageBlobIDs {
		if !hexIDRE.MatchString(id) {
			return fmt.Errorf("image blob ID %q is not 64 hex digits", id)
		}
	}
	for k, v := range m.Extra {
		if !extraKeyRE.MatchString(k) || !plainText(v, maxTextLen) {
			return fmt.Errorf("extra entry %q is not a plain key and value", k)
		}
	}
	return nil
}

// validateFiles checks the payload list and returns the declared names.
func (m *Manifest) validateFiles() (map[string]bool, error) {
	files := map[string]bool{}
	state := false
	for _, f := range m.Files {
		switch {
		case !allowedFor(m.Hypervisor, f.Name) || f.Name == ManifestName:
			return nil, fmt.Errorf("file %q is not a snapshot payload name of hypervisor %s", f.Name, m.Hypervisor)
		case files[f.Name]:
			return nil, fmt.Errorf("file %q is declared twice", f.Name)
		case f.Size < 0 || f.Size > maxFileSize:
			return nil, fmt.Errorf("file %s: size %d is out of range", f.Name, f.Size)
		case m.Version >= 2 && !digestRE.MatchString(f.Digest):
			return nil, fmt.Errorf("file %s: digest %q is not %s<64 hex digits>", f.Name, f.Digest, archive.DigestPrefix)
		}
		files[f.Name] = true
		state = state || isStateFile(m.Hypervisor, f.Name)
	}
	switch {
	case !state:
		return nil, fmt.Errorf("no state file of hypervisor %s: a snapshot needs its device state", m.Hypervisor)
	case m.ImageKind != kindCloud && files[FileFirmware]:
		return nil, fmt.Errorf("file %s belongs to cloud-image snapshots only", FileFirmware)
	}
	return files, nil
}

// validateDisks checks every disk against the payload table: layers name a blob, the others
// one declared payload file each, with the role, format and writability that file has.
func (m *Manifest) validateDisks(files map[string]bool) error {
	if len(m.Disks) > maxDisks {
		return fmt.Errorf("%d disks, at most %d", len(m.Disks), maxDisks)
	}
	used := map[string]bool{}
	layers := 0
	for i, d := range m.Disks {
		if !serialRE.MatchString(d.Serial) {
			return fmt.Errorf("disk %d: serial %q is not up to 20 letters, digits, '.', '_' or '-'", i, d.Serial)
		}
		if d.Role == RoleLayer {
			switch {
			case m.ImageKind != kindOCI:
				return fmt.Errorf("disk %d: layer disks belong to OCI-image snapshots only", i)
			case d.File != "" || !hexIDRE.MatchString(d.Layer):
				return fmt.Errorf("disk %d: a layer disk names its layer blob (64 hex digits) and no file", i)
			case d.Format != "raw" || !d.ReadOnly:
				return fmt.Errorf("disk %d: layer disks are raw and read-only", i)
			}
			layers++
			continue
		}
		if d.Role == RoleData {
			if err := d.validateData(); err != nil {
				return fmt.Errorf("disk %d: %w", i, err)
			}
		}
		p, ok := diskPayloads[d.File]
		if d.Role == RoleData {
			p, ok = diskPayload{RoleData, "raw", false, m.ImageKind}, true
		}
		switch {
		case d.Role != RoleCOW && d.Role != RoleCidata && d.Role != RoleData && d.Role != RoleAgent:
			return fmt.Errorf("disk %d: role %q is not %s, %s, %s, %s or %s", i, d.Role, RoleLayer, RoleCOW, RoleCidata, RoleData, RoleAgent)
		case !ok:
			return fmt.Errorf("disk %d: file %q is not a disk payload name (%s, %s or %s)", i, d.File, FileCOW, FileOverlay, FileCidata)
		case p.role != d.Role || p.kind != "" && p.kind != m.ImageKind:
			return fmt.Errorf("disk %d: file %s cannot be a %s disk of an %s snapshot", i, d.File, d.Role, m.ImageKind)
		case d.Format != p.format || d.ReadOnly != p.readOnly:
			return fmt.Errorf("disk %d: %s is a %s disk (read-only %v), the manifest says %q (read-only %v)",
				i, d.File, p.format, p.readOnly, d.Format, d.ReadOnly)
		case d.Layer != "":
			return fmt.Errorf("disk %d: a %s disk names no layer", i, d.Role)
		case used[d.File]:
			return fmt.Errorf("disk %d: file %s is attached twice", i, d.File)
		case !files[d.File]:
			return fmt.Errorf("disk %d: file %s is not declared in files", i, d.File)
		}
		used[d.File] = true
	}
	for name := range files {
		if (diskPayloads[name] != diskPayload{} || dataFileRE.MatchString(name)) && !used[name] {
			return fmt.Errorf("file %s is declared but no disk uses it", name)
		}
	}
	switch {
	case !used[FileCOW] && !used[FileOverlay]:
		return fmt.Errorf("no writable (%s) disk", RoleCOW)
	case m.ImageKind == kindOCI && layers == 0:
		return fmt.Errorf("an OCI-image snapshot needs its layer disks")
	}
	return nil
}

// isDataDisk reports whether d is a data disk with a well-formed payload name.
func isDataDisk(d Disk) bool { return d.Role == RoleData && dataFileRE.MatchString(d.File) }

// validateData holds a data disk to its naming rule (payload data-<serial>.raw) and its
// filesystem and mount point to what cloud-init may be given.
func (d Disk) validateData() error {
	switch {
	case d.File != "data-"+d.Serial+".raw" || !dataFileRE.MatchString(d.File):
		return fmt.Errorf("data disk %q must be a payload named data-<serial>.raw, got %q", d.Serial, d.File)
	case d.FSType != "ext4" && d.FSType != "none":
		return fmt.Errorf("data disk %q has fstype %q, not ext4 or none", d.Serial, d.FSType)
	case d.MountPoint != "" && (d.FSType == "none" || !filepath.IsAbs(d.MountPoint) || !plainText(d.MountPoint, maxTextLen) || strings.Contains(d.MountPoint, " ")):
		return fmt.Errorf("data disk %q has mount point %q: an absolute path without spaces, on an ext4 disk", d.Serial, d.MountPoint)
	}
	return nil
}

// plainText reports whether s is at most n bytes of printable text (no control characters).
func plainText(s string, n int) bool {
	return len(s) <= n && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
