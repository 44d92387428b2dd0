package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

func TestVersionAndHelp(t *testing.T) {
	env := harness.NewEnv(t)
	out := env.MustRun("version")
	for _, want := range []string{"Version:", "Git hash:", "Built:", "Golang version:", "OS/Arch:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("version output lacks %q:\n%s", want, out)
		}
	}
	help := env.MustRun("--help")
	for _, want := range []string{"image", "vm", "gc", "version", "completion", "--root-dir", "--cni-bin-dir", "--dns"} {
		if !strings.Contains(help, want) {
			t.Fatalf("help lacks %q", want)
		}
	}
	if out := env.MustRun("completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Fatal("no bash completion script")
	}
}

// Bad input: one-line error naming the problem, non-zero exit, nothing written.
func TestBadInputWritesNothing(t *testing.T) {
	env := harness.NewEnv(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("root_dir: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	roFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(roFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		want string
		args []string
	}{
		{"unknown flag: --bogus", []string{"vm", "list", "--bogus"}},
		{"--cpu must be at least 1", []string{"vm", "create", "--cpu", "0", "tiny"}},
		{"exceeds the host's", []string{"vm", "create", "--cpu", "4096", "tiny"}},
		{`invalid --memory "0"`, []string{"vm", "create", "--memory", "0", "tiny"}},
		{"--memory must be at least 512M", []string{"vm", "create", "--memory", "1K", "tiny"}},
		{`invalid --storage "-1G"`, []string{"vm", "create", "--storage", "-1G", "tiny"}},
		{"--bridge and --network are mutually exclusive", []string{"vm", "create", "--bridge", "br0", "--network", "n", "tiny"}},
		{"--fc and --windows are mutually exclusive", []string{"vm", "create", "--fc", "--windows", "tiny"}},
		{`VM name "-bad" is invalid`, []string{"vm", "create", "--name", "-bad", "tiny"}},
		{`--user "Root!" is invalid`, []string{"vm", "create", "--user", "Root!", "tiny"}},
		{"not supported by this build", []string{"vm", "create", "--hypervisor", "xen", "tiny"}},
		{`image "tiny"`, []string{"vm", "create", "tiny"}},
		{"VM \"nope\": not found", []string{"vm", "stop", "nope"}},
		{"invalid --format", []string{"vm", "list", "-o", "yaml"}},
		{"read config", []string{"--config", bad, "vm", "list"}},
		{"--root-dir " + roFile + "/x is not usable", []string{"--root-dir", roFile + "/x", "vm", "list"}},
	}
	for _, c := range cases {
		env.MustFail(c.want, c.args...)
	}
	// Nothing was created by any of the failures: no VM records, no run or log files.
	if out := env.MustRun("vm", "list"); !strings.Contains(out, "No VMs found.") {
		t.Fatalf("a failed command left a VM:\n%s", out)
	}
	for _, dir := range []string{env.RunDir, env.LogDir} {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Fatalf("%s not empty after failures: %v", dir, entries)
		}
	}
}
