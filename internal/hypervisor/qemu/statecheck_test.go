package qemu

import (
	"cmp"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goodLayout is a layout as a TCG clone records it: one hot-added vCPU, a disk and a NIC.
func goodLayout() layout {
	return layout{Accel: accelTCG, BootCPUs: 1, MaxCPUs: 4, MemoryBytes: 512 << 20,
		HotCPUs: []hotCPU{{Driver: "max-x86_64-cpu", ID: "cpu1", Props: map[string]int64{"socket-id": 0, "core-id": 1, "thread-id": 0}}},
		RAM:     ramLayout{File: "/dev/shm/cocoon/x/ram", Shared: true},
		Disks:   []diskQueue{{Queues: 1, QueueSize: 512}},
		NICs:    []nicLayout{{MAC: "02:00:00:00:00:0a", Queues: 1, QueueSize: 512, MTU: 1500}}}
}

// writeState writes a state file with header h and a stub stream; it returns the path.
func writeState(t testing.TB, dir string, h stateHeader) string {
	t.Helper()
	stream := []byte(qemuStreamMagic + "\x00\x00\x00\x03 stream")
	h.Format, h.Version, h.StreamBytes = stateFormat, stateVersion, int64(len(stream))
	data, err := encodeStateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "state")
	if err := os.WriteFile(p, append(data, stream...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A state file from another host puts its header's layout on QEMU's command line: every
// driver name, property key and value must be in the allowed set, or openState refuses it.
func TestStateHeaderRefusesInjection(t *testing.T) {
	cases := map[string]struct {
		edit func(l *layout)
		want string
	}{
		"driver injection":          {func(l *layout) { l.HotCPUs[0].Driver = "loader,file=/etc/shadow,addr=0x0" }, `driver "loader,file=/etc/shadow,addr=0x0" is not the tcg vCPU type`},
		"other device":              {func(l *layout) { l.HotCPUs[0].Driver = "pci-testdev" }, "is not the tcg vCPU type"},
		"driver of the other accel": {func(l *layout) { l.HotCPUs[0].Driver = "host-x86_64-cpu" }, "is not the tcg vCPU type"},
		"property key injection": {func(l *layout) {
			l.HotCPUs[0].Props = map[string]int64{"core-id,romfile=/etc/shadow,x": 1}
		}, `property "core-id,romfile=/etc/shadow,x" is not a vCPU topology property`},
		"unknown property":    {func(l *layout) { l.HotCPUs[0].Props["romfile"] = 1 }, `property "romfile"`},
		"negative property":   {func(l *layout) { l.HotCPUs[0].Props["core-id"] = -1 }, "out of range"},
		"id injection":        {func(l *layout) { l.HotCPUs[0].ID = "cpu1,file=/etc/shadow" }, "is not cpu<number>"},
		"duplicate id":        {func(l *layout) { l.HotCPUs = append(l.HotCPUs, l.HotCPUs[0]) }, "used twice"},
		"unknown accelerator": {func(l *layout) { l.Accel = "kvm,kernel-irqchip=off" }, "accelerator"},
		"more vCPUs than max": {func(l *layout) { l.MaxCPUs = 1 }, "out of range"},
		"absurd max vCPUs":    {func(l *layout) { l.MaxCPUs = 1 << 30 }, "out of range"},
		"odd memory":          {func(l *layout) { l.MemoryBytes = 512<<20 + 1 }, "whole number of MiB"},
		"disk queues":         {func(l *layout) { l.Disks[0].Queues = 0 }, "disk 0"},
		"disk queue size":     {func(l *layout) { l.Disks[0].QueueSize = 1000 }, "disk 0"},
		"MAC injection":       {func(l *layout) { l.NICs[0].MAC = "02:00:00:00:00:0a,romfile=/etc/shadow" }, "not a unicast Ethernet address"},
		"multicast MAC":       {func(l *layout) { l.NICs[0].MAC = "03:00:00:00:00:0a" }, "not a unicast"},
		"NIC queues":          {func(l *layout) { l.NICs[0].Queues = 100000 }, "queue pairs"},
		"NIC queue size":      {func(l *layout) { l.NICs[0].QueueSize = 3 }, "queue size"},
		"MTU":                 {func(l *layout) { l.NICs[0].MTU = 1 << 20 }, "MTU"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			l := goodLayout()
			c.edit(&l)
			f, _, err := openState(writeState(t, t.TempDir(), stateHeader{Layout: l}))
			if err == nil {
				f.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("openState = %v, want an error containing %q", err, c.want)
			}
		})
	}
	f, _, err := openState(writeState(t, t.TempDir(), stateHeader{Layout: goodLayout()}))
	if err != nil {
		t.Fatalf("a valid layout was refused: %v", err)
	}
	f.Close()
}

// Even a name that passed the checks cannot add an option: commas are escaped.
func TestOptStringEscapesNamesAndValues(t *testing.T) {
	got := optString("a,b", []prop{{"k,x", "v,w"}, {"n", 1}})
	if want := "a,,b,k,,x=v,,w,n=1"; got != want {
		t.Errorf("optString = %q, want %q", got, want)
	}
}

// FuzzReadStateHeader: no header, however crafted, may panic the reader, and one it accepts
// only puts allowed names on the command line.
func FuzzReadStateHeader(f *testing.F) {
	good, err := encodeStateHeader(stateHeader{Format: stateFormat, Version: stateVersion, StreamBytes: 8, Layout: goodLayout()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(good, qemuStreamMagic+"\x00\x00\x00\x03"...))
	f.Add([]byte(`{"format":"cocoon-qemu-state","version":1,"stream_bytes":4,"layout":{"accel":"tcg","boot_cpus":1,"max_cpus":2,` +
		`"hot_cpus":[{"driver":"loader,file=/etc/shadow","id":"cpu1","props":{"socket-id":1}}],"memory_bytes":268435456}}`))
	f.Add([]byte("hello"))
	f.Add(make([]byte, stateHeaderSize+8))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "state")
		// Short inputs become a header; the stream length is then made consistent, so the
		// fuzzer reaches the layout checks.
		if len(data) < stateHeaderSize {
			pad := make([]byte, stateHeaderSize-len(data))
			for i := range pad {
				pad[i] = ' '
			}
			data = append(append(data, pad...), qemuStreamMagic...)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, h, err := openState(p)
		if err != nil {
			return
		}
		fh.Close()
		for _, c := range h.Layout.HotCPUs {
			opt := optString(c.Driver, append([]prop{{"id", c.ID}}, sortedProps(c.Props)...))
			for i, kv := range strings.Split(opt, ",") {
				k, _, _ := strings.Cut(kv, "=")
				if i == 0 && k != arches[cmp.Or(h.Layout.Arch, "amd64")].hotCPU[h.Layout.Accel] || i > 0 && k != "id" && !topologyProps[k] {
					t.Fatalf("accepted header puts %q on the command line (%s)", k, opt)
				}
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("reading the state file changed its directory: %v", entries)
		}
	})
}
