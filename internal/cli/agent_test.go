package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplitVMPath(t *testing.T) {
	for _, c := range []struct {
		in, vm, p string
		ok        bool
	}{
		{"vm1:/etc/hosts", "vm1", "/etc/hosts", true},
		{"/tmp/a:b", "", "", false},
		{"./x:y", "", "", false},
		{"plain", "", "", false},
		{":/x", "", "", false},
	} {
		vm, p, ok := splitVMPath(c.in)
		if vm != c.vm || p != c.p || ok != c.ok {
			t.Errorf("splitVMPath(%q) = %q %q %v", c.in, vm, p, ok)
		}
	}
}

func TestParseForward(t *testing.T) {
	f, err := parseForward("8080:80")
	if err != nil || f.addr != "127.0.0.1:8080" || f.remote != 80 {
		t.Fatalf("8080:80 → %+v %v", f, err)
	}
	f, err = parseForward("0.0.0.0:0:22")
	if err != nil || f.addr != "0.0.0.0:0" || f.remote != 22 {
		t.Fatalf("0.0.0.0:0:22 → %+v %v", f, err)
	}
	for _, bad := range []string{"80", "a:80", "8080:0", "8080:70000", "nohost:1:2", "1:2:3:4"} {
		if _, err := parseForward(bad); err == nil {
			t.Errorf("parseForward(%q) accepted", bad)
		}
	}
}

func TestSeekLastLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var lines []string
	for i := range 20000 { // several read blocks
		lines = append(lines, strings.Repeat("x", i%7)+"line")
	}
	content := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 3, 19999, 20000, 50000} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := seekLastLines(f, n, 0); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		want := ""
		if n > 0 {
			want = strings.Join(lines[max(len(lines)-n, 0):], "\n") + "\n"
		}
		if string(got) != want {
			t.Fatalf("tail %d: got %d bytes, want %d", n, len(got), len(want))
		}
	}
}
