package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// waitAgent waits until vm inspect reports the guest agent connected.
func waitAgent(t testing.TB, env *harness.Env, name string, timeout time.Duration) {
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
func execResult(t testing.TB, env *harness.Env, stdin []byte, args ...string) (string, string, int) {
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

// checkTTY drives `vm exec -t -i` through a PTY: the guest sees a terminal of the PTY's size,
// Ctrl-C interrupts the foreground command, and the shell's exit code comes back.
func checkTTY(t *testing.T, env *harness.Env, vm string) {
	c := env.StartPTY("vm", "exec", "-t", "-i", vm, "--", "sh")
	c.Send("stty size; tty\r")
	pos := c.Expect(0, "40 120", time.Minute)
	pos = c.Expect(pos, "/dev/pts/", 30*time.Second)
	c.Send("sleep 600\r")
	time.Sleep(2 * time.Second)
	c.Send("\x03") // an interactive shell drops the rest of an interrupted line
	c.Send("echo rc-$?\r")
	pos = c.Expect(pos, "rc-130", 30*time.Second)
	c.Send("exit 5\r")
	var ee *exec.ExitError
	if err := c.Wait(time.Minute); !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Fatalf("tty session exit: %v, want exit status 5", err)
	}
}

// checkCopy copies a tree into the VM and back out, and compares contents, modes and mtimes.
func checkCopy(t *testing.T, env *harness.Env, vm string) {
	src := t.TempDir()
	tree := filepath.Join(src, "tree")
	mustWrite := func(p string, data []byte, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big)
	mustWrite(filepath.Join(tree, "a.txt"), []byte("hello\n"), 0o640)
	mustWrite(filepath.Join(tree, "sub", "deeper", "big.bin"), big, 0o600)
	mustWrite(filepath.Join(tree, "sub", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	if err := os.Symlink("a.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(tree, "a.txt"), old, old); err != nil {
		t.Fatal(err)
	}

	env.MustRun("vm", "cp", tree, vm+":/tmp/copied") // created as /tmp/copied
	env.MustRun("vm", "cp", filepath.Join(tree, "a.txt"), vm+":/tmp")
	out, _, code := execResult(t, env, nil, "vm", "exec", vm, "--", "sh", "-c",
		"cat /tmp/copied/a.txt /tmp/a.txt; stat -c '%a %Y' /tmp/copied/a.txt /tmp/copied/sub/run.sh; readlink /tmp/copied/link; ls -ld /tmp | cut -c1-10")
	want := fmt.Sprintf("hello\nhello\n640 %d\n755 ", old.Unix())
	if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "\na.txt\ndrwxrwxrwt") {
		t.Fatalf("tree in the guest: code %d\n%s\nwant prefix %q, link a.txt and /tmp still 1777", code, out, want)
	}

	dst := t.TempDir()
	env.MustRun("vm", "cp", vm+":/tmp/copied", filepath.Join(dst, "back"))
	for _, rel := range []string{"a.txt", "sub/deeper/big.bin", "sub/run.sh"} {
		a, _ := os.ReadFile(filepath.Join(tree, rel))
		b, err := os.ReadFile(filepath.Join(dst, "back", rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after the round trip (err %v)", rel, err)
		}
		sa, _ := os.Stat(filepath.Join(tree, rel))
		sb, _ := os.Stat(filepath.Join(dst, "back", rel))
		if sa.Mode() != sb.Mode() || !sa.ModTime().Equal(sb.ModTime()) {
			t.Fatalf("%s: mode/mtime %v %v, want %v %v", rel, sb.Mode(), sb.ModTime(), sa.Mode(), sa.ModTime())
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "back", "link")); err != nil || l != "a.txt" {
		t.Fatalf("symlink back: %q %v", l, err)
	}

	// '-': a tar on stdout, and a tar from stdin into an existing directory.
	tarOut, _, code := execResult(t, env, nil, "vm", "cp", vm+":/tmp/copied/sub", "-")
	if code != 0 || !bytes.Contains([]byte(tarOut), []byte("sub/deeper/big.bin")) {
		t.Fatalf("cp to stdout: code %d, %d bytes", code, len(tarOut))
	}
	if _, errOut, code := execResult(t, env, []byte(tarOut), "vm", "cp", "-", vm+":/root"); code != 0 {
		t.Fatalf("cp from stdin: code %d: %s", code, errOut)
	}
	if out, _, _ := execResult(t, env, nil, "vm", "exec", vm, "--", "cat", "/root/sub/run.sh"); out != "#!/bin/sh\necho hi\n" {
		t.Fatalf("cp from stdin: run.sh is %q", out)
	}
	env.MustFail("is not a directory", "vm", "cp", "-", vm+":/tmp/a.txt")
	env.MustFail("exactly one of SRC and DST", "vm", "cp", tree, dst)
}

// checkPortForward serves a page from inside the guest on 127.0.0.1:8080 and fetches it through
// `vm port-forward`.
func checkPortForward(t *testing.T, env *harness.Env, vm string) {
	if _, errOut, code := execResult(t, env, nil, "vm", "exec", vm, "--", "sh", "-c",
		"mkdir -p /tmp/www && echo served-from-guest >/tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www"); code != 0 {
		t.Fatalf("start guest httpd: code %d: %s", code, errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Cmd(ctx, "vm", "port-forward", vm, "0:8080")
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = c.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("port-forward printed no address: %v", err)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "Forwarding from "))[0]
	for i := range 3 { // several connections, one after another
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("GET %d through port-forward: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "served-from-guest\n" {
			t.Fatalf("GET %d through port-forward: %q", i, body)
		}
	}
}

func TestAgentTiny(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustRun("vm", "run", "--name", "a1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	waitAgent(t, env, "a1", bootTimeout)
	checkExecBasics(t, env, "a1")
	checkTTY(t, env, "a1")
	checkCopy(t, env, "a1")
	checkPortForward(t, env, "a1")

	// vm logs: the console log, whole or its tail; no agent involved.
	if out := env.MustRun("vm", "logs", "a1"); !strings.Contains(out, "COCOON-READY hostname=a1") {
		t.Fatalf("vm logs lacks the ready line:\n%s", tail(out))
	}
	if out := env.MustRun("vm", "logs", "--tail", "2", "a1"); strings.Count(out, "\n") > 2 || strings.Contains(out, "COCOON-READY") {
		t.Fatalf("vm logs --tail 2 printed:\n%s", out)
	}

	// Snapshot with a session running, clone: the clone's agent answers at once, and the
	// session it inherited (its host side is gone) is ended, while the source's goes on.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := env.Cmd(ctx, "vm", "exec", "a1", "--", "sleep", "600")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	defer bg.Wait() //nolint:errcheck
	countSleep := func(vm string) string {
		out, _, _ := execResult(t, env, nil, "vm", "exec", vm, "--", "sh", "-c", "ps | grep -c '[s]leep 600'")
		return strings.TrimSpace(out)
	}
	for deadline := time.Now().Add(time.Minute); countSleep("a1") != "1"; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("background exec session did not start in a1")
		}
	}
	env.MustRun("snapshot", "save", "--name", "a1-snap", "a1")
	env.MustRun("vm", "clone", "--name", "a1c", "a1-snap")
	if out, errOut, code := execResult(t, env, nil, "vm", "exec", "a1c", "--", "cat", "/tmp/copied/a.txt"); code != 0 || out != "hello\n" {
		t.Fatalf("exec in the clone right after clone: code %d stdout %q stderr %q", code, out, errOut)
	}
	for deadline := time.Now().Add(time.Minute); countSleep("a1c") != "0"; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("the clone kept the source's exec session running")
		}
	}
	if n := countSleep("a1"); n != "1" {
		t.Fatalf("source's exec session gone after the snapshot (count %s)", n)
	}
	cancel()
	env.MustRun("vm", "rm", "--force", "a1c")

	// A VM without an agent fails fast and says why; so does a stopped one.
	env.MustRun("vm", "create", "--name", "plain", "--nics", "0", "--cpu", "1", "--memory", "512M", "--no-agent", ref)
	if r := env.MustFail("no guest agent in VM plain: it was created with --no-agent", "vm", "exec", "plain", "--", "true"); !strings.Contains(r.Err.Error(), "125") {
		t.Fatalf("no-agent exec exit: %v, want 125", r.Err)
	}
	env.MustFail("no guest agent in VM plain", "vm", "exec", "plain", "--", "true")
	// A guest killed mid-session: the exec ends at once with a clear error, no hang.
	var killedErr bytes.Buffer
	killed := env.Cmd(context.Background(), "vm", "exec", "a1", "--", "sh", "-c", "echo started; sleep 600")
	killedOut, err := killed.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	killed.Stderr = &killedErr
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(killedOut).ReadString('\n'); err != nil || line != "started\n" {
		t.Fatalf("exec before the kill: %q %v", line, err)
	}
	env.MustRun("vm", "stop", "--force", "a1")
	done := make(chan error, 1)
	go func() { done <- killed.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 125 || !strings.Contains(killedErr.String(), "connection to the guest agent lost") {
			t.Fatalf("exec across a killed guest: %v, stderr %q", err, killedErr.String())
		}
	case <-time.After(time.Minute):
		_ = killed.Process.Kill()
		t.Fatal("exec hung after the guest was killed")
	}
	env.MustFail("no guest agent in VM a1: the VM is stopped, not running", "vm", "exec", "a1", "--", "true")
}

func TestAgentDebianSystemd(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	layout := harness.RequireImage(t, "debian")
	env := harness.NewEnv(t)
	ref := harness.NewRegistry(t).PushLayout(layout, "cocoon/debian:12")
	env.MustRun("image", "pull", ref)

	env.MustRun("vm", "run", "--name", "deb", "--nics", "0", "--cpu", "2", "--memory", "1G", ref)
	waitAgent(t, env, "deb", 6*time.Minute)
	if out, _, code := execResult(t, env, nil, "vm", "exec", "deb", "--", "systemctl", "is-active", "cocoon-agent"); code != 0 || out != "active\n" {
		t.Fatalf("cocoon-agent.service: code %d %q", code, out)
	}
	checkExecBasics(t, env, "deb")
	checkTTY(t, env, "deb")
	checkCopy(t, env, "deb")
}

func TestAgentCloudImage(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "qemu-img", "mkfs.erofs")
	qcow := harness.RequireImage(t, "cloud.qcow2")
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
		t.Skip("OVMF firmware not found: install ovmf (make deps)")
	}
	env := harness.NewEnv(t)
	url := harness.ServeFile(t, qcow)
	env.MustRun("image", "pull", url)

	env.MustRun("vm", "run", "--name", "cl", "--nics", "0", "--cpu", "2", "--memory", "1G", url)
	// cloud-init enables the agent in its final stage, after a NIC-less guest's 2-minute
	// network-online wait; under TCG on a loaded host that is many minutes.
	waitAgent(t, env, "cl", 20*time.Minute)
	out, errOut, code := execResult(t, env, nil, "vm", "exec", "cl", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Fatalf("exec: stdout %q stderr %q code %d", out, errOut, code)
	}
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	if out, _, code := execResult(t, env, data, "vm", "exec", "-i", "cl", "--", "sha256sum"); code != 0 || !strings.HasPrefix(out, fmt.Sprintf("%x", sha256.Sum256(data))) {
		t.Fatalf("stdin checksum in the guest: code %d %q", code, out)
	}

	// The second boot has no cidata; the agent comes back from fstab and the enabled unit.
	env.MustRun("vm", "stop", "cl")
	env.MustRun("vm", "start", "cl")
	waitAgent(t, env, "cl", 12*time.Minute)
	if out, _, code := execResult(t, env, nil, "vm", "exec", "cl", "--", "hostname"); code != 0 || out != "cl\n" {
		t.Fatalf("exec after restart: code %d %q", code, out)
	}
}
