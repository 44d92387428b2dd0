package disk

import (
	"strings"
	"testing"
)

func TestParseDataDisksNormalises(t *testing.T) {
	got, err := ParseDataDisks([]string{"size=64M", "name=data1,size=1G,directio=off", "size=32M,fstype=none", "size=20M,mount=", "size=16M,mount=/srv/x,directio=on"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, fs, mount string
		size            int64
		dio             string
	}{
		{"data2", "ext4", "/mnt/data2", 64 << 20, "auto"},
		{"data1", "ext4", "/mnt/data1", 1 << 30, "off"},
		{"data3", "none", "", 32 << 20, "auto"},
		{"data4", "ext4", "", 20 << 20, "auto"},
		{"data5", "ext4", "/srv/x", 16 << 20, "on"},
	}
	for i, w := range want {
		d := got[i]
		dio := "auto"
		if d.DirectIO != nil {
			dio = map[bool]string{true: "on", false: "off"}[*d.DirectIO]
		}
		if d.Name != w.name || d.FSType != w.fs || d.MountPoint != w.mount || d.Size != w.size || dio != w.dio {
			t.Errorf("disk %d = %+v (directio %s), want %+v", i, d, dio, w)
		}
	}
}

func TestParseDataDisksErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                    "--data-disk: empty spec",
		"size":                                `"size" is not key=value`,
		"size=abc":                            "invalid size",
		"size=1M":                             "below 16MiB minimum",
		"size=64M,name=Data":                  `invalid name "Data"`,
		"size=64M,name=cocoon-x":              `invalid name "cocoon-x"`,
		"size=64M,name=a23456789012345678901": "invalid name",
		"size=64M,fstype=xfs":                 `unsupported fstype "xfs"`,
		"size=64M,directio=maybe":             "directio must be on/off/auto",
		"size=64M,color=red":                  `unknown key "color"`,
		"name=x":                              "size= required",
		"size=64M,fstype=none,mount=/x":       "--data-disk 1: fstype=none requires empty mount",
		"size=64M,mount=relative":             "must be an absolute path",
		"size=64M,mount=/a b":                 "must be an absolute path",
		"size=64M,size=1G":                    "given twice",
	} {
		_, err := ParseDataDisks([]string{spec})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", spec, err, want)
		}
	}
	if _, err := ParseDataDisks([]string{"size=64M,name=x", "size=64M,name=x"}); err == nil || !strings.Contains(err.Error(), `name "x" duplicated`) {
		t.Errorf("duplicate names: %v", err)
	}
}
