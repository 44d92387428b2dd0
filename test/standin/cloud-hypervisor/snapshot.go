package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Snapshot files, as CH names them.
const (
	configFile = "config.json"
	stateFile  = "state.json"
	memoryFile = "memory-ranges"
)

// savedState is the stand-in's state.json: enough to check a restore against the config.
type savedState struct {
	Standin   string   `json:"standin"`
	VcpuCount int      `json:"vcpu_count"`
	Memory    int64    `json:"memory"`
	Devices   []string `json:"devices"`
	DiskPaths []string `json:"disk_paths"`
}

func fileURL(u string) (string, error) {
	p, ok := strings.CutPrefix(u, "file://")
	if !ok || !filepath.IsAbs(p) {
		return "", fail(http.StatusInternalServerError, "unsupported URL %q: only file:///<dir> is supported", u)
	}
	return p, nil
}

// snapshot writes config.json, state.json and a memory-ranges file the size of guest RAM.
// Like CH it needs a paused VM and an existing directory.
func (v *vmm) snapshot(body []byte) (any, error) {
	var req struct {
		DestinationURL string `json:"destination_url"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	dir, err := fileURL(req.DestinationURL)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil {
		return nil, errNoVM
	}
	if v.state != "Paused" {
		return nil, fail(http.StatusInternalServerError, "snapshot needs a paused VM: it is %s", v.state)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fail(http.StatusInternalServerError, "snapshot destination %s is not a directory", dir)
	}
	saved := *v.cfg
	for i := range saved.Net {
		if n := len(saved.Net[i].Fds); n > 0 {
			// CH serialises fd NICs with invalid fds.
			saved.Net[i].Fds = make([]int, n)
			for j := range saved.Net[i].Fds {
				saved.Net[i].Fds[j] = -1
			}
		}
	}
	st := savedState{Standin: "cloud-hypervisor", VcpuCount: saved.Cpus.BootVcpus, Memory: saved.Memory.Size + saved.Memory.HotpluggedSize}
	for _, d := range saved.Disks {
		st.Devices, st.DiskPaths = append(st.Devices, d.ID), append(st.DiskPaths, d.Path)
	}
	for _, n := range saved.Net {
		st.Devices = append(st.Devices, n.ID)
	}
	if err := writeJSONFile(filepath.Join(dir, configFile), saved); err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(dir, stateFile), st); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, memoryFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		err = f.Truncate(st.Memory)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return nil, fail(http.StatusInternalServerError, "write memory: %v", err)
	}
	return nil, nil
}

// restore is vm.restore into a VMM started without a VM: the files must be there and
// agree, every disk and TAP they name must open; the VM comes back paused.
func (v *vmm) restore(body []byte) (any, error) {
	var req struct {
		SourceURL         string `json:"source_url"`
		MemoryRestoreMode string `json:"memory_restore_mode"`
		Resume            bool   `json:"resume"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	dir, err := fileURL(req.SourceURL)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg != nil {
		return nil, fail(http.StatusNotFound, "a VM is already created")
	}
	var c vmConfig
	var st savedState
	if err := readJSONFile(filepath.Join(dir, configFile), &c); err != nil {
		return nil, err
	}
	if err := readJSONFile(filepath.Join(dir, stateFile), &st); err != nil {
		return nil, err
	}
	mem, err := os.Stat(filepath.Join(dir, memoryFile)) // follows the clone's link
	switch {
	case err != nil:
		return nil, fail(http.StatusInternalServerError, "restore: cannot open %s: %v", memoryFile, err)
	case mem.Size() != c.Memory.Size+c.Memory.HotpluggedSize || st.Memory != mem.Size():
		return nil, fail(http.StatusInternalServerError, "restore: %s holds %d bytes, the config %d", memoryFile, mem.Size(), c.Memory.Size+c.Memory.HotpluggedSize)
	case st.VcpuCount != c.Cpus.BootVcpus:
		return nil, fail(http.StatusInternalServerError, "restore: state has %d vCPUs, config %d", st.VcpuCount, c.Cpus.BootVcpus)
	case len(st.Devices) != len(c.Disks)+len(c.Net):
		return nil, fail(http.StatusInternalServerError, "restore: state has %d devices, config %d", len(st.Devices), len(c.Disks)+len(c.Net))
	}
	for _, p := range []string{c.Payload.Kernel, c.Payload.Initramfs, c.Payload.Firmware} {
		if p != "" && !exists(p) {
			return nil, fail(http.StatusInternalServerError, "restore: cannot open payload %s", p)
		}
	}
	for i, d := range c.Disks {
		if err := d.check(); err != nil {
			return nil, fail(http.StatusInternalServerError, "restore: %v", err)
		}
		if d.NumQueues < 1 {
			return nil, fail(http.StatusInternalServerError, "restore: disk %d has no queues", i)
		}
	}
	for _, n := range c.Net {
		for _, fd := range n.Fds {
			if fd < 0 {
				return nil, fail(http.StatusInternalServerError, "restore: NIC %s has invalid fd %d (fds cannot be restored from config.json)", n.ID, fd)
			}
		}
		if err := n.open(); err != nil {
			return nil, fail(http.StatusInternalServerError, "restore: %v", err)
		}
	}
	con, err := openConsole(&c)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, "restore: %v", err)
	}
	if v.vsock, err = openVsock(&c); err != nil {
		con.close()
		return nil, fail(http.StatusInternalServerError, "restore: %v", err)
	}
	v.cfg, v.console, v.state = &c, con, "Paused"
	v.nextID["_disk"], v.nextID["_net"] = maxID(c, "_disk"), maxID(c, "_net")
	if req.Resume {
		v.state = "Running"
	}
	con.banner("restored (memory " + strings.ToLower(or(req.MemoryRestoreMode, "Copy")) + ")")
	return nil, nil
}

// maxID is the next free id number for prefix after the restored devices.
func maxID(c vmConfig, prefix string) int {
	next := 0
	var ids []string
	for _, d := range c.Disks {
		ids = append(ids, d.ID)
	}
	for _, n := range c.Net {
		ids = append(ids, n.ID)
	}
	for _, id := range ids {
		var n int
		if _, err := fmt.Sscanf(id, prefix+"%d", &n); err == nil && n+1 > next {
			next = n + 1
		}
	}
	return next
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.WriteFile(path, data, 0o600)
	}
	if err != nil {
		return fail(http.StatusInternalServerError, "write %s: %v", path, err)
	}
	return nil
}

func readJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(http.StatusInternalServerError, "restore: cannot read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fail(http.StatusInternalServerError, "restore: %s: %v", path, err)
	}
	return nil
}
