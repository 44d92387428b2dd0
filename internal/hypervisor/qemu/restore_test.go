package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

func pipeFile(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r
}

// TestRestoreArgsRebuildTheSnapshotMachine: a clone starts with the snapshot's topology, disk
// queues and NIC layout (not the clone's), maps the snapshot RAM privately and waits for the
// stream; a NIC to be swapped sits on a QEMU-made TAP while its real fds are only passed on.
func TestRestoreArgsRebuildTheSnapshotMachine(t *testing.T) {
	s := baseSpec()
	s.CPUs = 3
	s.Disks = []hypervisor.Disk{{Path: "/run/vm/cow.raw", Format: hypervisor.FormatRaw, Serial: "cocoon-cow"}}
	a, b, c := pipeFile(t), pipeFile(t), pipeFile(t)
	s.NICs = []hypervisor.NIC{
		{MAC: "02:00:00:00:00:0b", Files: []*os.File{a, b}},
		{MAC: "02:00:00:00:00:02", Files: []*os.File{c}},
	}
	saved := layout{
		Accel: accelTCG, BootCPUs: 1, MaxCPUs: 4, MemoryBytes: s.MemoryBytes,
		HotCPUs: []hotCPU{{Driver: "max-x86_64-cpu", ID: "cpu1", Props: map[string]int64{"socket-id": 0, "core-id": 1, "thread-id": 0}}},
		RAM:     ramLayout{File: "/snap/mem", Shared: false},
		Disks:   []diskQueue{{Queues: 1, QueueSize: 256}},
		NICs: []nicLayout{
			{MAC: "02:00:00:00:00:0a", Queues: 1, QueueSize: 512},
			{MAC: "02:00:00:00:00:02", Queues: 1, QueueSize: 512},
		},
	}
	serial := pipeFile(t) // the serial line comes first: fd 3
	ab := argBuilder{spec: s, layout: saved, accel: accelTCG, tcgCacheMB: 256, incoming: true, swap: []bool{true, false}, serial: serial}
	args, files := ab.build()
	joined := strings.Join(args, " ")

	for flag, want := range map[string]string{
		"-smp":      "cpus=1,maxcpus=4",
		"-object":   "memory-backend-file,id=ram,size=536870912,mem-path=/snap/mem,share=off,prealloc=off",
		"-netdev":   "tap,id=net0old,queues=1,script=no,downscript=no,vhost=off",
		"-incoming": "defer",
	} {
		if got := option(t, args, flag, want); got != want {
			t.Errorf("%s %s, want %s", flag, got, want)
		}
	}
	if got := option(t, args, "-device", "max-x86_64-cpu"); got != "max-x86_64-cpu,id=cpu1,core-id=1,socket-id=0,thread-id=0" {
		t.Errorf("hot-added vCPU replayed as %s", got)
	}
	if got := option(t, args, "-device", "virtio-net-pci,netdev=net0old"); got != "virtio-net-pci,netdev=net0old,id=nic0,bus=rp0,mac=02:00:00:00:00:0a,rx_queue_size=512,tx_queue_size=256" {
		t.Errorf("snapshot NIC = %s", got)
	}
	if got := option(t, args, "-netdev", "tap,id=net1"); got != "tap,id=net1,fds=6,vhost=off" {
		t.Errorf("unchanged NIC netdev = %s", got)
	}
	if strings.Contains(joined, "tap,id=net0,") {
		t.Error("the swapped NIC's real netdev exists before the swap")
	}
	if got := strings.Join(ab.swapFDs[0], ":"); got != "4:5" {
		t.Errorf("swap fds = %s, want 4:5", got)
	}
	if len(files) != 4 || files[0] != serial || files[1] != a || files[2] != b || files[3] != c {
		t.Errorf("extra files %v", files)
	}
	if got := option(t, args, "-device", "virtio-blk-pci"); !strings.HasSuffix(got, ",num-queues=1,queue-size=256") {
		t.Errorf("disk queues must be the snapshot's: %s", got)
	}
}

func TestCheckSnapshotRefusesWhatCannotLoad(t *testing.T) {
	memFile := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(memFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(memFile, 512<<20); err != nil {
		t.Fatal(err)
	}
	good := func() (hypervisor.VMSpec, source, layout) {
		s := baseSpec()
		s.NICs = []hypervisor.NIC{{MAC: "02:00:00:00:00:0b", Files: []*os.File{os.Stdin}}}
		l := layout{Accel: accelTCG, BootCPUs: 1, MaxCPUs: 2, MemoryBytes: s.MemoryBytes,
			RAM: ramLayout{File: "/old/ram", Shared: true}, NICs: []nicLayout{{MAC: "02:00:00:00:00:0a", Queues: 1, QueueSize: 512}}}
		src := source{SnapshotSource: hypervisor.SnapshotSource{Dir: "/snap", CPUs: 1, MaxCPUs: 2,
			MemoryBytes: s.MemoryBytes, MACs: []string{"02:00:00:00:00:0a"}}, StateFile: "/snap/state", MemoryFile: memFile}
		return s, src, l
	}
	cases := map[string]struct {
		mutate func(*hypervisor.VMSpec, *source, *layout)
		want   string
	}{
		"no memory file": {func(s *hypervisor.VMSpec, src *source, l *layout) { src.MemoryFile = "" }, "none was given"},
		"RAM in state":   {func(s *hypervisor.VMSpec, src *source, l *layout) { l.RAM.Shared = false }, "carries guest RAM"},
		"record disagrees": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			src.MACs[0] = "02:00:00:00:00:ff"
		}, "damaged"},
		"more memory, no slots": {func(s *hypervisor.VMSpec, src *source, l *layout) { s.MemoryBytes *= 2 }, "without memory hot-plug slots"},
		"less memory":           {func(s *hypervisor.VMSpec, src *source, l *layout) { s.MemoryBytes /= 2 }, "cannot be removed"},
		"odd growth": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.MemSlots, l.MaxMemBytes, s.MemoryBytes = 2, 4<<30, s.MemoryBytes+64<<20
		}, "steps of 128 MiB"},
		"over maxmem": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.MemSlots, l.MaxMemBytes, s.MemoryBytes = 2, 1<<30, 2<<30
		}, "the most the snapshotted VM"},
		"slots used": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.MemSlots, l.MaxMemBytes, l.DIMMs = 1, 4<<30, []dimm{{ID: "dimm0", Size: 128 << 20}}
			src.MemoryBytes, s.MemoryBytes = l.totalMemory(), 2<<30
		}, "used all slots"},
		"more NICs than ports": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			for range spareRootPorts + 1 {
				s.NICs = append(s.NICs, s.NICs[0])
			}
		}, "PCIe root ports"},
		"fewer vCPUs": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.BootCPUs, src.CPUs = 2, 2
			s.CPUs = 1
		}, "cannot be removed"},
		"over max vCPUs": {func(s *hypervisor.VMSpec, src *source, l *layout) { s.CPUs = 3 }, "the most the snapshotted VM"},
		"NIC count":      {func(s *hypervisor.VMSpec, src *source, l *layout) { s.NICs = nil }, "NICs cannot be removed"},
		"disk count": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.Disks = []diskQueue{{1, 512, ""}}
		}, "disks cannot be removed"},
		"disk ports": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			// 1 NIC + 2 disks on ports + 1 more disk > 3 root ports.
			l.Disks = []diskQueue{{1, 512, "rp2"}, {1, 512, "rp1"}}
			d := hypervisor.Disk{Path: "/x.img", Format: hypervisor.FormatRaw, ReadOnly: true, Role: "cidata"}
			s.Disks = []hypervisor.Disk{d, d, d}
		}, "PCIe root ports"},
		"balloon": {func(s *hypervisor.VMSpec, src *source, l *layout) { s.Balloon = true }, "balloon"},
		"accel":   {func(s *hypervisor.VMSpec, src *source, l *layout) { l.Accel = accelKVM }, "--accel kvm"},
		"short memory file": {func(s *hypervisor.VMSpec, src *source, l *layout) {
			l.MemoryBytes, src.MemoryBytes, s.MemoryBytes = 1<<30, 1<<30, 1<<30
		}, "not a regular file of"},
		"own RAM file":        {func(s *hypervisor.VMSpec, src *source, l *layout) { src.MemoryFile = ramPath(*s) }, "own RAM file"},
		"missing memory file": {func(s *hypervisor.VMSpec, src *source, l *layout) { src.MemoryFile += ".gone" }, "no such file"},
	}
	for name, c := range cases {
		s, src, l := good()
		c.mutate(&s, &src, &l)
		if err := checkSnapshot(s, src, l, accelTCG); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, c.want)
		}
	}
	s, src, l := good()
	// Growing within maxcpus, the memory slots and the spare root ports is fine.
	s.CPUs, l.MemSlots, l.MaxMemBytes, s.MemoryBytes = 2, 2, 4<<30, s.MemoryBytes+256<<20
	s.NICs = append(s.NICs, s.NICs[0])
	if err := checkSnapshot(s, src, l, accelTCG); err != nil {
		t.Errorf("valid clone refused: %v", err)
	}
}

func TestStateHeaderGuardsTheStream(t *testing.T) {
	dir := t.TempDir()
	l := layout{Accel: accelTCG, BootCPUs: 1, MaxCPUs: 2, MemoryBytes: 256 << 20,
		NICs: []nicLayout{{MAC: "02:00:00:00:00:0a", Queues: 2, QueueSize: 512}}}
	stream := []byte(qemuStreamMagic + "\x00\x00\x00\x03 rest of the stream")
	write := func(name string, hdr stateHeader, body []byte) string {
		t.Helper()
		data, err := encodeStateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, append(data, body...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := stateHeader{Format: stateFormat, Version: stateVersion, StreamBytes: int64(len(stream)), Layout: l}

	f, h, err := openState(write("good", good, stream))
	if err != nil {
		t.Fatalf("good state refused: %v", err)
	}
	rest := make([]byte, 4)
	_, _ = f.Read(rest)
	f.Close()
	if string(rest) != qemuStreamMagic || h.Layout.NICs[0].Queues != 2 {
		t.Errorf("header %+v, stream starts %q", h, rest)
	}

	unfinished := filepath.Join(dir, "unfinished")
	if err := os.WriteFile(unfinished, append(make([]byte, stateHeaderSize), stream...), 0o600); err != nil {
		t.Fatal(err)
	}
	future := good
	future.Version = 9
	other := good
	other.Format = "something-else"
	cases := map[string]string{
		write("truncated", good, stream[:10]): "truncated",
		write("future", future, stream):       "version 9",
		write("other", other, stream):         "not a cocoon QEMU state",
		write("nostream", stateHeader{Format: stateFormat, Version: stateVersion, StreamBytes: 4}, []byte("ABCD")): "no QEMU migration stream",
		unfinished:                    "did not finish",
		filepath.Join(dir, "missing"): "no such file",
	}
	small := filepath.Join(dir, "small")
	_ = os.WriteFile(small, []byte("hello"), 0o600)
	cases[small] = "only 5 bytes"
	for path, want := range cases {
		f, _, err := openState(path)
		if err == nil {
			f.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %q", filepath.Base(path), err, want)
		}
	}
}
