package engine

import (
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/platform"
)

func TestVMPlatform(t *testing.T) {
	arm := &image.Image{Ref: "tiny", Platform: platform.ARM64}
	cloud := &image.Image{Ref: "https://x/disk.qcow2"}
	for _, c := range []struct {
		want string
		img  *image.Image
		got  string
		err  string
	}{
		{"", arm, platform.ARM64, ""},
		{"linux/arm64", arm, platform.ARM64, ""},
		{"linux/amd64", arm, "", "image tiny is linux/arm64, not linux/amd64: pull it with --platform linux/amd64"},
		{"linux/s390x", arm, "", `unknown platform "linux/s390x"`},
		{"", cloud, platform.Host(), ""},
		{"linux/arm64", cloud, platform.ARM64, ""},
	} {
		got, err := vmPlatform(c.want, c.img)
		if got != c.got || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("vmPlatform(%q, %s) = %q, %v; want %q, %q", c.want, c.img.Ref, got, err, c.got, c.err)
		}
	}
	if err := checkClonePlatform("linux/amd64", "s1", platform.ARM64); err == nil || !strings.Contains(err.Error(), "clones only onto linux/arm64") {
		t.Errorf("cross-platform clone: %v", err)
	}
	if err := checkClonePlatform("", "s1", platform.ARM64); err != nil {
		t.Errorf("clone without --platform: %v", err)
	}
	var serial, virtio hypervisor.Capabilities
	virtio.Console = "hvc0"
	if consoleDevice(platform.ARM64, serial) != "ttyAMA0" || consoleDevice(platform.AMD64, serial) != "ttyS0" || consoleDevice(platform.AMD64, virtio) != "hvc0" {
		t.Error("console devices")
	}
}

func TestKernelCmdlineNamesDisksByPathWhereThereAreNoSerials(t *testing.T) {
	vm := &VM{Name: "fc1", Disks: []hypervisor.Disk{{Serial: "cocoon-layer0"}, {Serial: "cocoon-layer1"}, {Serial: "cocoon-agent"}, {Serial: "cocoon-cow"}}}
	top := []string{"cocoon-agent", "cocoon-layer1", "cocoon-layer0"}
	bySerial := kernelCmdline(vm, hypervisor.Capabilities{}, top, nil)
	if !strings.Contains(bySerial, "cocoon.layers=cocoon-agent,cocoon-layer1,cocoon-layer0 cocoon.cow=cocoon-cow") {
		t.Errorf("serial cmdline: %s", bySerial)
	}
	byPath := kernelCmdline(vm, hypervisor.Capabilities{DisksByPath: true, KernelArgs: []string{"reboot=k", "pci=off"}}, top, nil)
	for _, want := range []string{"cocoon.layers=/dev/vdc,/dev/vdb,/dev/vda cocoon.cow=/dev/vdd", " reboot=k pci=off"} {
		if !strings.Contains(byPath, want) {
			t.Errorf("by-path cmdline lacks %q: %s", want, byPath)
		}
	}
	for i, want := range map[int]string{0: "/dev/vda", 25: "/dev/vdz", 26: "/dev/vdaa", 27: "/dev/vdab", 701: "/dev/vdzz", 702: "/dev/vdaaa"} {
		if got := devicePath(i); got != want {
			t.Errorf("devicePath(%d) = %s, want %s", i, got, want)
		}
	}
}
