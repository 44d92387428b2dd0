package engine

import (
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
	if consoleDevice(platform.ARM64, "qemu") != "ttyAMA0" || consoleDevice(platform.AMD64, "qemu") != "ttyS0" {
		t.Error("console devices")
	}
}
