package qemu

import (
	"fmt"
	"os"
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

// argBuilder renders a VMSpec as QEMU arguments. With tapByName it names TAP devices
// (DebugCommand) instead of passing the open fds in NIC.Files (Start).
type argBuilder struct {
	spec       hypervisor.VMSpec
	accel      string
	tcgCacheMB int
	tapByName  bool
	args       []string
	files      []*os.File // ExtraFiles: fd 3+i in the child
}

func (b *argBuilder) add(args ...string) { b.args = append(b.args, args...) }

func (b *argBuilder) build() ([]string, []*os.File) {
	s := b.spec
	name := s.Name
	if name == "" {
		name = s.ID
	}
	b.add("-name", "guest="+optEscape(name)+",debug-threads=on",
		"-machine", "q35,memory-backend=ram",
		"-nodefaults", "-no-user-config", "-display", "none", "-msg", "timestamp=on")
	b.accelerator()
	b.add("-smp", strconv.Itoa(s.CPUs),
		"-m", strconv.FormatInt(s.MemoryBytes>>20, 10)+"M",
		// A shared file mapping: snapshots save device state with x-ignore-shared and keep
		// the file; clones map a copy of it with share=off (copy-on-write).
		"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%d,mem-path=%s,share=on,prealloc=off",
			s.MemoryBytes, optEscape(ramPath(s))),
		"-qmp", "unix:"+optEscape(qmpPath(s.RunDir))+",server=on,wait=off",
		// The serial console is a socket for `vm console` and is also logged in full.
		"-chardev", fmt.Sprintf("socket,id=console,path=%s,server=on,wait=off,logfile=%s,logappend=on",
			optEscape(consolePath(s.RunDir)), optEscape(consoleLogPath(s.LogDir))),
		"-serial", "chardev:console")
	if s.Windows {
		b.add("-rtc", "base=localtime,driftfix=slew")
	}
	b.boot()
	b.rootPorts() // before any auto-addressed PCI device, so their slots stay free
	b.disks()
	b.nics()
	if s.Balloon {
		b.add("-device", "virtio-balloon-pci,id=balloon0,deflate-on-oom=on,free-page-reporting=on")
	}
	b.add("-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
		"-device", "i6300esb,id=watchdog0", "-action", "watchdog=reset")
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
	b.add("-accel", fmt.Sprintf("tcg,thread=multi,tb-size=%d", b.tcgCacheMB), "-cpu", "max")
}

func (b *argBuilder) boot() {
	boot := b.spec.Boot
	if boot.Firmware != "" {
		b.add("-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(boot.Firmware),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(boot.FirmwareVars))
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
	for i := range len(b.spec.NICs) + spareRootPorts {
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
	queueSize := b.spec.DiskQueueSize
	if queueSize == 0 {
		queueSize = defaultDiskQueueSize
	}
	for i, d := range b.spec.Disks {
		drive := fmt.Sprintf("file=%s,if=none,id=drive%d,format=%s", optEscape(d.Path), i, d.Format)
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			drive += ",discard=unmap" // guest TRIM punches holes in sparse disks
		}
		// Native AIO needs O_DIRECT; without it QEMU's thread pool does the I/O.
		if d.DirectIO {
			drive += ",cache.direct=on,aio=native"
		} else {
			drive += ",cache.direct=off,aio=threads"
		}
		dev := fmt.Sprintf("virtio-blk-pci,drive=drive%d,id=disk%d", i, i)
		if d.Serial != "" {
			dev += ",serial=" + optEscape(d.Serial)
		}
		dev += fmt.Sprintf(",num-queues=%d,queue-size=%d", b.spec.CPUs, queueSize)
		b.add("-drive", drive, "-device", dev)
	}
}

func (b *argBuilder) nics() {
	for i, n := range b.spec.NICs {
		queues := nicQueues(n)
		netdev := fmt.Sprintf("tap,id=net%d", i)
		if b.tapByName {
			netdev += ",ifname=" + optEscape(n.TapName) + ",script=no,downscript=no"
			if queues > 1 {
				netdev += ",queues=" + strconv.Itoa(queues)
			}
		} else {
			fds := make([]string, len(n.Files))
			for j, f := range n.Files {
				fds[j] = strconv.Itoa(3 + len(b.files))
				b.files = append(b.files, f)
			}
			netdev += ",fds=" + strings.Join(fds, ":")
		}
		netdev += ",vhost=off" // no vhost-net on these hosts; QEMU's userspace path is used
		queueSize := n.QueueSize
		if queueSize == 0 {
			queueSize = defaultNetQueueSize
		}
		// Checksum and TSO offloads are on by default whenever the TAP has vnet_hdr.
		dev := fmt.Sprintf("virtio-net-pci,netdev=net%d,id=nic%d,bus=%s,mac=%s", i, i, rootPort(i), n.MAC)
		if queues > 1 {
			dev += fmt.Sprintf(",mq=on,vectors=%d", 2*queues+2)
		}
		dev += fmt.Sprintf(",rx_queue_size=%d,tx_queue_size=%d", queueSize, netTxQueueSize)
		if n.MTU > 0 {
			dev += ",host_mtu=" + strconv.Itoa(n.MTU)
		}
		b.add("-netdev", netdev, "-device", dev)
	}
}

func nicQueues(n hypervisor.NIC) int {
	if n.Queues > 0 {
		return n.Queues
	}
	return max(len(n.Files), 1)
}

// optEscape doubles commas, QEMU's escape inside a key=value option list.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
