package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

type doctorReport struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

func (r doctorReport) status(name string) string {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return ""
}

// TestDoctor runs `cocoon doctor` on this machine (the real KVM, binaries and sysctls) and
// `--fix` against the env's temp dirs and a fake /proc/sys, so the machine is left as it was.
func TestDoctor(t *testing.T) {
	env := harness.NewEnv(t)
	procSys, sysctlDir := t.TempDir(), t.TempDir()
	for key, val := range map[string]string{"net/ipv4/ip_forward": "0", "fs/aio-max-nr": "65536", "vm/nr_hugepages": "0"} {
		p := filepath.Join(procSys, key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(val+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fake := []string{"--proc-sys", procSys, "--sysctl-dir", sysctlDir, "--netns-dir", filepath.Join(t.TempDir(), "netns")}

	// The real machine, read only: every line is one of the four statuses, and KVM is
	// reported as this host has it.
	real := env.Run("doctor")
	for _, l := range strings.Split(strings.TrimSpace(real.Stdout), "\n") {
		if !strings.HasPrefix(l, "[PASS] ") && !strings.HasPrefix(l, "[WARN] ") && !strings.HasPrefix(l, "[FAIL] ") &&
			!strings.HasPrefix(l, "       → ") && !strings.HasPrefix(l, "doctor: ") {
			t.Errorf("unexpected line %q", l)
		}
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil && !strings.Contains(real.Stdout, "[WARN] kvm: KVM unusable") {
		t.Errorf("PVM host not reported as TCG-only:\n%s", real.Stdout)
	}

	var before doctorReport
	if err := json.Unmarshal([]byte(env.Run(append([]string{"doctor", "--output", "json"}, fake...)...).Stdout), &before); err != nil {
		t.Fatal(err)
	}
	if before.OK || before.status("cni conflist") != "FAIL" || before.status("sysctl fs.aio-max-nr") != "WARN" {
		t.Fatalf("before --fix: %+v", before)
	}
	var after doctorReport
	if err := json.Unmarshal([]byte(env.MustRun(append([]string{"doctor", "--fix", "--output", "json"}, fake...)...)), &after); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cni conflist", "sysctl net.ipv4.ip_forward", "sysctl fs.aio-max-nr"} {
		if after.status(name) != "FIXED" {
			t.Errorf("--fix %s: %s", name, after.status(name))
		}
	}
	if data, _ := os.ReadFile(filepath.Join(procSys, "net/ipv4/ip_forward")); strings.TrimSpace(string(data)) != "1" {
		t.Errorf("ip_forward not set in the fake /proc/sys: %q", data)
	}
	// Idempotent, and the wrapper for the original's users runs the same checks.
	again := env.MustRun(append([]string{"doctor", "--fix"}, fake...)...)
	if strings.Contains(again, "[FIXED]") || strings.Contains(again, "[FAIL]") {
		t.Errorf("second --fix:\n%s", again)
	}
	script, _ := filepath.Abs("../../doctor/check.sh")
	cmd := exec.Command(script, "--json")
	cmd.Env = append(os.Environ(), "COCOON_BIN="+env.Bin, "COCOON_ROOT_DIR="+env.Root)
	out, _ := cmd.Output()
	var viaScript doctorReport
	if err := json.Unmarshal(out, &viaScript); err != nil || len(viaScript.Checks) != len(after.Checks) {
		t.Fatalf("check.sh --json: %v\n%s", err, out)
	}
	if err := exec.Command(script, "--upgrade").Run(); err == nil {
		t.Error("check.sh --upgrade must refuse")
	}
}
