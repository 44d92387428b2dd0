package cloudhv

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Defaults of spec §8.5 and §9.1.
const (
	defaultQueueSize = 512
	// vsockCID is the guest's vsock CID; CH's vsock is hybrid (a unix socket on the host), so
	// the CID only has to be valid (≥ 3), not unique on the host.
	vsockCID = 3
	// memBlock is the granularity of ACPI memory hot-add in CH and of the guest's memory
	// sections: growth on clone comes in whole blocks.
	memBlock = 128 << 20
)

// buildArgs is the cold-boot command line (spec §9.2 order) and the TAP fds it names, which
// become fds 3, 4, … in the child. tapByName is the command for a person (DebugCommand): TAPs
// named (a shell cannot pass fds) and the console on the terminal.
func buildArgs(s hypervisor.VMSpec, tapByName bool) ([]string, []*os.File) {
	args := []string{"--api-socket", apiPath(s.RunDir)}
	cpus := fmt.Sprintf("boot=%d,max=%d", s.CPUs, maxCPUs(s))
	if s.Windows {
		cpus += ",kvm_hyperv=on" // Hyper-V enlightenments Windows expects
	}
	args = append(args, "--cpus", cpus, "--memory", memoryArg(s))
	if len(s.Disks) > 0 {
		args = append(args, "--disk")
		for _, d := range s.Disks {
			args = append(args, diskArg(d, s))
		}
	}
	if s.Boot.Firmware != "" {
		args = append(args, "--firmware", s.Boot.Firmware)
	} else {
		args = append(args, "--kernel", s.Boot.Kernel)
		if s.Boot.Initrd != "" {
			args = append(args, "--initramfs", s.Boot.Initrd)
		}
		if s.Boot.Cmdline != "" {
			args = append(args, "--cmdline", s.Boot.Cmdline)
		}
	}
	var files []*os.File
	if len(s.NICs) > 0 {
		args = append(args, "--net")
		for _, n := range s.NICs {
			var tap string
			if tapByName || len(n.Files) == 0 {
				tap = "tap=" + n.TapName
			} else {
				fds := make([]string, len(n.Files))
				for i, f := range n.Files {
					fds[i] = strconv.Itoa(3 + len(files))
					files = append(files, f)
				}
				tap = "fd=[" + strings.Join(fds, ",") + "]"
			}
			args = append(args, tap+","+netParams(n))
		}
	}
	args = append(args, "--rng", "src=/dev/urandom", "--watchdog")
	if s.Balloon {
		args = append(args, "--balloon", fmt.Sprintf("size=%d,deflate_on_oom=on,free_page_reporting=on", balloonSize(s)))
	}
	if s.Agent {
		args = append(args, "--vsock", fmt.Sprintf("cid=%d,socket=%s", vsockCID, vsockPath(s.RunDir)))
	}
	if s.Boot.Firmware != "" {
		// UEFI guests talk on the first serial port (ttyS0); CH serves it on a socket.
		args = append(args, "--serial", "socket="+serialPath(s.RunDir), "--console", "off")
	} else if tapByName {
		// By hand (DebugCommand), the guest's hvc0 is the terminal CH runs in.
		args = append(args, "--serial", "off", "--console", "tty")
	} else {
		// Direct-boot guests use virtio-console (hvc0) on a PTY CH allocates (vm.info names it).
		args = append(args, "--serial", "off", "--console", "pty")
	}
	return args, files
}

func maxCPUs(s hypervisor.VMSpec) int { return max(s.MaxCPUs, s.CPUs) }

// memoryArg reserves address space for hot-added memory (ACPI, CH's default method) so a
// clone or restore can grow; the reservation costs the host nothing until it is plugged.
func memoryArg(s hypervisor.VMSpec) string {
	m := fmt.Sprintf("size=%d", s.MemoryBytes)
	if s.HugePages {
		m += ",hugepages=on"
	}
	return m + fmt.Sprintf(",hotplug_size=%d", hotplugSize(s.MemoryBytes))
}

// hotplugSize is what a cold boot of mem bytes reserves for growth: the host's RAM or twice
// mem, whichever is larger, in whole GiB, minus mem.
func hotplugSize(mem int64) int64 {
	m := max(2*mem, hypervisor.HostMemTotal())
	return (m+1<<30-1)&^(1<<30-1) - mem
}

// balloonSize is what the balloon holds at boot (a quarter of RAM unless the spec says), in
// whole MiB: the guest takes it back under pressure (deflate_on_oom).
func balloonSize(s hypervisor.VMSpec) int64 {
	return cmp.Or(s.BalloonBytes, s.MemoryBytes/4) &^ (1<<20 - 1)
}

// diskArg renders one --disk value with the key order of spec §9.2. Queue affinity is left
// out: the original pinned queue i of every VM to host CPU i, piling all VMs on the same CPUs.
func diskArg(d hypervisor.Disk, s hypervisor.VMSpec) string {
	kv := []string{"path=" + d.Path}
	if d.ReadOnly {
		kv = append(kv, "readonly=on")
	}
	if d.DirectIO {
		kv = append(kv, "direct=on")
	}
	if d.Format == hypervisor.FormatQcow2 {
		kv = append(kv, "image_type=qcow2")
		if !d.ReadOnly {
			kv = append(kv, "backing_files=on")
		}
	} else {
		if !d.ReadOnly {
			kv = append(kv, "sparse=on")
		}
		kv = append(kv, "image_type=raw")
	}
	kv = append(kv, "num_queues="+strconv.Itoa(s.CPUs), "queue_size="+strconv.Itoa(diskQueueSize(s)))
	if d.Serial != "" {
		kv = append(kv, "serial="+d.Serial)
	}
	return strings.Join(kv, ",")
}

func diskQueueSize(s hypervisor.VMSpec) int {
	if s.DiskQueueSize > 0 {
		return s.DiskQueueSize
	}
	return defaultQueueSize
}

// queuePairs of a NIC: one per TAP fd, or as planned.
func queuePairs(n hypervisor.NIC) int {
	switch {
	case n.Queues > 0:
		return n.Queues
	case len(n.Files) > 0:
		return len(n.Files)
	}
	return 1
}

func netQueueSize(n hypervisor.NIC) int {
	if n.QueueSize > 0 {
		return n.QueueSize
	}
	return defaultQueueSize
}

// netParams are a --net value's keys after the TAP; CH counts rx and tx queues separately.
func netParams(n hypervisor.NIC) string {
	p := fmt.Sprintf("mac=%s,num_queues=%d,queue_size=%d,offload_tso=on,offload_ufo=on,offload_csum=on",
		n.MAC, 2*queuePairs(n), netQueueSize(n))
	if n.MTU > 0 {
		p += fmt.Sprintf(",mtu=%d", n.MTU)
	}
	return p
}

// diskConfig is the vm.add-disk body for d (CH's DiskConfig), as diskArg would launch it.
func diskConfig(d hypervisor.Disk, s hypervisor.VMSpec) map[string]any {
	c := map[string]any{"path": d.Path, "readonly": d.ReadOnly, "direct": d.DirectIO,
		"num_queues": s.CPUs, "queue_size": diskQueueSize(s), "image_type": "Raw"}
	if d.Format == hypervisor.FormatQcow2 {
		c["image_type"], c["backing_files"] = "Qcow2", !d.ReadOnly
	} else {
		c["sparse"] = !d.ReadOnly
	}
	if d.Serial != "" {
		c["serial"] = d.Serial
	}
	return c
}

// netConfig is the vm.add-net body for n (CH's NetConfig), the TAP opened by name in CH's netns.
func netConfig(n hypervisor.NIC) map[string]any {
	c := map[string]any{"tap": n.TapName, "mac": n.MAC, "num_queues": 2 * queuePairs(n), "queue_size": netQueueSize(n),
		"offload_tso": true, "offload_ufo": true, "offload_csum": true}
	if n.MTU > 0 {
		c["mtu"] = n.MTU
	}
	return c
}
