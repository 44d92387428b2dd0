package disk

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	units "github.com/docker/go-units"
)

// DataDisk is one extra writable disk (`--data-disk`), normalised: a sparse raw file whose
// virtio serial is Name, formatted ext4 unless FSType is "none".
type DataDisk struct {
	Name   string
	Size   int64
	FSType string // ext4 | none
	// MountPoint is where cloud-init mounts it in cloud images; empty: not mounted.
	MountPoint string
	DirectIO   *bool // nil: auto (O_DIRECT unless --no-direct-io or unsupported)
}

// Data disk bounds.
const (
	MinDataDiskSize = 16 << 20
	MaxDataDisks    = 8
)

// DataDiskNameRE is the rule for data disk names, which are also their virtio serials (≤ 20
// bytes) and part of their file names (data-<name>.raw).
var DataDiskNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,19}$`)

// DataDiskFile is the file name of data disk name in a run or snapshot directory.
func DataDiskFile(name string) string { return "data-" + name + ".raw" }

// ParseDataDisks parses repeated `--data-disk` values
// (size=SIZE[,name=NAME][,fstype=ext4|none][,mount=/path][,directio=on|off|auto]) and
// normalises them: missing names become data1, data2, … (skipping names used explicitly);
// ext4 disks without mount= are mounted at /mnt/<name>; an empty mount= disables mounting.
func ParseDataDisks(specs []string) ([]DataDisk, error) {
	if len(specs) > MaxDataDisks {
		return nil, fmt.Errorf("--data-disk: %d disks given, at most %d are supported", len(specs), MaxDataDisks)
	}
	var out []DataDisk
	mountSet := make([]bool, len(specs))
	used := map[string]bool{}
	for i, s := range specs {
		d, hasMount, err := parseDataDisk(s)
		if err != nil {
			return nil, err
		}
		if d.Name != "" {
			if used[d.Name] {
				return nil, fmt.Errorf("--data-disk: name %q duplicated: each data disk needs its own name", d.Name)
			}
			used[d.Name] = true
		}
		if d.FSType == "none" && d.MountPoint != "" {
			return nil, fmt.Errorf("--data-disk %d: fstype=none requires empty mount (the guest cannot mount an unformatted disk)", i+1)
		}
		mountSet[i] = hasMount
		out = append(out, d)
	}
	next := 1
	for i := range out {
		if out[i].Name == "" {
			for used[fmt.Sprintf("data%d", next)] {
				next++
			}
			out[i].Name = fmt.Sprintf("data%d", next)
			used[out[i].Name] = true
		}
		if out[i].FSType == "ext4" && !mountSet[i] {
			out[i].MountPoint = "/mnt/" + out[i].Name
		}
	}
	return out, CheckDataDisks(out)
}

func parseDataDisk(s string) (d DataDisk, hasMount bool, err error) {
	if strings.TrimSpace(s) == "" {
		return d, false, fmt.Errorf("--data-disk: empty spec: use size=SIZE[,name=NAME][,fstype=ext4|none][,mount=/path][,directio=on|off|auto]")
	}
	d.FSType = "ext4"
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return d, false, fmt.Errorf("--data-disk: %q is not key=value", kv)
		}
		if seen[k] {
			return d, false, fmt.Errorf("--data-disk: key %q given twice in %q", k, s)
		}
		seen[k] = true
		switch k {
		case "size":
			n, perr := units.RAMInBytes(v)
			if perr != nil || n <= 0 {
				return d, false, fmt.Errorf("--data-disk: invalid size %q: use a size like 64M or 10G", v)
			}
			if n < MinDataDiskSize {
				return d, false, fmt.Errorf("--data-disk: size %s below 16MiB minimum", v)
			}
			d.Size = n
		case "name":
			d.Name = v
			if err := checkDataDiskName(v); err != nil {
				return d, false, err
			}
		case "fstype":
			if v != "ext4" && v != "none" {
				return d, false, fmt.Errorf("--data-disk: unsupported fstype %q (only ext4, none)", v)
			}
			d.FSType = v
		case "mount":
			d.MountPoint, hasMount = v, true
		case "directio":
			on, off := true, false
			switch v {
			case "on":
				d.DirectIO = &on
			case "off":
				d.DirectIO = &off
			case "auto":
			default:
				return d, false, fmt.Errorf("--data-disk: directio must be on/off/auto, got %q", v)
			}
		default:
			return d, false, fmt.Errorf("--data-disk: unknown key %q (use size, name, fstype, mount, directio)", k)
		}
	}
	if d.Size == 0 {
		return d, false, fmt.Errorf("--data-disk: size= required in %q", s)
	}
	return d, hasMount, nil
}

func checkDataDiskName(name string) error {
	if !DataDiskNameRE.MatchString(name) || strings.HasPrefix(name, "cocoon-") {
		return fmt.Errorf("--data-disk: invalid name %q (must match [a-z][a-z0-9_-]{0,19}, no cocoon- prefix)", name)
	}
	return nil
}

// CheckDataDisks validates normalised data disks (as ParseDataDisks returns them, or as a
// library caller builds them).
func CheckDataDisks(disks []DataDisk) error {
	if len(disks) > MaxDataDisks {
		return fmt.Errorf("--data-disk: %d disks given, at most %d are supported", len(disks), MaxDataDisks)
	}
	names := map[string]bool{}
	for i, d := range disks {
		if err := checkDataDiskName(d.Name); err != nil {
			return err
		}
		if names[d.Name] {
			return fmt.Errorf("--data-disk: name %q duplicated: each data disk needs its own name", d.Name)
		}
		names[d.Name] = true
		switch {
		case d.Size < MinDataDiskSize:
			return fmt.Errorf("--data-disk: size %d bytes below 16MiB minimum", d.Size)
		case d.FSType != "ext4" && d.FSType != "none":
			return fmt.Errorf("--data-disk: unsupported fstype %q (only ext4, none)", d.FSType)
		case d.FSType == "none" && d.MountPoint != "":
			return fmt.Errorf("--data-disk %d: fstype=none requires empty mount (the guest cannot mount an unformatted disk)", i+1)
		case d.MountPoint != "" && (!filepath.IsAbs(d.MountPoint) || filepath.Clean(d.MountPoint) == "/" ||
			strings.ContainsFunc(d.MountPoint, func(r rune) bool { return r <= ' ' || r == 0x7f })):
			return fmt.Errorf("--data-disk: mount %q must be an absolute path other than / without spaces or control characters", d.MountPoint)
		}
	}
	return nil
}
