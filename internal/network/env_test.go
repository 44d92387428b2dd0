package network

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const pluginDir = "/usr/lib/cni" // Debian's containernetworking-plugins

// hostLocalDir is where host-local keeps its leases, one file per allocated IP.
const hostLocalDir = "/var/lib/cni/networks"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, TAPs and bridges")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip binary (iproute2) not found")
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			t.Skipf("CNI plugin %s not found in %s (install containernetworking-plugins)", p, pluginDir)
		}
	}
}

func randInt(t *testing.T, n int64) int {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// hostEnv is a throwaway "host": a network namespace the test goroutine's thread is switched
// into for the whole test (CNI plugins are forked from that thread and inherit it), a conf dir
// with one bridge conflist on a private /24 unique to the test, and a Cocoon root.
type hostEnv struct {
	t       *testing.T
	id      string
	root    string
	confDir string
	netName string
	bridge  string
	subnet  string // "10.a.b"
	m       *Manager
}

type envOpts struct {
	rangeStart, rangeEnd int // host-local range within the /24; 0: whole subnet
	mtu                  int
}

func newHostEnv(t *testing.T, o envOpts) *hostEnv {
	t.Helper()
	requireRoot(t)
	id := strings.ToLower(rand.Text()[:6])
	e := &hostEnv{
		t:       t,
		id:      id,
		root:    t.TempDir(),
		confDir: t.TempDir(),
		netName: "cctest-" + id,
		bridge:  "ccbr" + id,
		subnet:  fmt.Sprintf("10.%d.%d", 200+randInt(t, 50), randInt(t, 256)),
	}
	e.enterNetns("cchost-" + id)
	t.Cleanup(func() { os.RemoveAll(filepath.Join(hostLocalDir, e.netName)) })

	ipam := fmt.Sprintf(`{"type":"host-local","subnet":"%s.0/24","routes":[{"dst":"0.0.0.0/0"}]`, e.subnet)
	if o.rangeStart > 0 {
		ipam = fmt.Sprintf(`{"type":"host-local","ranges":[[{"subnet":"%s.0/24","rangeStart":"%[1]s.%[2]d","rangeEnd":"%[1]s.%[3]d"}]]`, e.subnet, o.rangeStart, o.rangeEnd)
	}
	ipam += `,"dataDir":"` + hostLocalDir + `"}`
	mtu := ""
	if o.mtu > 0 {
		mtu = fmt.Sprintf(`"mtu":%d,`, o.mtu)
	}
	writeConflist(t, e.confDir, "10-test.conflist", fmt.Sprintf(
		`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,%s"ipam":%s}]}`,
		e.netName, e.bridge, mtu, ipam))
	e.m = NewManager(e.root, e.confDir, pluginDir)
	return e
}

// enterNetns creates the host netns and locks this goroutine's thread into it until the test's
// cleanups have run (they run on the same goroutine, last registered first).
func (e *hostEnv) enterNetns(name string) {
	t := e.t
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err) // the thread stays locked and dies with the goroutine
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		netlink.LinkSetUp(lo)
	}
}

// newVMID returns a fresh VM ID whose network is torn down (and netns removed) at cleanup.
func (e *hostEnv) newVMID() string {
	id := rand.Text()
	e.t.Cleanup(func() {
		e.m.Teardown(context.Background(), id, nil)
		exec.Command("ip", "netns", "del", netnsPrefix+id).Run()
	})
	return id
}

// leases lists the IPs host-local holds for the test network.
func (e *hostEnv) leases() []string {
	entries, _ := os.ReadDir(filepath.Join(hostLocalDir, e.netName))
	var ips []string
	for _, en := range entries {
		if net.ParseIP(en.Name()) != nil {
			ips = append(ips, en.Name())
		}
	}
	return ips
}

// hostLinks lists the links of the host netns other than loopback and the CNI bridge.
func (e *hostEnv) hostLinks() []string {
	links, err := netlink.LinkList()
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && n != e.bridge {
			names = append(names, n)
		}
	}
	return names
}

// requireClean checks that nothing of vmID is left: netns, host veths, leases, records, cache.
func (e *hostEnv) requireClean(vmID string) {
	t := e.t
	t.Helper()
	if _, err := os.Stat(netnsPath(vmID)); !os.IsNotExist(err) {
		t.Errorf("netns of %s still there (stat: %v)", vmID, err)
	}
	if links := e.hostLinks(); len(links) > 0 {
		t.Errorf("host links left: %v", links)
	}
	if l := e.leases(); len(l) > 0 {
		t.Errorf("IPAM leases left: %v", l)
	}
	recs, err := e.m.records.ForVM(context.Background(), vmID)
	if err != nil || len(recs) > 0 {
		t.Errorf("records left: %+v (%v)", recs, err)
	}
	cached, err := e.m.cni.GetCachedAttachments(vmID)
	if err != nil || len(cached) > 0 {
		t.Errorf("CNI cache entries left: %d (%v)", len(cached), err)
	}
}
