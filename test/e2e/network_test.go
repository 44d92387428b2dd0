package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// netEnv is an env whose commands run inside a throwaway host netns with a bridge conflist.
func netEnv(t *testing.T, subnet int) (*harness.Env, *harness.HostNet, string) {
	t.Helper()
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "nsenter")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI bridge plugin binary not found in /usr/lib/cni: install containernetworking-plugins")
	}
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	h := harness.NewHostNet(t, env, subnet)
	return env, h, ref
}

// assertNoLeaks checks that nothing of vmIDs remains: netns, links, IPAM leases.
func assertNoLeaks(t *testing.T, h *harness.HostNet, vmIDs ...string) {
	t.Helper()
	for _, ns := range harness.Netns(t) {
		for _, id := range vmIDs {
			if strings.Contains(ns, id) {
				t.Errorf("netns %s leaked", ns)
			}
		}
	}
	links, _ := h.Exec("ip", "-o", "link", "show")
	for _, l := range strings.Split(links, "\n") {
		if strings.Contains(l, "veth") || strings.Contains(l, "tap") {
			t.Errorf("link leaked in host netns: %s", l)
		}
	}
	leases, _ := filepath.Glob("/var/lib/cni/networks/" + h.Network + "/10.*")
	if len(leases) > 0 {
		t.Errorf("IPAM leases leaked: %v", leases)
	}
}

func TestNetworkPingMTUAndRestart(t *testing.T) {
	env, h, ref := netEnv(t, 41)
	env.MustRun("vm", "run", "--name", "n1", "--cpu", "1", "--memory", "512M", ref)
	env.MustRun("vm", "run", "--name", "n2", "--cpu", "1", "--memory", "512M", "--nics", "2", ref)
	n1, n2 := env.Inspect("n1"), env.Inspect("n2")
	if len(n1.Networks) != 1 || len(n2.Networks) != 2 {
		t.Fatalf("want 1 and 2 NICs, got %d and %d", len(n1.Networks), len(n2.Networks))
	}
	log := env.WaitConsole(n1, "COCOON-READY", bootTimeout)
	nic := n1.Networks[0]
	want := fmt.Sprintf("COCOON-NIC eth0 mac=%s ip=%s/24 mtu=%d", nic.MAC, nic.IP, harness.MTU)
	if !strings.Contains(log, want) {
		t.Fatalf("guest does not report the CNI identity %q:\n%s", want, tail(log))
	}
	log2 := env.WaitConsole(n2, "COCOON-READY", bootTimeout)
	wantReady := fmt.Sprintf("ips=%s,%s", n2.Networks[0].IP, n2.Networks[1].IP)
	if !strings.Contains(log2, wantReady) {
		t.Fatalf("2-NIC guest lacks %q:\n%s", wantReady, tail(log2))
	}

	// Host namespace → guest, and guest → guest through its console.
	if out, err := h.Exec("ping", "-c", "3", "-W", "5", nic.IP); err != nil {
		t.Fatalf("ping guest from host netns: %v\n%s", err, out)
	}
	c := env.AttachConsole("n1")
	pos := c.Prompt("tiny# ", time.Minute)
	c.Send("ping -c 2 -W 5 " + n2.Networks[0].IP + " && echo PING-OK\r")
	c.Expect(pos, "PING-OK", time.Minute)
	c.Send("\r\x1d.")
	_ = c.Wait(15 * time.Second)

	// stop + start keeps the IP.
	env.MustRun("vm", "stop", "n1")
	env.MustRun("vm", "start", "n1")
	if again := env.Inspect("n1"); again.Networks[0].IP != nic.IP || again.Networks[0].MAC != nic.MAC {
		t.Fatalf("identity changed across restart: %+v → %+v", nic, again.Networks[0])
	}
	waitReadyCount(t, env, n1, 2)
	if out, err := h.Exec("ping", "-c", "3", "-W", "5", nic.IP); err != nil {
		t.Fatalf("ping after restart: %v\n%s", err, out)
	}

	// Host reboot: the netns is gone. start re-creates it with the same IP and MAC.
	env.MustRun("vm", "stop", "--force", "n1")
	if out, err := exec.Command("ip", "netns", "delete", "cocoon-"+n1.ID).CombinedOutput(); err != nil {
		t.Fatalf("delete netns: %v %s", err, out)
	}
	env.MustRun("vm", "start", "n1")
	if again := env.Inspect("n1"); again.Networks[0].IP != nic.IP || again.Networks[0].MAC != nic.MAC {
		t.Fatalf("identity changed across network recovery: %+v → %+v", nic, again.Networks[0])
	}
	waitReadyCount(t, env, n1, 3)
	if out, err := h.Exec("ping", "-c", "3", "-W", "5", nic.IP); err != nil {
		t.Fatalf("ping after network recovery: %v\n%s", err, out)
	}

	env.MustRun("vm", "rm", "--force", "n1", "n2")
	assertNoLeaks(t, h, n1.ID, n2.ID)
}

// --dns reaches the guest (kernel ip= for OCI images → /etc/resolv.conf).
func TestNetworkDNS(t *testing.T) {
	env, _, ref := netEnv(t, 44)
	env.MustRun("--dns", "9.9.9.9,1.0.0.1", "vm", "run", "--name", "d1", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("d1"), "COCOON-READY", bootTimeout)
	out := shell(t, env, "d1", "cat /etc/resolv.conf", "nameserver 9.9.9.9")
	if !strings.Contains(out, "nameserver 9.9.9.9") || !strings.Contains(out, "nameserver 1.0.0.1") {
		t.Fatalf("guest resolv.conf lacks the --dns servers:\n%s", out)
	}
}

func TestNetworkBadInputAndHalfwayFailure(t *testing.T) {
	env, h, ref := netEnv(t, 42)
	env.MustFail(`CNI network "nope" not found`, "vm", "create", "--network", "nope", ref)
	env.MustFail("mutually exclusive", "vm", "create", "--bridge", h.Bridge, "--network", h.Network, ref)
	env.MustFail("nosuchbr", "vm", "create", "--bridge", "nosuchbr", ref)
	env.MustFail("not found", "--cni-bin-dir", t.TempDir(), "vm", "create", ref)
	env.MustFail("use --nics 0", "--cni-conf-dir", t.TempDir(), "vm", "create", ref)

	// An IPAM range with one free address: the second NIC fails half-way; nothing remains.
	h.WriteConflist(t, "00-tiny-range.conflist", "tinyrange", "10.231.%d.20", "10.231.%d.20", 42)
	r := env.MustFail("eth1", "vm", "create", "--network", "tinyrange", "--nics", "2", ref)
	_ = r
	if out := env.MustRun("vm", "list"); !strings.Contains(out, "No VMs found.") {
		t.Fatalf("failed create left a VM:\n%s", out)
	}
	leases, _ := filepath.Glob("/var/lib/cni/networks/tinyrange/10.*")
	t.Cleanup(func() { os.RemoveAll("/var/lib/cni/networks/tinyrange") })
	if len(leases) > 0 {
		t.Fatalf("half-way failure leaked leases: %v", leases)
	}
	assertNoLeaks(t, h)
	if entries, _ := os.ReadDir(env.RunDir); len(entries) != 0 {
		t.Fatalf("half-way failure left run dirs: %v", entries)
	}
}

func TestBridgeModeDHCP(t *testing.T) {
	env, h, ref := netEnv(t, 43)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq binary not found: install dnsmasq-base")
	}
	br := "cbr" + h.Bridge[4:]
	for _, args := range [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", "10.232.43.1/24", "dev", br},
		{"ip", "link", "set", br, "up"},
	} {
		if out, err := h.Exec(args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	leaseFile := filepath.Join(t.TempDir(), "leases")
	dnsmasq := exec.Command("nsenter", "--net=/run/netns/"+h.Netns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--interface="+br, "--bind-interfaces", "--except-interface=lo", "--port=0",
		"--dhcp-range=10.232.43.50,10.232.43.60,255.255.255.0,1h", "--dhcp-leasefile="+leaseFile)
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() })

	env.MustRun("vm", "run", "--name", "b1", "--cpu", "1", "--memory", "512M", "--bridge", br, ref)
	vm := env.Inspect("b1")
	log := env.WaitConsole(vm, "COCOON-READY", bootTimeout)
	if !strings.Contains(log, "ips=10.232.43.5") && !strings.Contains(log, "ips=10.232.43.60") {
		t.Fatalf("guest got no DHCP lease from the bridge:\n%s", tail(log))
	}
	env.MustRun("vm", "rm", "--force", "b1")
	if out, _ := h.Exec("ip", "-o", "link", "show", "master", br); strings.TrimSpace(out) != "" {
		t.Fatalf("TAP left on the bridge: %s", out)
	}
}
