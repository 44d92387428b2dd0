package qemu

import (
	"cmp"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Spare PCIe root ports beyond one per NIC, so a later hot-plug (an extra NIC, a cidata disk on
// clone) has somewhere to go: q35 only hot-plugs into root ports, and the port layout must be
// identical between a snapshot and the VM restored from it, so it cannot grow on demand.
const spareRootPorts = 2

// Queue limits of QEMU's virtio devices.
const (
	defaultDiskQueueSize = 512
	maxQueueSize         = 1024 // VIRTQUEUE_MAX_SIZE
	defaultNetQueueSize  = 512  // rx ring; matches the Cloud Hypervisor queue size
	minNetQueueSize      = 256
	// QEMU caps the tx ring at 256 for every backend but vhost-user; asking for more is
	// silently clamped, so say 256 and keep the argv truthful.
	netTxQueueSize = 256
)

// argBuilder renders a VMSpec as QEMU arguments: the spec gives host-side things (files, TAP
// fds, sockets, boot payload), the layout the guest-visible machine. With tapByName it names
// TAP devices (DebugCommand) instead of passing the open fds in NIC.Files (Start).
type argBuilder struct {
	spec       hypervisor.VMSpec
	arch       archSpec
	layout     layout
	accel      string
	tcgCacheMB int
	tapByName  bool
	// selfConsole has QEMU serve and log the console itself (DebugCommand: no relay runs).
	selfConsole bool
	aio         string // disk I/O submission: io_uring or threads (see aioMode)
	// serial is QEMU's end of the serial line to the console relay (see serialLine).
	serial *os.File
	// incoming makes QEMU wait for a migration stream (StartFromSnapshot).
	incoming bool
	// kernelless resumes a direct-booted guest without its kernel (see resumeWithoutKernel).
	kernelless bool
	// swap marks NICs that start as the snapshot's device on a throw-away TAP (see nics);
	// swapFDs receives the fd numbers of their real TAP queues, for netdev_add after the swap.
	swap    []bool
	swapFDs [][]string
	args    []string
	files   []*os.File // ExtraFiles: fd 3+i in the child
}

func (b *argBuilder) add(args ...string) { b.args = append(b.args, args...) }

func (b *argBuilder) build() ([]string, []*os.File) {
	b.arch, _ = archOf(b.spec.Arch) // checked by resolveAccel
	s, l := b.spec, b.layout
	name := s.Name
	if name == "" {
		name = s.ID
	}
	b.add("-name", "guest="+optEscape(name)+",debug-threads=on",
		"-machine", b.arch.machine+",memory-backend=ram",
		"-nodefaults", "-no-user-config", "-display", "none", "-msg", "timestamp=on")
	b.accelerator()
	// maxcpus sizes the topology so a clone can hot-add vCPUs into the free slots.
	b.add("-smp", fmt.Sprintf("cpus=%d,maxcpus=%d", l.BootCPUs, l.MaxCPUs))
	for _, c := range l.HotCPUs {
		b.add("-device", optString(c.Driver, append([]prop{{"id", c.ID}}, sortedProps(c.Props)...)))
	}
	share := "on"
	if !l.RAM.Shared {
		share = "off"
	}
	b.memoryArgs()
	b.add(
		// A shared file mapping: snapshots save device state with x-ignore-shared and keep
		// the file; clones map a copy of it with share=off (copy-on-write).
		"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%d,mem-path=%s,share=%s,prealloc=off",
			l.MemoryBytes, optEscape(l.RAM.File), share),
		"-qmp", "unix:"+optEscape(qmpPath(s.RunDir))+",server=on,wait=off")
	if b.selfConsole {
		// No relay runs beside a debug command line: QEMU serves and logs the console itself.
		b.add("-chardev", fmt.Sprintf("socket,id=console,path=%s,server=on,wait=off,logfile=%s,logappend=on",
			optEscape(consolePath(s.RunDir)), optEscape(consoleLogPath(s.LogDir))))
	} else {
		// The console relay (startConsoleRelay) logs the serial port with timestamps and
		// serves `vm console` from the other end of this connected socket.
		b.add("-chardev", fmt.Sprintf("socket,id=console,fd=%d", 3+len(b.files)))
		b.files = append(b.files, b.serial)
	}
	b.add("-serial", "chardev:console")
	if s.Windows {
		b.add("-rtc", "base=localtime,driftfix=slew")
	}
	b.boot()
	b.rootPorts() // before any auto-addressed PCI device, so their slots stay free
	b.disks()
	b.nics()
	if l.Balloon {
		// No free-page-reporting: QEMU 7.2 discards reported pages by punching holes in the
		// RAM file even when it is a private (share=off) mapping, which would zero pages of
		// the snapshot file that every clone maps. Freed memory goes back to the host only
		// through the balloon target.
		b.add("-device", "virtio-balloon-pci,id=balloon0,deflate-on-oom=on")
	}
	b.add("-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
		"-device", "i6300esb,id=watchdog0", "-action", "watchdog=reset")
	b.agent()
	if b.incoming {
		b.add("-incoming", "defer")
	}
	return b.args, b.files
}

func (b *argBuilder) accelerator() {
	if b.accel == accelKVM {
		cpu := "host"
		if b.spec.Windows {
			cpu += ",hv_relaxed,hv_vapic,hv_spinlocks=0x1fff,hv_time"
		}
		b.add("-accel", "kvm", "-cpu", cpu)
		return
	}
	b.add("-accel", fmt.Sprintf("tcg,thread=multi,tb-size=%d", b.tcgCacheMB), "-cpu", b.arch.tcgCPU)
}

func (b *argBuilder) boot() {
	boot := b.spec.Boot
	if boot.Firmware != "" {
		b.add("-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(boot.Firmware),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(boot.FirmwareVars))
		return
	}
	if b.kernelless {
		b.add("-option-rom", b.arch.kernelROM, "-action", "reboot=shutdown")
		return
	}
	b.add("-kernel", boot.Kernel)
	if boot.Initrd != "" {
		b.add("-initrd", boot.Initrd)
	}
	if boot.Cmdline != "" {
		b.add("-append", boot.Cmdline)
	}
}

// rootPorts packs the ports eight to a slot (functions 0-7) from slot 2 on.
func (b *argBuilder) rootPorts() {
	for i := range b.layout.rootPorts() {
		slot, fn := 2+i/8, i%8
		opt := fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d,port=%#x,addr=%#x.%d,io-reserve=0",
			rootPort(i), i+1, 0x10+i, slot, fn)
		if fn == 0 {
			opt += ",multifunction=on"
		}
		b.add("-device", opt)
	}
}

func rootPort(i int) string { return "rp" + strconv.Itoa(i) }

func (b *argBuilder) disks() {
	for i, d := range b.spec.Disks {
		if i >= len(b.layout.Disks) {
			break // hot-plugged once the snapshot's state is loaded (addDisks)
		}
		drive := fmt.Sprintf("file=%s,if=none,id=%s,format=%s", optEscape(d.Path), driveID(i), d.Format)
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			drive += ",discard=unmap" // guest TRIM punches holes in sparse disks
		}
		drive += ",cache.direct=" + map[bool]string{true: "on", false: "off"}[d.DirectIO] + ",aio=" + cmp.Or(b.aio, aioThreads)
		dev := fmt.Sprintf("virtio-blk-pci,drive=%s,id=%s", driveID(i), diskID(i))
		q := b.layout.Disks[i]
		if q.Bus != "" {
			dev += ",bus=" + q.Bus
		}
		if d.Serial != "" {
			dev += ",serial=" + optEscape(d.Serial)
		}
		dev += fmt.Sprintf(",num-queues=%d,queue-size=%d", q.Queues, q.QueueSize)
		b.add("-drive", drive, "-device", dev)
	}
}

// nics attaches every NIC on its own root port. A NIC marked in swap starts as the snapshot's
// device (its MAC and queue layout, which the state stream must find) on a TAP that QEMU
// creates and deletes again with the device; its real TAP fds are only handed over here and
// wired up by netdev_add once the old device is gone.
func (b *argBuilder) nics() {
	b.swapFDs = make([][]string, len(b.spec.NICs))
	for i, n := range b.spec.NICs {
		fds := make([]string, len(n.Files))
		if !b.tapByName {
			for j, f := range n.Files {
				fds[j] = strconv.Itoa(3 + len(b.files))
				b.files = append(b.files, f)
			}
		}
		if i >= len(b.layout.NICs) { // added after the state is loaded, into a spare root port
			b.swapFDs[i] = fds
			continue
		}
		nl := b.layout.NICs[i]
		if i < len(b.swap) && b.swap[i] {
			b.swapFDs[i] = fds
			netdev := fmt.Sprintf("tap,id=%s,queues=%d,script=no,downscript=no,vhost=off", oldNetdevID(i), nl.Queues)
			b.add("-netdev", netdev, "-device", optString("virtio-net-pci", nicProps(i, oldNetdevID(i), nl)))
			continue
		}
		netdev := "tap,id=" + netdevID(i)
		if b.tapByName {
			netdev += ",ifname=" + optEscape(n.TapName) + ",script=no,downscript=no"
			if nl.Queues > 1 {
				netdev += ",queues=" + strconv.Itoa(nl.Queues)
			}
		} else {
			netdev += ",fds=" + strings.Join(fds, ":")
		}
		netdev += ",vhost=off" // no vhost-net on these hosts; QEMU's userspace path is used
		b.add("-netdev", netdev, "-device", optString("virtio-net-pci", nicProps(i, netdevID(i), nl)))
	}
}

func driveID(i int) string     { return "drive" + strconv.Itoa(i) }
func diskID(i int) string      { return "disk" + strconv.Itoa(i) }
func netdevID(i int) string    { return "net" + strconv.Itoa(i) }
func oldNetdevID(i int) string { return "net" + strconv.Itoa(i) + "old" }
func nicID(i int) string       { return "nic" + strconv.Itoa(i) }

// nicProps are the virtio-net device's properties; checksum and TSO offloads are on by
// default whenever the TAP has vnet_hdr.
func nicProps(i int, netdev string, nl nicLayout) []prop {
	p := []prop{{"netdev", netdev}, {"id", nicID(i)}, {"bus", rootPort(i)}, {"mac", nl.MAC}}
	if nl.Queues > 1 {
		p = append(p, prop{"mq", true}, prop{"vectors", 2*nl.Queues + 2})
	}
	p = append(p, prop{"rx_queue_size", nl.QueueSize}, prop{"tx_queue_size", netTxQueueSize})
	if nl.MTU > 0 {
		p = append(p, prop{"host_mtu", nl.MTU})
	}
	return p
}

func nicQueues(n hypervisor.NIC) int {
	if n.Queues > 0 {
		return n.Queues
	}
	return max(len(n.Files), 1)
}

// prop is one device property, kept typed so it renders both as a -device option and as
// QMP device_add arguments (which reject "512" where a number is expected).
type prop struct {
	k string
	v any
}

func optString(driver string, props []prop) string {
	var sb strings.Builder
	// Driver and keys are checked names (see layout.validate); escaping keeps any comma inert.
	sb.WriteString(optEscape(driver))
	for _, p := range props {
		sb.WriteString("," + optEscape(p.k) + "=")
		switch v := p.v.(type) {
		case bool:
			sb.WriteString(map[bool]string{true: "on", false: "off"}[v])
		case string:
			sb.WriteString(optEscape(v))
		default:
			fmt.Fprint(&sb, v)
		}
	}
	return sb.String()
}

func propMap(driver string, props []prop) map[string]any {
	m := map[string]any{"driver": driver}
	for _, p := range props {
		m[p.k] = p.v
	}
	return m
}

func sortedProps(m map[string]int64) []prop {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	props := make([]prop, len(keys))
	for i, k := range keys {
		props[i] = prop{k, m[k]}
	}
	return props
}

// optEscape doubles commas, QEMU's escape inside a key=value option list.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
