package hypervisor

import (
	"strings"
	"testing"
)

// The same spec passes or fails depending only on the backend's capabilities and limits.
func TestValidateFollowsCapabilities(t *testing.T) {
	full := Capabilities{UEFI: true, Qcow2: true, Windows: true, MultiQueue: true, FirmwareVars: true, Limits: Limits{
		MinMemory: 64 << 20, MaxNICs: 8, NetQueueSize: SizeRange{256, 1024}, DiskQueueSize: SizeRange{4, 1024}, MaxSerialLen: 20}}
	bare := Capabilities{Limits: Limits{MinMemory: 128 << 20, MaxNICs: 1, NetQueueSize: SizeRange{256, 256}, DiskQueueSize: SizeRange{256, 256}, MaxSerialLen: 20}}
	base := func() VMSpec {
		return VMSpec{ID: "v", CPUs: 2, MemoryBytes: 512 << 20, RunDir: "/r", LogDir: "/l", MemoryDir: "/m",
			Boot: Boot{Kernel: "/k"}}
	}
	cases := map[string]struct {
		mutate func(*VMSpec)
		want   string // error from bare; full accepts every case
	}{
		"uefi":        {func(s *VMSpec) { s.Boot = Boot{Firmware: "/f", FirmwareVars: "/v"} }, "cannot boot UEFI"},
		"qcow2":       {func(s *VMSpec) { s.Disks = []Disk{{Path: "/d", Format: FormatQcow2}} }, "qcow2"},
		"windows":     {func(s *VMSpec) { s.Windows = true }, "Windows"},
		"multi-queue": {func(s *VMSpec) { s.NICs = []NIC{{Queues: 2}} }, "one queue pair"},
		"nics":        {func(s *VMSpec) { s.NICs = []NIC{{}, {}} }, "at most 1"},
		"net queue":   {func(s *VMSpec) { s.NICs = []NIC{{QueueSize: 512}} }, "power of two from 256 to 256"},
		"disk queue":  {func(s *VMSpec) { s.DiskQueueSize = 512 }, "--disk-queue-size"},
		"memory":      {func(s *VMSpec) { s.MemoryBytes = 96 << 20 }, "128 MiB minimum"},
	}
	for name, c := range cases {
		s := base()
		c.mutate(&s)
		if err := s.Validate(full, "full"); err != nil {
			t.Errorf("%s: full backend refused: %v", name, err)
		}
		if err := s.Validate(bare, "bare"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: bare backend: %v, want an error mentioning %q", name, err, c.want)
		}
	}
}
