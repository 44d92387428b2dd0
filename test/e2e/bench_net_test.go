package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

var rttRE = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)

// netPath measures RTT (ms) and host→guest TCP throughput (MB/s) to a guest IP from the host netns.
func netPath(b *testing.B, env *harness.Env, h *harness.HostNet, vm, ip string) (rtt, mbps float64) {
	b.Helper()
	out, err := h.Exec("ping", "-c", "20", "-i", "0.2", "-q", ip)
	m := rttRE.FindStringSubmatch(out)
	if err != nil || m == nil {
		b.Fatalf("ping %s: %v\n%s", ip, err, out)
	}
	rtt, _ = strconv.ParseFloat(m[1], 64)
	c := env.AttachConsole(vm)
	pos := c.Prompt("tiny# ", time.Minute)
	c.Send("nc -l -p 5001 > /dev/null & echo NC-$((1+1))\r")
	c.Expect(pos, "NC-2", time.Minute)
	c.Send("\r\x1d.")
	_ = c.Wait(15 * time.Second)
	const mb = 32
	t0 := time.Now()
	send := exec.Command("nsenter", "--net=/run/netns/"+h.Netns, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/5001 && dd if=/dev/zero bs=1M count=%d >&3 2>/dev/null", ip, mb))
	if out, err := send.CombinedOutput(); err != nil {
		b.Fatalf("send to %s: %v %s", ip, err, out)
	}
	return rtt, mb / time.Since(t0).Seconds()
}

// BenchmarkNetworkPaths: TC-redirect (CNI) against a plain TAP on a bridge, and what CNI adds
// to vm create.
func BenchmarkNetworkPaths(b *testing.B) {
	harness.Require(b, "qemu-system-x86_64", "mkfs.erofs", "nsenter", "dnsmasq")
	env := harness.NewEnv(b)
	layout := harness.RequireImage(b, "tiny")
	ref := harness.NewRegistry(b).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	h := harness.NewHostNet(b, env, 61)

	var withNet, noNet []time.Duration
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		env.MustRun("vm", "create", "--name", fmt.Sprintf("n%d", i), "--nics", "1", ref)
		withNet = append(withNet, time.Since(t0))
		t0 = time.Now()
		env.MustRun("vm", "create", "--name", fmt.Sprintf("z%d", i), "--nics", "0", ref)
		noNet = append(noNet, time.Since(t0))
		env.MustRun("vm", "rm", fmt.Sprintf("n%d", i), fmt.Sprintf("z%d", i))
	}
	b.ReportMetric(float64((median(withNet) - median(noNet)).Milliseconds()), "cni-setup-ms")

	env.MustRun("vm", "run", "--name", "tc", "--cpu", "1", "--memory", "512M", ref)
	tc := env.Inspect("tc")
	env.WaitConsole(tc, "COCOON-READY", 5*time.Minute)

	br := "cbr" + h.Bridge[4:]
	for _, args := range [][]string{{"ip", "link", "add", br, "type", "bridge"}, {"ip", "addr", "add", "10.233.61.1/24", "dev", br}, {"ip", "link", "set", br, "up"}} {
		if out, err := h.Exec(args...); err != nil {
			b.Fatalf("%v: %v %s", args, err, out)
		}
	}
	dnsmasq := exec.Command("nsenter", "--net=/run/netns/"+h.Netns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--interface="+br, "--bind-interfaces", "--except-interface=lo", "--port=0", "--dhcp-range=10.233.61.50,10.233.61.60,1h",
		"--dhcp-leasefile=/dev/null")
	if err := dnsmasq.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() })
	env.MustRun("vm", "run", "--name", "br", "--cpu", "1", "--memory", "512M", "--bridge", br, ref)
	brVM := env.Inspect("br")
	log := env.WaitConsole(brVM, "COCOON-READY", 5*time.Minute)
	m := regexp.MustCompile(`ips=(10\.233\.61\.\d+)`).FindStringSubmatch(log)
	if m == nil {
		b.Fatalf("bridge guest got no lease:\n%s", tail(log))
	}
	tcRTT, tcMBps := netPath(b, env, h, "tc", tc.Networks[0].IP)
	brRTT, brMBps := netPath(b, env, h, "br", strings.TrimSpace(m[1]))
	b.ReportMetric(tcRTT, "tc-rtt-ms")
	b.ReportMetric(brRTT, "bridge-rtt-ms")
	b.ReportMetric(tcMBps, "tc-MB/s")
	b.ReportMetric(brMBps, "bridge-MB/s")
	b.ReportMetric(tcMBps/brMBps, "tc/bridge-throughput")
	b.ReportMetric(tcRTT/brRTT, "tc/bridge-rtt")
}
