package cloudhv

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Size bounds of the JSON state files: far above what CH writes, far below harm.
const (
	maxConfigSize = 1 << 20
	maxStateSize  = 64 << 20
)

// snapConfig is a parsed config.json: kept as raw JSON objects so fields this backend does
// not know survive the rewrite unchanged (CH adds fields between versions).
type snapConfig map[string]any

func readJSON(path string, limit int64) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a Cloud Hypervisor state file", path, limit)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", path, err)
	}
	return m, nil
}

func (c snapConfig) obj(key string) map[string]any { m, _ := c[key].(map[string]any); return m }

func (c snapConfig) list(key string) []map[string]any {
	raw, _ := c[key].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, e := range raw {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
	return out
}

func num(m map[string]any, key string) int64   { f, _ := m[key].(float64); return int64(f) }
func str(m map[string]any, key string) string  { s, _ := m[key].(string); return s }
func boolOf(m map[string]any, key string) bool { b, _ := m[key].(bool); return b }

// memory is the guest RAM the snapshot holds: boot RAM plus what was hot-added.
func (c snapConfig) memory() int64 {
	m := c.obj("memory")
	return num(m, "size") + num(m, "hotplugged_size")
}

// check holds the saved config to what src recorded and to the shapes this backend can
// rewrite; it does not look at host paths (rewrite replaces them, pathsOK checks the result).
func (c snapConfig) check(src hypervisor.SnapshotSource) error {
	cpus, mem := c.obj("cpus"), c.obj("memory")
	switch {
	case cpus == nil || mem == nil || c.obj("payload") == nil:
		return fmt.Errorf("config.json lacks cpus, memory or payload")
	case num(cpus, "boot_vcpus") != int64(src.CPUs):
		return fmt.Errorf("config.json has %d vCPUs, the snapshot record %d", num(cpus, "boot_vcpus"), src.CPUs)
	case num(cpus, "max_vcpus") < num(cpus, "boot_vcpus"):
		return fmt.Errorf("config.json has max_vcpus %d below boot_vcpus %d", num(cpus, "max_vcpus"), num(cpus, "boot_vcpus"))
	case c.memory() != src.MemoryBytes:
		return fmt.Errorf("config.json has %d bytes of memory, the snapshot record %d", c.memory(), src.MemoryBytes)
	}
	if zones, _ := mem["zones"].([]any); len(zones) > 0 {
		return fmt.Errorf("config.json has memory zones, which cocoon never configures")
	}
	nets := c.list("net")
	if len(nets) != len(src.MACs) {
		return fmt.Errorf("config.json has %d NICs, the snapshot record %d", len(nets), len(src.MACs))
	}
	for i, n := range nets {
		switch {
		case n == nil || str(n, "id") == "":
			return fmt.Errorf("config.json NIC %d has no device id", i)
		case !strings.EqualFold(str(n, "mac"), src.MACs[i]):
			return fmt.Errorf("config.json NIC %d has MAC %q, the snapshot record %q", i, str(n, "mac"), src.MACs[i])
		case boolOf(n, "vhost_user"):
			return fmt.Errorf("config.json NIC %d is vhost-user, which cocoon never configures", i)
		}
	}
	for i, d := range c.list("disks") {
		if d == nil || str(d, "path") == "" || boolOf(d, "vhost_user") {
			return fmt.Errorf("config.json disk %d is not a plain disk image", i)
		}
	}
	// Devices cocoon never attaches: each would name a host path or device.
	for _, k := range []string{"fs", "pmem", "devices", "user_devices", "vdpa", "generic_vhost_user", "tpm", "landlock_rules", "numa"} {
		if v, ok := c[k]; ok && v != nil {
			if l, isList := v.([]any); !isList || len(l) > 0 {
				return fmt.Errorf("config.json has %s, which cocoon never configures", k)
			}
		}
	}
	return nil
}

// consoleModes are the serial and console modes a VM booted like s has (buildArgs).
func consoleModes(s hypervisor.VMSpec) (serial, console string) {
	if s.Boot.Firmware != "" {
		return "Socket", "Off"
	}
	return "Off", "Pty"
}

// rewrite points every host path in the saved config at spec's own files: payload, disks by
// index, TAPs, console sockets, the vsock socket. It returns the old→new disk path map. Disks
// of spec beyond the saved ones are not in the config: they are hot-added after the restore.
func (c snapConfig) rewrite(spec hypervisor.VMSpec) (map[string]string, error) {
	payload := map[string]any{}
	if spec.Boot.Firmware != "" {
		payload["firmware"] = spec.Boot.Firmware
	} else {
		payload["kernel"] = spec.Boot.Kernel
		if spec.Boot.Initrd != "" {
			payload["initramfs"] = spec.Boot.Initrd
		}
		if spec.Boot.Cmdline != "" {
			payload["cmdline"] = spec.Boot.Cmdline
		}
	}
	c["payload"] = payload

	disks := c.list("disks")
	if len(disks) > len(spec.Disks) {
		return nil, fmt.Errorf("the snapshot has %d disks, the VM %d: disks cannot be removed", len(disks), len(spec.Disks))
	}
	moved := map[string]string{}
	for i, d := range disks {
		nd := spec.Disks[i]
		if boolOf(d, "readonly") != nd.ReadOnly {
			return nil, fmt.Errorf("snapshot disk %d readonly=%v, the VM's %s readonly=%v", i, boolOf(d, "readonly"), nd.Path, nd.ReadOnly)
		}
		moved[str(d, "path")] = nd.Path
		// num_queues stays: the saved virtio queues must match (CH fails the restore otherwise).
		d["path"], d["direct"], d["queue_size"] = nd.Path, nd.DirectIO, diskQueueSize(spec)
	}
	// The restore opens NIC i on this VM's own TAP i. Left as saved, the config would name
	// the source VM's TAPs: the real CH opens a TAP by name with TUNSETIFF, which (with
	// CAP_NET_ADMIN) creates a throw-away TAP when no such name exists in its netns, fails
	// without that capability, and attaches an extra queue to the source's own TAP when both
	// run in one netns. Naming the clone's TAP avoids all three. TAP fds saved by a cold boot
	// are serialised as -1 by CH and cannot be restored: they become names too.
	for i, n := range c.list("net") {
		if i >= len(spec.NICs) || spec.NICs[i].TapName == "" {
			return nil, fmt.Errorf("the snapshot has %d NICs: the VM needs a TAP name for each", len(c.list("net")))
		}
		delete(n, "fds")
		n["tap"] = spec.NICs[i].TapName
	}
	serial, console := consoleModes(spec)
	for key, want := range map[string]string{"serial": serial, "console": console} {
		if got := str(c.obj(key), "mode"); got != want {
			return nil, fmt.Errorf("the snapshot's %s is %q, a VM booted like this one has %q", key, got, want)
		}
	}
	c["serial"] = map[string]any{"mode": serial}
	if serial == "Socket" {
		c["serial"] = map[string]any{"mode": serial, "socket": serialPath(spec.RunDir)}
	}
	// A PTY console gets a new PTY: the saved path was the source's.
	c["console"] = map[string]any{"mode": console}
	if v := c.obj("vsock"); v != nil {
		v["socket"] = vsockPath(spec.RunDir)
	}
	if r := c.obj("rng"); r != nil {
		r["src"] = "/dev/urandom"
	}
	return moved, nil
}

// pathsOK refuses any string left in the config that looks like a host path and is not one
// rewrite put there: a field this backend does not rewrite must not steer CH at a file.
func pathsOK(v any, where string, allowed []string) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if err := pathsOK(e, where+"."+k, allowed); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := pathsOK(e, fmt.Sprintf("%s[%d]", where, i), allowed); err != nil {
				return err
			}
		}
	case string:
		if strings.Contains(x, "/") && !slices.Contains(allowed, x) {
			return fmt.Errorf("%s names %q, which cocoon does not rewrite", where, x)
		}
	}
	return nil
}

// allowedPaths are the strings rewrite may leave in a config for spec.
func allowedPaths(spec hypervisor.VMSpec) []string {
	p := []string{spec.Boot.Kernel, spec.Boot.Initrd, spec.Boot.Cmdline, spec.Boot.Firmware, "/dev/urandom",
		serialPath(spec.RunDir), vsockPath(spec.RunDir)}
	for _, d := range spec.Disks {
		p = append(p, d.Path)
	}
	return p
}

// patchState replaces saved disk paths in state.json (under keys "path" or "disk_path") by
// the clone's; CH restores devices from config.json, so this only keeps the file truthful.
func patchState(v any, moved map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "path" || k == "disk_path") {
				if n, ok := moved[s]; ok {
					x[k] = n
				}
				continue
			}
			patchState(e, moved)
		}
	case []any:
		for _, e := range x {
			patchState(e, moved)
		}
	}
}

// CheckState implements hypervisor.Snapshotter for a snapshot that may come from another
// host: the three files exist with sane sizes and shapes and agree with src, and no field
// this backend does not rewrite names a host path.
func (b *Backend) CheckState(src hypervisor.SnapshotSource) error {
	_, err := loadSnapshot(src)
	return err
}

// loadSnapshot reads and checks src's config.json and state.json.
func loadSnapshot(src hypervisor.SnapshotSource) (snapState, error) {
	var s snapState
	cfg, err := readJSON(filepath.Join(src.Dir, configFile), maxConfigSize)
	if err != nil {
		return s, fmt.Errorf("snapshot state: %w", err)
	}
	s.config = cfg
	if err := s.config.check(src); err != nil {
		return s, fmt.Errorf("snapshot state: %w", err)
	}
	if s.state, err = readJSON(filepath.Join(src.Dir, stateFile), maxStateSize); err != nil {
		return s, fmt.Errorf("snapshot state: %w", err)
	}
	st, err := os.Lstat(filepath.Join(src.Dir, memoryFile))
	switch {
	case err != nil:
		return s, fmt.Errorf("snapshot state: %w", err)
	case !st.Mode().IsRegular():
		return s, fmt.Errorf("snapshot state: %s is not a regular file", memoryFile)
	case st.Size() > src.MemoryBytes:
		return s, fmt.Errorf("snapshot state: %s holds %d bytes, more than the VM's %d bytes of memory", memoryFile, st.Size(), src.MemoryBytes)
	}
	// A rewrite for a neutral spec shows whether any field outside the rewritten ones names a
	// path; the real rewrite for the clone's spec is checked the same way before launch.
	probe := snapConfig(cloneJSON(cfg))
	neutral := neutralSpec(probe)
	if _, err := probe.rewrite(neutral); err != nil {
		return s, fmt.Errorf("snapshot state: %w", err)
	}
	if err := pathsOK(map[string]any(probe), "config.json", allowedPaths(neutral)); err != nil {
		return s, fmt.Errorf("snapshot state: %w", err)
	}
	return s, nil
}

type snapState struct {
	config snapConfig
	state  map[string]any
}

// neutralSpec is a spec shaped like the saved config (same boot mode, disks, NICs) whose
// paths are all placeholders.
func neutralSpec(c snapConfig) hypervisor.VMSpec {
	s := hypervisor.VMSpec{RunDir: "/nonexistent/run"}
	if str(c.obj("payload"), "firmware") != "" {
		s.Boot.Firmware = "/nonexistent/firmware"
	} else {
		s.Boot = hypervisor.Boot{Kernel: "/nonexistent/kernel", Initrd: "/nonexistent/initrd", Cmdline: "/nonexistent/cmdline"}
	}
	for i, d := range c.list("disks") {
		s.Disks = append(s.Disks, hypervisor.Disk{Path: fmt.Sprintf("/nonexistent/disk%d", i), ReadOnly: boolOf(d, "readonly")})
	}
	for i := range c.list("net") {
		s.NICs = append(s.NICs, hypervisor.NIC{TapName: fmt.Sprintf("tap%d", i)})
	}
	return s
}

func cloneJSON(m map[string]any) map[string]any {
	data, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}
