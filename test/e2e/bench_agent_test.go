package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// BenchmarkAgent: `vm exec VM -- true` round trip (median of 50), exec throughput both ways,
// and a download through `vm port-forward` against the same download over the CNI network.
func BenchmarkAgent(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs", "nsenter")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	h := harness.NewHostNet(b, env, 67)
	env.MustRun("vm", "run", "--name", "ag", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("ag")
	env.WaitConsole(vm, "COCOON-READY", 5*time.Minute)
	waitAgent(b, env, "ag", 5*time.Minute)

	var rtts []time.Duration
	for range 50 {
		t0 := time.Now()
		if _, errOut, code := execResult(b, env, nil, "vm", "exec", "ag", "--", "true"); code != 0 {
			b.Fatalf("exec true: %d %s", code, errOut)
		}
		rtts = append(rtts, time.Since(t0))
	}
	b.ReportMetric(float64(median(rtts).Milliseconds()), "exec-true-ms")

	const mb = 20
	payload := make([]byte, mb<<20)
	_, _ = rand.Read(payload)
	t0 := time.Now()
	if _, errOut, code := execResult(b, env, payload, "vm", "exec", "-i", "ag", "--", "sh", "-c", "cat >/dev/null"); code != 0 {
		b.Fatalf("exec stdin: %d %s", code, errOut)
	}
	b.ReportMetric(mb/time.Since(t0).Seconds(), "exec-stdin-MB/s")
	t0 = time.Now()
	// dd, not busybox head: head itself manages about 1 MB/s under TCG.
	out, errOut, code := execResult(b, env, nil, "vm", "exec", "ag", "--", "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=32768 count=%d 2>/dev/null", mb*32))
	if code != 0 || len(out) != mb<<20 {
		b.Fatalf("exec stdout: %d, %d bytes, %s", code, len(out), errOut)
	}
	b.ReportMetric(mb/time.Since(t0).Seconds(), "exec-stdout-MB/s")

	// The same bytes through a pipe inside the guest: the ceiling a guest this slow sets.
	t0 = time.Now()
	if _, errOut, code := execResult(b, env, nil, "vm", "exec", "ag", "--", "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=32768 count=%d 2>/dev/null | cat >/dev/null", mb*32)); code != 0 {
		b.Fatalf("guest pipe: %d %s", code, errOut)
	}
	b.ReportMetric(mb/time.Since(t0).Seconds(), "guest-pipe-MB/s")

	// vm cp of one file, in and back out.
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blob"), payload, 0o600); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	env.MustRun("vm", "cp", filepath.Join(dir, "blob"), "ag:/tmp/blob")
	b.ReportMetric(mb/time.Since(t0).Seconds(), "cp-in-MB/s")
	t0 = time.Now()
	env.MustRun("vm", "cp", "ag:/tmp/blob", filepath.Join(dir, "back"))
	b.ReportMetric(mb/time.Since(t0).Seconds(), "cp-out-MB/s")
	if back, err := os.ReadFile(filepath.Join(dir, "back")); err != nil || !bytes.Equal(back, payload) {
		b.Fatalf("cp round trip differs (err %v)", err)
	}
	env.MustRun("vm", "exec", "ag", "--", "rm", "/tmp/blob")

	// The same HTTP download from the guest's httpd, over the network and through the agent.
	if _, errOut, code := execResult(b, env, nil, "vm", "exec", "ag", "--", "sh", "-c",
		fmt.Sprintf("mkdir -p /tmp/www && head -c %d /dev/zero >/tmp/www/blob && httpd -p 8080 -h /tmp/www", mb<<20)); code != 0 {
		b.Fatalf("start httpd: %d %s", code, errOut)
	}
	netMBps := download(b, h, vm.Networks[0].IP, "8080", mb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pf := env.Cmd(ctx, "vm", "port-forward", "ag", "0:8080")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = pf.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("port-forward: %v", err)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "Forwarding from "))[0]
	host, port, _ := strings.Cut(addr, ":")
	pfMBps := download(b, h, host, port, mb)
	b.ReportMetric(netMBps, "cni-download-MB/s")
	b.ReportMetric(pfMBps, "port-forward-download-MB/s")
	b.ReportMetric(pfMBps/netMBps, "port-forward/cni")
}

// download fetches /blob over HTTP/1.0 from inside the host netns and returns MB/s.
func download(b *testing.B, h *harness.HostNet, host, port string, mb int) float64 {
	b.Helper()
	t0 := time.Now()
	out, err := exec.Command("nsenter", "--net=/run/netns/"+h.Netns, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && printf 'GET /blob HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3 | wc -c", host, port)).CombinedOutput()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n < mb<<20 {
		b.Fatalf("download from %s:%s: %v, %d bytes: %s", host, port, err, n, out)
	}
	return float64(mb) / time.Since(t0).Seconds()
}
