package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// waitAgent waits until vm inspect reports the guest agent connected.
func waitAgent(t *testing.T, env *harness.Env, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := env.Cmd(context.Background(), "vm", "inspect", name).Output()
		var v struct {
			Agent string `json:"agent"`
		}
		if err == nil && json.Unmarshal(out, &v) == nil && v.Agent == "connected" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest agent of %s not connected after %s (inspect agent=%q)", name, timeout, v.Agent)
		}
		time.Sleep(2 * time.Second)
	}
}

// execResult runs cocoon with stdin and returns stdout, stderr and the exit code.
func execResult(t *testing.T, env *harness.Env, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := env.Cmd(ctx, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("cocoon %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// checkExecBasics covers stdout/stderr/exit code, a 10 MB round trip, concurrency, a missing
// command and a closed stdin on a VM whose agent is connected.
func checkExecBasics(t *testing.T, env *harness.Env, vm string) {
	out, errOut, code := execResult(t, env, nil, "vm", "exec", vm, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Fatalf("exec: stdout %q stderr %q code %d, want \"out\\n\" \"err\\n\" 3", out, errOut, code)
	}

	data := make([]byte, 10<<20)
	_, _ = rand.Read(data)
	out, errOut, code = execResult(t, env, data, "vm", "exec", "-i", vm, "--", "cat")
	if code != 0 || sha256.Sum256([]byte(out)) != sha256.Sum256(data) {
		t.Fatalf("10 MB through cat: code %d, %d bytes back (stderr %q), checksum differs", code, len(out), errOut)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("hello-%d", i)
			out, errOut, code := execResult(t, env, nil, "vm", "exec", vm, "--", "echo", want)
			if code != 0 || out != want+"\n" {
				errs <- fmt.Errorf("concurrent exec %d: code %d stdout %q stderr %q", i, code, out, errOut)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		out, _, _ := execResult(t, env, nil, "vm", "exec", vm, "--", "sh", "-c", "tail -50 /run/cocoon-agent.log; journalctl -u cocoon-agent | tail -50")
		t.Fatalf("agent log:\n%s", out)
	}

	if _, errOut, code := execResult(t, env, nil, "vm", "exec", vm, "--", "no-such-command"); code != 127 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing command: code %d stderr %q, want 127 and 'not found'", code, errOut)
	}
	// -i with an empty stdin: cat sees EOF at once.
	if out, _, code := execResult(t, env, []byte{}, "vm", "exec", "-i", vm, "--", "cat"); code != 0 || out != "" {
		t.Fatalf("closed stdin: code %d stdout %q", code, out)
	}
	// Environment, working directory and user.
	out, _, code = execResult(t, env, nil, "vm", "exec", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "65534", vm, "--", "sh", "-c", `echo "$FOO|$(pwd)|$(id -u)"`)
	if code != 0 || out != "bar baz|/tmp|65534\n" {
		t.Fatalf("env/workdir/user: code %d stdout %q", code, out)
	}
	// --timeout kills a command that runs too long, with timeout(1)'s exit code.
	if _, errOut, code := execResult(t, env, nil, "vm", "exec", "--timeout", "3s", vm, "--", "sleep", "600"); code != 124 || !strings.Contains(errOut, "--timeout") {
		t.Fatalf("timeout: code %d stderr %q, want 124", code, errOut)
	}
}

func TestAgentTiny(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustRun("vm", "run", "--name", "a1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	waitAgent(t, env, "a1", bootTimeout)
	checkExecBasics(t, env, "a1")

	// A VM without an agent fails fast and says why; so does a stopped one.
	env.MustRun("vm", "create", "--name", "plain", "--nics", "0", "--cpu", "1", "--memory", "512M", "--no-agent", ref)
	if r := env.MustFail("no guest agent in VM plain: it was created with --no-agent", "vm", "exec", "plain", "--", "true"); !strings.Contains(r.Err.Error(), "125") {
		t.Fatalf("no-agent exec exit: %v, want 125", r.Err)
	}
	env.MustFail("no guest agent in VM plain", "vm", "exec", "plain", "--", "true")
	env.MustRun("vm", "stop", "a1")
	env.MustFail("no guest agent in VM a1: the VM is stopped, not running", "vm", "exec", "a1", "--", "true")
}
