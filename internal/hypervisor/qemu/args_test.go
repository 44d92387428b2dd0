package qemu

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

func baseSpec() hypervisor.VMSpec {
	return hypervisor.VMSpec{
		ID: "abc", Name: "web,1", CPUs: 2, MemoryBytes: 512 << 20,
		Boot:   hypervisor.Boot{Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 a,b"},
		RunDir: "/run/vm", LogDir: "/log/vm", MemoryDir: "/dev/shm/cocoon",
	}
}

// option returns the value following flag whose value starts with prefix.
func option(t *testing.T, args []string, flag, prefix string) string {
	t.Helper()
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && strings.HasPrefix(args[i+1], prefix) {
			return args[i+1]
		}
	}
	t.Fatalf("no %s %s… in %q", flag, prefix, args)
	return ""
}

func TestArgsPassTapFDsInOrderAndPlaceNICsOnRootPorts(t *testing.T) {
	s := baseSpec()
	f := func() *os.File { // stands in for a TAP queue fd
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r
	}
	a, b, c := f(), f(), f()
	s.NICs = []hypervisor.NIC{
		{MAC: "02:00:00:00:00:01", Files: []*os.File{a, b}, QueueSize: 1024, MTU: 9000},
		{MAC: "02:00:00:00:00:02", Files: []*os.File{c}},
	}
	s.Disks = []hypervisor.Disk{
		{Path: "/blobs/l,0.erofs", Format: hypervisor.FormatRaw, ReadOnly: true, Serial: "cocoon-layer0"},
		{Path: "/run/vm/cow.raw", Format: hypervisor.FormatRaw, DirectIO: true, Serial: "cocoon-cow"},
	}
	serial := f() // the serial line comes first: fd 3
	ab := argBuilder{spec: s, layout: coldLayout(s, accelTCG), accel: accelTCG, tcgCacheMB: 256, aio: aioIOURing, serial: serial}
	args, files := ab.build()

	if len(files) != 4 || files[0] != serial || files[1] != a || files[2] != b || files[3] != c {
		t.Fatalf("extra files out of order: %v", files)
	}
	if got := option(t, args, "-netdev", "tap,id=net0"); got != "tap,id=net0,fds=4:5,vhost=off" {
		t.Errorf("net0 = %s", got)
	}
	if got := option(t, args, "-netdev", "tap,id=net1"); got != "tap,id=net1,fds=6,vhost=off" {
		t.Errorf("net1 = %s", got)
	}
	nic0 := option(t, args, "-device", "virtio-net-pci,netdev=net0")
	for _, want := range []string{"bus=rp0", "mq=on", "vectors=6", "rx_queue_size=1024", "tx_queue_size=256", "host_mtu=9000"} {
		if !strings.Contains(nic0, want) {
			t.Errorf("nic0 %s lacks %s", nic0, want)
		}
	}
	if nic1 := option(t, args, "-device", "virtio-net-pci,netdev=net1"); strings.Contains(nic1, "mq=on") || !strings.Contains(nic1, "bus=rp1") {
		t.Errorf("single-queue nic1 = %s", nic1)
	}
	if ports := strings.Count(strings.Join(args, " "), "pcie-root-port"); ports != 2+spareRootPorts {
		t.Errorf("%d root ports, want %d", ports, 2+spareRootPorts)
	}
	// Root ports come before every auto-addressed PCI device.
	joined := strings.Join(args, "\n")
	if strings.LastIndex(joined, "pcie-root-port") > strings.Index(joined, "virtio-blk-pci") {
		t.Error("a root port follows a disk")
	}

	if got := option(t, args, "-drive", "file=/blobs"); got != "file=/blobs/l,,0.erofs,if=none,id=drive0,format=raw,readonly=on,cache.direct=off,aio=io_uring" {
		t.Errorf("layer drive = %s", got)
	}
	if got := option(t, args, "-drive", "file=/run/vm/cow"); !strings.Contains(got, "discard=unmap,cache.direct=on,aio=io_uring") {
		t.Errorf("cow drive = %s", got)
	}
	if got := option(t, args, "-device", "virtio-blk-pci,drive=drive1"); got != "virtio-blk-pci,drive=drive1,id=disk1,serial=cocoon-cow,num-queues=2,queue-size=512" {
		t.Errorf("cow device = %s", got)
	}
	if got := option(t, args, "-name", ""); got != "guest=web,,1,debug-threads=on" {
		t.Errorf("-name %s", got)
	}
	if got := option(t, args, "-append", ""); got != "console=ttyS0 a,b" {
		t.Errorf("-append must pass the cmdline verbatim: %s", got)
	}
	if got := option(t, args, "-object", "memory-backend-file"); got != "memory-backend-file,id=ram,size=536870912,mem-path=/dev/shm/cocoon/abc.ram,share=on,prealloc=off" {
		t.Errorf("memory = %s", got)
	}
	if got := option(t, args, "-smp", ""); got != "cpus=2,maxcpus=2" {
		t.Errorf("-smp %s", got)
	}
	if option(t, args, "-accel", "") != "tcg,thread=multi,tb-size=256" || option(t, args, "-cpu", "") != "max" {
		t.Error("TCG accel/cpu wrong")
	}
	if strings.Contains(joined, "balloon") {
		t.Error("balloon device without Balloon")
	}
}

func TestArgsUEFIWindowsKVM(t *testing.T) {
	s := baseSpec()
	s.Boot = hypervisor.Boot{Firmware: "/usr/share/OVMF/OVMF_CODE.fd", FirmwareVars: "/run/vm/vars.fd"}
	s.Windows, s.Balloon = true, true
	s.MaxCPUs = 8
	ab := argBuilder{spec: s, layout: coldLayout(s, accelKVM), accel: accelKVM}
	args, _ := ab.build()
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
		"-drive if=pflash,format=raw,unit=1,file=/run/vm/vars.fd",
		"-accel kvm -cpu host,hv_relaxed", "-rtc base=localtime", "-smp cpus=2,maxcpus=8 ",
		"virtio-balloon-pci,id=balloon0,deflate-on-oom=on -object",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "-kernel") {
		t.Error("UEFI boot with -kernel")
	}
}

func TestShellJoinRoundTrips(t *testing.T) {
	args := []string{"-append", "console=ttyS0 it's", "-name", "plain"}
	got := hypervisor.ShellJoin("/usr/bin/qemu", args, true)
	want := "/usr/bin/qemu \\\n  -append 'console=ttyS0 it'\\''s' \\\n  -name plain"
	if got != want {
		t.Errorf("shellJoin =\n%s\nwant\n%s", got, want)
	}
}

func TestValidateRejectsBadSpecs(t *testing.T) {
	cases := map[string]struct {
		mutate func(*hypervisor.VMSpec)
		want   string
	}{
		"no cpus":     {func(s *hypervisor.VMSpec) { s.CPUs = 0 }, "at least 1"},
		"odd memory":  {func(s *hypervisor.VMSpec) { s.MemoryBytes += 1 }, "whole number of MiB"},
		"both boots":  {func(s *hypervisor.VMSpec) { s.Boot.Firmware = "/fw" }, "exactly one"},
		"no vars":     {func(s *hypervisor.VMSpec) { s.Boot = hypervisor.Boot{Firmware: "/fw"} }, "variables"},
		"long socket": {func(s *hypervisor.VMSpec) { s.RunDir = "/" + strings.Repeat("d", 120) }, "unix socket limit"},
		"bad format":  {func(s *hypervisor.VMSpec) { s.Disks = []hypervisor.Disk{{Path: "/d", Format: "vmdk"}} }, `"vmdk"`},
		"long serial": {func(s *hypervisor.VMSpec) {
			s.Disks = []hypervisor.Disk{{Path: "/d", Format: "raw", Serial: strings.Repeat("s", 21)}}
		}, "20 bytes"},
		"relative disk": {func(s *hypervisor.VMSpec) { s.Disks = []hypervisor.Disk{{Path: "d", Format: "raw"}} }, "absolute"},
		"disk queue":    {func(s *hypervisor.VMSpec) { s.DiskQueueSize = 2048 }, "power of two"},
		"bad mac":       {func(s *hypervisor.VMSpec) { s.NICs = []hypervisor.NIC{{MAC: "zz"}} }, "bad MAC"},
		"no tap fds":    {func(s *hypervisor.VMSpec) { s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01"}} }, "no open TAP"},
		"queue mismatch": {func(s *hypervisor.VMSpec) {
			s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01", Files: []*os.File{os.Stdin}, Queues: 2}}
		}, "one fd per queue"},
		"net queue": {func(s *hypervisor.VMSpec) {
			s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:01", Files: []*os.File{os.Stdin}, QueueSize: 64}}
		}, "power of two from 256 to 1024"},
		"too many NICs": {func(s *hypervisor.VMSpec) { s.NICs = make([]hypervisor.NIC, 9) }, "at most 8"},
		"hugepage size": {func(s *hypervisor.VMSpec) { s.HugePages, s.MemoryBytes = true, 513<<20 }, "2 MiB"},
	}
	for name, c := range cases {
		s := baseSpec()
		c.mutate(&s)
		err := New(Options{}).validate(s, false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
	if err := New(Options{}).validate(baseSpec(), false); err != nil {
		t.Errorf("valid spec rejected: %v", err)
	}
}

func TestResolveAccel(t *testing.T) {
	if _, err := resolveAccel("hvf", ""); err == nil || !strings.Contains(err.Error(), "auto, kvm or tcg") {
		t.Errorf("unknown accel: %v", err)
	}
	if got, err := resolveAccel("tcg", ""); got != accelTCG || err != nil {
		t.Errorf("tcg → %q, %v", got, err)
	}
	auto, err := resolveAccel("auto", "")
	if err != nil {
		t.Fatal(err)
	}
	forced, err := resolveAccel("kvm", "")
	if reason := hypervisor.KVMUnusable(); reason != "" {
		if auto != accelTCG || err == nil || !strings.Contains(err.Error(), "use --accel tcg") {
			t.Errorf("KVM unusable (%s): auto → %q, kvm → %v", reason, auto, err)
		}
	} else if auto != accelKVM || forced != accelKVM || err != nil {
		t.Errorf("KVM usable: auto → %q, kvm → %q, %v", auto, forced, err)
	}
	// A guest of another architecture is emulated whatever KVM can do.
	foreign := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if got, err := resolveAccel("auto", foreign); got != accelTCG || err != nil {
		t.Errorf("auto for a %s guest → %q, %v; want tcg", foreign, got, err)
	}
	if _, err := resolveAccel("kvm", foreign); err == nil || !strings.Contains(err.Error(), "cannot run under KVM") {
		t.Errorf("kvm for a %s guest: %v", foreign, err)
	}
	if _, err := resolveAccel("tcg", "riscv64"); err == nil || !strings.Contains(err.Error(), "not amd64 or arm64") {
		t.Errorf("unknown arch: %v", err)
	}
}

func TestArgsForArm64Guests(t *testing.T) {
	s := baseSpec()
	s.Arch, s.MaxCPUs = "arm64", 8
	ab := argBuilder{spec: s, layout: coldLayout(s, accelTCG), accel: accelTCG, tcgCacheMB: 256}
	args, _ := ab.build()
	if got := option(t, args, "-machine", ""); got != "virt,gic-version=3,memory-backend=ram" {
		t.Errorf("-machine %s", got)
	}
	if got := option(t, args, "-cpu", ""); got != "cortex-a57" {
		t.Errorf("-cpu %s", got)
	}
	// virt cannot hot-plug vCPUs, so no slots are reserved for them.
	if got, want := option(t, args, "-smp", ""), fmt.Sprintf("cpus=%d,maxcpus=%d", s.CPUs, s.CPUs); got != want {
		t.Errorf("-smp %s, want %s", got, want)
	}
	if b := New(Options{}); b.binaryFor("arm64") != "qemu-system-aarch64" || b.binaryFor("") != "qemu-system-x86_64" {
		t.Errorf("binaries: %s, %s", b.binaryFor("arm64"), b.binaryFor(""))
	}
}

// The serial port: a launched VM's is its end of the line to the console relay, passed as an
// inherited fd (QEMU keeps no log); a debug command line's is served and logged by QEMU
// itself, since no relay runs.
func TestSerialConsoleArgs(t *testing.T) {
	s := baseSpec()
	line, err := newSerialLine()
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	ab := argBuilder{spec: s, layout: coldLayout(s, accelTCG), accel: accelTCG, tcgCacheMB: 256, serial: line.qemu}
	args, files := ab.build()
	if len(files) == 0 || files[0] != line.qemu {
		t.Fatalf("QEMU's end of the serial line is not fd 3: %v", files)
	}
	if got, want := option(t, args, "-chardev", "socket,id=console,"), "socket,id=console,fd=3"; got != want {
		t.Errorf("launch chardev = %s, want %s", got, want)
	}
	if got := option(t, args, "-serial", ""); got != "chardev:console" {
		t.Errorf("-serial %s", got)
	}
	dbg := argBuilder{spec: s, layout: coldLayout(s, accelTCG), accel: accelTCG, tcgCacheMB: 256, tapByName: true, selfConsole: true}
	args, _ = dbg.build()
	got := option(t, args, "-chardev", "socket,id=console,")
	if !strings.Contains(got, "path="+consolePath(s.RunDir)+",server=on,wait=off,logfile="+consoleLogPath(s.LogDir)) {
		t.Errorf("debug chardev = %s", got)
	}
}

// A guest resumed from a snapshot starts without its kernel only when it is an x86 bzImage
// (whose boot option ROM stands in for it); it then powers off on a reboot.
func TestResumeWithoutKernel(t *testing.T) {
	dir := t.TempDir()
	bz := make([]byte, 0x300)
	copy(bz[0x202:], "HdrS")
	if err := os.WriteFile(dir+"/bzImage", bz, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/vmlinux", []byte("\x7fELF not a bzImage, long enough to read 0x206 bytes"+strings.Repeat(".", 0x200)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := baseSpec()
	s.Boot.Kernel = dir + "/bzImage"
	if !resumeWithoutKernel(s) {
		t.Error("an x86 bzImage guest keeps its kernel")
	}
	for name, mod := range map[string]func(*hypervisor.VMSpec){
		"ELF kernel":   func(s *hypervisor.VMSpec) { s.Boot.Kernel = dir + "/vmlinux" },
		"no such file": func(s *hypervisor.VMSpec) { s.Boot.Kernel = dir + "/none" },
		"arm64":        func(s *hypervisor.VMSpec) { s.Arch = "arm64" },
		"UEFI":         func(s *hypervisor.VMSpec) { s.Boot = hypervisor.Boot{Firmware: "/code.fd", FirmwareVars: "/vars.fd"} },
	} {
		c := s
		mod(&c)
		if resumeWithoutKernel(c) {
			t.Errorf("%s: resumed without its kernel", name)
		}
	}

	ab := argBuilder{spec: s, layout: coldLayout(s, accelTCG), accel: accelTCG, tcgCacheMB: 256, incoming: true, kernelless: true}
	args, _ := ab.build()
	joined := strings.Join(args, " ")
	for _, gone := range []string{"-kernel", "-initrd", "-append"} {
		if strings.Contains(joined, gone+" ") {
			t.Errorf("kernelless resume passes %s: %s", gone, joined)
		}
	}
	if option(t, args, "-option-rom", "") != "linuxboot_dma.bin" || option(t, args, "-action", "reboot=") != "reboot=shutdown" {
		t.Errorf("kernelless resume args: %s", joined)
	}
}
