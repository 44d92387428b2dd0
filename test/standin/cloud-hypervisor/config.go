package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// vmConfig is Cloud Hypervisor's VmConfig as vm.info reports it and config.json saves it
// (the fields cocoon uses; CH writes more).
type vmConfig struct {
	Cpus     cpusConfig     `json:"cpus"`
	Memory   memoryConfig   `json:"memory"`
	Payload  payloadConfig  `json:"payload"`
	Disks    []diskConfig   `json:"disks,omitempty"`
	Net      []netConfig    `json:"net,omitempty"`
	Rng      rngConfig      `json:"rng"`
	Balloon  *balloonConfig `json:"balloon,omitempty"`
	Serial   consoleConfig  `json:"serial"`
	Console  consoleConfig  `json:"console"`
	Vsock    *vsockConfig   `json:"vsock,omitempty"`
	Watchdog bool           `json:"watchdog"`
}

type cpusConfig struct {
	BootVcpus int  `json:"boot_vcpus"`
	MaxVcpus  int  `json:"max_vcpus"`
	KvmHyperv bool `json:"kvm_hyperv"`
}

type memoryConfig struct {
	Size           int64  `json:"size"`
	HotplugSize    int64  `json:"hotplug_size,omitempty"`
	HotpluggedSize int64  `json:"hotplugged_size,omitempty"`
	HotplugMethod  string `json:"hotplug_method"`
	Shared         bool   `json:"shared"`
	Hugepages      bool   `json:"hugepages"`
}

type payloadConfig struct {
	Firmware  string `json:"firmware,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	Initramfs string `json:"initramfs,omitempty"`
}

type diskConfig struct {
	Path         string `json:"path"`
	Readonly     bool   `json:"readonly"`
	Direct       bool   `json:"direct"`
	NumQueues    int    `json:"num_queues"`
	QueueSize    int    `json:"queue_size"`
	ID           string `json:"id"`
	Serial       string `json:"serial,omitempty"`
	BackingFiles bool   `json:"backing_files"`
	Sparse       bool   `json:"sparse"`
	ImageType    string `json:"image_type,omitempty"`
}

// netConfig.Fds is what CH serialises for NICs given as fds: one -1 per fd (an fd number means
// nothing to a later process), so such a NIC cannot be restored from config.json as saved.
type netConfig struct {
	Tap         string `json:"tap,omitempty"`
	Mac         string `json:"mac"`
	Mtu         int    `json:"mtu,omitempty"`
	NumQueues   int    `json:"num_queues"`
	QueueSize   int    `json:"queue_size"`
	ID          string `json:"id"`
	Fds         []int  `json:"fds,omitempty"`
	OffloadTso  bool   `json:"offload_tso"`
	OffloadUfo  bool   `json:"offload_ufo"`
	OffloadCsum bool   `json:"offload_csum"`
}

type rngConfig struct {
	Src string `json:"src"`
}

type balloonConfig struct {
	ID                string `json:"id,omitempty"`
	Size              int64  `json:"size"`
	DeflateOnOom      bool   `json:"deflate_on_oom"`
	FreePageReporting bool   `json:"free_page_reporting"`
}

type consoleConfig struct {
	Mode   string `json:"mode"`
	File   string `json:"file,omitempty"`
	Socket string `json:"socket,omitempty"`
}

type vsockConfig struct {
	Cid    int    `json:"cid"`
	Socket string `json:"socket"`
	ID     string `json:"id,omitempty"`
}

// buildConfig turns parsed options into a VmConfig, refusing what CH would refuse.
func buildConfig(vals map[string]string, multi map[string][]string, flags map[string]bool) (*vmConfig, error) {
	c := &vmConfig{Cpus: cpusConfig{BootVcpus: 1, MaxVcpus: 1}, Memory: memoryConfig{Size: 512 << 20, HotplugMethod: "Acpi"},
		Rng: rngConfig{Src: "/dev/urandom"}, Serial: consoleConfig{Mode: "Null"}, Console: consoleConfig{Mode: "Tty"},
		Watchdog: flags["--watchdog"]}
	if v, ok := vals["--cpus"]; ok {
		kv, _ := parseKV("--cpus", v, valueOpts["--cpus"])
		var err error
		if kv["boot"] != "" {
			if c.Cpus.BootVcpus, err = parseUint("--cpus", "boot", kv["boot"]); err != nil {
				return nil, err
			}
		}
		c.Cpus.MaxVcpus = c.Cpus.BootVcpus
		if kv["max"] != "" {
			if c.Cpus.MaxVcpus, err = parseUint("--cpus", "max", kv["max"]); err != nil {
				return nil, err
			}
		}
		if kv["kvm_hyperv"] != "" {
			if c.Cpus.KvmHyperv, err = parseBool("--cpus", "kvm_hyperv", kv["kvm_hyperv"]); err != nil {
				return nil, err
			}
		}
		if c.Cpus.BootVcpus < 1 || c.Cpus.MaxVcpus < c.Cpus.BootVcpus {
			return nil, fmt.Errorf("error validating configuration: max CPUs (%d) lower than boot CPUs (%d)", c.Cpus.MaxVcpus, c.Cpus.BootVcpus)
		}
	}
	if v, ok := vals["--memory"]; ok {
		if err := c.Memory.parse(v); err != nil {
			return nil, err
		}
	}
	c.Payload = payloadConfig{Firmware: vals["--firmware"], Kernel: vals["--kernel"], Cmdline: vals["--cmdline"], Initramfs: vals["--initramfs"]}
	if c.Payload.Firmware != "" && c.Payload.Kernel != "" {
		return nil, fmt.Errorf("error validating configuration: --kernel and --firmware are exclusive")
	}
	for _, p := range []string{c.Payload.Firmware, c.Payload.Kernel, c.Payload.Initramfs} {
		if p != "" && !exists(p) {
			return nil, fmt.Errorf("error booting VM: cannot open payload file %s", p)
		}
	}
	for i, v := range multi["--disk"] {
		d, err := parseDisk(v, i)
		if err != nil {
			return nil, err
		}
		c.Disks = append(c.Disks, d)
	}
	for i, v := range multi["--net"] {
		n, err := parseNet(v, i)
		if err != nil {
			return nil, err
		}
		c.Net = append(c.Net, n)
	}
	if v, ok := vals["--rng"]; ok {
		kv, _ := parseKV("--rng", v, valueOpts["--rng"])
		c.Rng.Src = kv["src"]
		if !exists(c.Rng.Src) {
			return nil, fmt.Errorf("error booting VM: cannot open rng source %s", c.Rng.Src)
		}
	}
	if v, ok := vals["--balloon"]; ok {
		b, err := parseBalloon(v)
		if err != nil {
			return nil, err
		}
		if b.Size >= c.Memory.Size {
			return nil, fmt.Errorf("error validating configuration: balloon size %d is not below memory size %d", b.Size, c.Memory.Size)
		}
		c.Balloon = b
	}
	var err error
	if c.Serial, err = parseConsole("--serial", vals["--serial"], c.Serial); err != nil {
		return nil, err
	}
	if c.Console, err = parseConsole("--console", vals["--console"], c.Console); err != nil {
		return nil, err
	}
	if c.Console.Mode == "Socket" {
		return nil, fmt.Errorf("error parsing --console: socket mode is only for --serial")
	}
	if v, ok := vals["--vsock"]; ok {
		kv, _ := parseKV("--vsock", v, valueOpts["--vsock"])
		cid, err := parseUint("--vsock", "cid", kv["cid"])
		if err != nil || cid < 3 || kv["socket"] == "" {
			return nil, fmt.Errorf("error parsing --vsock: cid ≥ 3 and socket= are required, got %q", v)
		}
		c.Vsock = &vsockConfig{Cid: cid, Socket: kv["socket"], ID: "_vsock0"}
	}
	return c, nil
}

func (m *memoryConfig) parse(v string) error {
	kv, _ := parseKV("--memory", v, valueOpts["--memory"])
	var err error
	if kv["size"] != "" {
		if m.Size, err = parseSize("--memory", "size", kv["size"]); err != nil {
			return err
		}
	}
	if kv["hotplug_size"] != "" {
		if m.HotplugSize, err = parseSize("--memory", "hotplug_size", kv["hotplug_size"]); err != nil {
			return err
		}
	}
	switch kv["hotplug_method"] {
	case "", "acpi":
	case "virtio-mem":
		m.HotplugMethod = "VirtioMem"
	default:
		return fmt.Errorf("error parsing --memory: hotplug_method=%q is not acpi or virtio-mem", kv["hotplug_method"])
	}
	for k, dst := range map[string]*bool{"hugepages": &m.Hugepages, "shared": &m.Shared} {
		if kv[k] != "" {
			if *dst, err = parseBool("--memory", k, kv[k]); err != nil {
				return err
			}
		}
	}
	if m.Size%(1<<20) != 0 || m.Size == 0 {
		return fmt.Errorf("error validating configuration: memory size %d is not a positive multiple of 1 MiB", m.Size)
	}
	if m.HotplugMethod == "Acpi" && m.HotplugSize%(128<<20) != 0 {
		return fmt.Errorf("error validating configuration: hotplug_size %d is not a multiple of 128 MiB", m.HotplugSize)
	}
	return nil
}

func parseDisk(v string, i int) (diskConfig, error) {
	kv, err := parseKV("--disk", v, multiOpts["--disk"])
	if err != nil {
		return diskConfig{}, err
	}
	d := diskConfig{Path: kv["path"], NumQueues: 1, QueueSize: 128, ID: fmt.Sprintf("_disk%d", i), Serial: kv["serial"], Sparse: true}
	if d.Path == "" {
		return d, fmt.Errorf("error parsing --disk: path= is required in %q", v)
	}
	for k, dst := range map[string]*bool{"readonly": &d.Readonly, "direct": &d.Direct, "backing_files": &d.BackingFiles, "sparse": &d.Sparse} {
		if kv[k] != "" {
			if *dst, err = parseBool("--disk", k, kv[k]); err != nil {
				return d, err
			}
		}
	}
	for k, dst := range map[string]*int{"num_queues": &d.NumQueues, "queue_size": &d.QueueSize} {
		if kv[k] != "" {
			if *dst, err = parseUint("--disk", k, kv[k]); err != nil {
				return d, err
			}
		}
	}
	switch kv["image_type"] {
	case "":
	case "raw":
		d.ImageType = "Raw"
	case "qcow2":
		d.ImageType = "Qcow2"
	default:
		return d, fmt.Errorf("error parsing --disk: image_type=%q is not raw, qcow2, vhd or vhdx", kv["image_type"])
	}
	if len(d.Serial) > 20 {
		return d, fmt.Errorf("error parsing --disk: serial %q is longer than 20 bytes", d.Serial)
	}
	if !powerOfTwo(d.QueueSize) || d.NumQueues < 1 {
		return d, fmt.Errorf("error validating configuration: disk queue_size %d must be a power of two, num_queues ≥ 1", d.QueueSize)
	}
	return d, d.check()
}

// check is what CH finds when it opens the disk.
func (d diskConfig) check() error {
	if !exists(d.Path) {
		return fmt.Errorf("error booting VM: cannot open disk path %s: no such file or directory", d.Path)
	}
	return nil
}

func parseNet(v string, i int) (netConfig, error) {
	kv, err := parseKV("--net", v, multiOpts["--net"])
	if err != nil {
		return netConfig{}, err
	}
	n := netConfig{Tap: kv["tap"], Mac: kv["mac"], NumQueues: 2, QueueSize: 256, ID: fmt.Sprintf("_net%d", i),
		OffloadTso: true, OffloadUfo: true, OffloadCsum: true}
	for k, dst := range map[string]*bool{"offload_tso": &n.OffloadTso, "offload_ufo": &n.OffloadUfo, "offload_csum": &n.OffloadCsum} {
		if kv[k] != "" {
			if *dst, err = parseBool("--net", k, kv[k]); err != nil {
				return n, err
			}
		}
	}
	for k, dst := range map[string]*int{"num_queues": &n.NumQueues, "queue_size": &n.QueueSize, "mtu": &n.Mtu} {
		if kv[k] != "" {
			if *dst, err = parseUint("--net", k, kv[k]); err != nil {
				return n, err
			}
		}
	}
	if kv["fd"] != "" {
		if n.Fds, err = parseList("--net", "fd", kv["fd"]); err != nil {
			return n, err
		}
	}
	switch {
	case n.Mac != "" && !validMAC(n.Mac):
		return n, fmt.Errorf("error parsing --net: mac=%q is not a MAC address", n.Mac)
	case n.Tap != "" && len(n.Fds) > 0:
		return n, fmt.Errorf("error validating configuration: --net takes tap= or fd=, not both")
	case len(n.Fds) > 0 && n.NumQueues != 2*len(n.Fds):
		return n, fmt.Errorf("error validating configuration: num_queues %d does not match %d fds (two queues per fd)", n.NumQueues, len(n.Fds))
	case n.NumQueues < 2 || n.NumQueues%2 != 0 || !powerOfTwo(n.QueueSize):
		return n, fmt.Errorf("error validating configuration: net num_queues %d must be even, queue_size %d a power of two", n.NumQueues, n.QueueSize)
	}
	return n, n.open()
}

// open checks the NIC's backend as CH opening it would: each fd is an open TAP queue; a TAP
// name exists in this process's netns. (Real CH opens a missing name with TUNSETIFF, which
// creates a throw-away TAP when it has CAP_NET_ADMIN; cocoon never relies on that, so the
// stand-in refuses, which is what CH without the capability does.)
func (n netConfig) open() error {
	for _, fd := range n.Fds {
		ifr, err := unix.NewIfreq("")
		if err == nil {
			err = unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr)
		}
		if err != nil {
			return fmt.Errorf("error booting VM: net fd %d is not an open TAP: %v", fd, err)
		}
	}
	if n.Tap != "" {
		if _, err := net.InterfaceByName(n.Tap); err != nil {
			return fmt.Errorf("error booting VM: cannot open TAP %s: %v", n.Tap, err)
		}
	}
	if n.Tap == "" && len(n.Fds) == 0 {
		return fmt.Errorf("error validating configuration: --net needs tap= or fd=")
	}
	return nil
}

func parseBalloon(v string) (*balloonConfig, error) {
	kv, _ := parseKV("--balloon", v, valueOpts["--balloon"])
	size, err := parseSize("--balloon", "size", kv["size"])
	if err != nil {
		return nil, err
	}
	b := &balloonConfig{ID: "_balloon0", Size: size}
	for k, dst := range map[string]*bool{"deflate_on_oom": &b.DeflateOnOom, "free_page_reporting": &b.FreePageReporting} {
		if kv[k] != "" {
			if *dst, err = parseBool("--balloon", k, kv[k]); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// parseConsole reads off|null|pty|tty|file=<p>|socket=<p>.
func parseConsole(opt, v string, def consoleConfig) (consoleConfig, error) {
	switch {
	case v == "":
		return def, nil
	case v == "off":
		return consoleConfig{Mode: "Off"}, nil
	case v == "null":
		return consoleConfig{Mode: "Null"}, nil
	case v == "pty":
		return consoleConfig{Mode: "Pty"}, nil
	case v == "tty":
		return consoleConfig{Mode: "Tty"}, nil
	}
	k, p, _ := cutPrefix(v)
	switch k {
	case "file":
		return consoleConfig{Mode: "File", File: p}, nil
	case "socket":
		return consoleConfig{Mode: "Socket", Socket: p}, nil
	}
	return def, fmt.Errorf("error parsing %s: %q is not off, null, pty, tty, file=<path> or socket=<path>", opt, v)
}

func cutPrefix(v string) (string, string, bool) {
	for _, k := range []string{"file", "socket"} {
		if len(v) > len(k)+1 && v[:len(k)+1] == k+"=" {
			return k, v[len(k)+1:], true
		}
	}
	return "", "", false
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }

func validMAC(s string) bool { _, err := net.ParseMAC(s); return err == nil && len(s) == 17 }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
