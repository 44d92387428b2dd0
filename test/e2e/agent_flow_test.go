package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// countingReader counts what was read of r.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestAgentStalledStdin: a command that never reads its stdin is fed 40 MiB; it holds back
// only its own stdin (the client stops at the flow-control window), while concurrent execs,
// a data round trip and a port-forward on the same VM complete, --timeout still kills a
// second such command, and an interrupt still reaches the first.
func TestAgentStalledStdin(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "st", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	waitAgent(t, env, "st", bootTimeout)
	if _, errOut, code := execResult(t, env, nil, "vm", "exec", "st", "--", "sh", "-c",
		"mkdir -p /tmp/www && echo served-from-guest >/tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www"); code != 0 {
		t.Fatalf("start guest httpd: code %d: %s", code, errOut)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdin := &countingReader{r: bytes.NewReader(make([]byte, 40<<20))}
	stalled := env.Cmd(ctx, "vm", "exec", "-i", "st", "--", "sleep", "600")
	stalled.Stdin = stdin
	var stalledErr bytes.Buffer
	stalled.Stderr = &stalledErr
	if err := stalled.Start(); err != nil {
		t.Fatal(err)
	}
	stalledDone := make(chan error, 1)
	go func() { stalledDone <- stalled.Wait() }()

	pf := env.Cmd(ctx, "vm", "port-forward", "st", "0:8080")
	pfOut, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pf.Wait() }()
	line, err := bufio.NewReader(pfOut).ReadString('\n')
	if err != nil {
		t.Fatalf("port-forward printed no address: %v", err)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "Forwarding from "))[0]

	// Meanwhile: concurrent execs, 4 MB through cat, a download through the port-forward.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() {
			want := fmt.Sprintf("hello-%d", i)
			if out, errOut, code := execResult(t, env, nil, "vm", "exec", "st", "--", "echo", want); code != 0 || out != want+"\n" {
				errs <- fmt.Errorf("concurrent exec %d: code %d stdout %q stderr %q", i, code, out, errOut)
			}
		})
	}
	wg.Go(func() {
		data := make([]byte, 4<<20)
		_, _ = rand.Read(data)
		out, errOut, code := execResult(t, env, data, "vm", "exec", "-i", "st", "--", "cat")
		if code != 0 || sha256.Sum256([]byte(out)) != sha256.Sum256(data) {
			errs <- fmt.Errorf("4 MB through cat: code %d, %d bytes back, stderr %q", code, len(out), errOut)
		}
	})
	wg.Go(func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			errs <- fmt.Errorf("GET through port-forward: %w", err)
			return
		}
		defer resp.Body.Close()
		if body, _ := io.ReadAll(resp.Body); string(body) != "served-from-guest\n" {
			errs <- fmt.Errorf("GET through port-forward: %q", body)
		}
	})
	// A second never-reading command with --timeout: the kill reaches it past its stalled stdin.
	wg.Go(func() {
		_, errOut, code := execResult(t, env, make([]byte, 40<<20), "vm", "exec", "-i", "--timeout", "10s", "st", "--", "sleep", "600")
		if code != 124 {
			errs <- fmt.Errorf("--timeout on a command with stalled stdin: code %d stderr %q, want 124", code, errOut)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The stalled command's client took about its window of stdin (plus what the command's
	// stdin pipe in the guest, up to 1 MiB, the pipe from this test and read-ahead hold), not
	// the 40 MiB.
	if n := stdin.n.Load(); n < proto.WindowSize || n > 4*proto.WindowSize {
		t.Errorf("the stalled command's client read %d bytes of its stdin, want between %d and %d", n, proto.WindowSize, 4*proto.WindowSize)
	}
	// An interrupt of the client reaches the command past its stalled stdin (SIGTERM is
	// forwarded as TERM: 128+15).
	if err := stalled.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := <-stalledDone; !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("stalled exec after SIGTERM: %v, want exit 143; stderr %q", err, stalledErr.String())
	}
}
