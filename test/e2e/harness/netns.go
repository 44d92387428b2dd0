package harness

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// HostNet is a throwaway "host" network namespace with a CNI bridge conflist of its own, so
// bridges, IP ranges and iptables rules never touch the machine's interfaces.
type HostNet struct {
	Netns   string // name under /var/run/netns
	Bridge  string
	Subnet  string // e.g. 10.231.7.0/24
	Gateway string
	Network string // conflist name
	ConfDir string
}

// MTU is the test networks' MTU: not 1500, so MTU propagation to the guest is visible.
const MTU = 1400

// NewHostNet creates the namespace and writes a bridge + host-local conflist for subnet index
// n (10.231.n.0/24) into env's CNI conf dir; env commands then run inside the namespace.
func NewHostNet(t testing.TB, env *Env, n int) *HostNet {
	t.Helper()
	suffix := randHex(3)
	h := &HostNet{Netns: "cocoon-e2e-host-" + suffix, Bridge: "ce2e" + suffix, Network: "e2e-" + suffix,
		Subnet: fmt.Sprintf("10.231.%d.0/24", n), Gateway: fmt.Sprintf("10.231.%d.1", n),
		ConfDir: filepath.Join(filepath.Dir(env.Config), "cni")}
	mustCmd(t, "ip", "netns", "add", h.Netns)
	t.Cleanup(func() {
		// Cleanups run last-registered first, so the env's own cleanup would come after this
		// one: remove the VMs (CNI DEL needs this namespace) before deleting the namespace.
		env.cleanup()
		_ = exec.Command("ip", "netns", "delete", h.Netns).Run()
		_ = os.RemoveAll("/var/lib/cni/networks/" + h.Network)
	})
	mustCmd(t, "ip", "netns", "exec", h.Netns, "ip", "link", "set", "lo", "up")
	h.WriteConflist(t, "10-"+h.Network+".conflist", h.Network, "10.231.%d.10", "10.231.%d.250", n)
	env.Netns = h.Netns
	return h
}

// WriteConflist writes a bridge conflist named network with the given IPAM range.
func (h *HostNet) WriteConflist(t testing.TB, file, network, startFmt, endFmt string, n int) {
	t.Helper()
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       network,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": h.Bridge, "isGateway": true, "ipMasq": false, "mtu": MTU,
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": h.Subnet, "rangeStart": fmt.Sprintf(startFmt, n), "rangeEnd": fmt.Sprintf(endFmt, n), "gateway": h.Gateway}}},
			},
		}},
	}
	data, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.MkdirAll(h.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.ConfDir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Exec runs a command inside the host namespace and returns its combined output.
func (h *HostNet) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.Netns}, args...)...).CombinedOutput()
	return string(out), err
}

// Netns lists the named network namespaces (to prove none leaked).
func Netns(t testing.TB) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func mustCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
