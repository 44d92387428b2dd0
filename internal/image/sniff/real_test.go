package sniff

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Images made by the real tools are recognised as raw disks.
func TestDetectRealDisks(t *testing.T) {
	cases := map[string]struct {
		size int64
		cmd  []string // {} is the image path
		in   string
	}{
		"ext4":     {16 << 20, []string{"mkfs.ext4", "-q", "-F", "{}"}, ""},
		"xfs":      {320 << 20, []string{"mkfs.xfs", "-q", "-f", "{}"}, ""},
		"vfat":     {16 << 20, []string{"mkfs.vfat", "{}"}, ""},
		"swap":     {16 << 20, []string{"mkswap", "{}"}, ""},
		"gpt":      {16 << 20, []string{"sfdisk", "-q", "{}"}, "label: gpt\n,,L\n"},
		"mbr":      {16 << 20, []string{"sfdisk", "-q", "{}"}, "label: dos\n,,L\n"},
		"mbr+ext4": {16 << 20, []string{"sh", "-c", "printf 'label: dos\\n,,L\\n' | sfdisk -q {} && mkfs.ext4 -q -F -E offset=1048576 {} 8M"}, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath(c.cmd[0]); err != nil {
				t.Skipf("%s binary not found", c.cmd[0])
			}
			p := filepath.Join(t.TempDir(), "disk.raw")
			if err := os.WriteFile(p, nil, 0o600); err != nil || os.Truncate(p, c.size) != nil {
				t.Fatal(err)
			}
			args := make([]string, len(c.cmd))
			for i, a := range c.cmd {
				args[i] = strings.ReplaceAll(a, "{}", p)
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdin = strings.NewReader(c.in)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v: %s", args, err, out)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, HeadSize)
			if _, err := io.ReadFull(f, head); err != nil {
				t.Fatal(err)
			}
			if got, err := Detect(head); got != Raw || err != nil {
				t.Fatalf("Detect = %q, %v; want raw", got, err)
			}
		})
	}
}
