package network

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/cocoonstack/cocoon/internal/network/cni"
	"github.com/cocoonstack/cocoon/internal/network/tap"
)

func TestCNISetupWiresTapsAndTeardownReleasesAll(t *testing.T) {
	e := newHostEnv(t, envOpts{mtu: 1400})
	ctx := context.Background()
	vmID := e.newVMID()
	const queues = 2

	start := time.Now()
	atts, err := e.m.Setup(ctx, Request{VMID: vmID, NICs: 2, Queues: queues})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Setup of 2 NICs took %d ms", elapsed.Milliseconds())
	if len(atts) != 2 {
		t.Fatalf("got %d attachments, want 2", len(atts))
	}
	if atts[0].IP == atts[1].IP {
		t.Errorf("both NICs got IP %s", atts[0].IP)
	}
	for i, a := range atts {
		want := Attachment{
			Backend: BackendCNI, Network: e.netName, IfName: ifName(i), Tap: tapName("tap", vmID, i),
			NetnsPath: "/run/netns/cocoon-" + vmID, Prefix: 24, Gateway: e.subnet + ".1", MTU: 1400,
			Queues: queues, QueueSize: DefaultQueueSize,
		}
		if !strings.HasPrefix(a.IP, e.subnet+".") || a.MAC == "" {
			t.Errorf("NIC %d: IP %q MAC %q", i, a.IP, a.MAC)
		}
		want.IP, want.MAC, want.DNS = a.IP, a.MAC, a.DNS
		if !equalAtt(a, want) {
			t.Errorf("NIC %d:\n got %+v\nwant %+v", i, a, want)
		}
		checkWiring(t, a)
	}
	if err := e.m.Verify(vmID, atts); err != nil {
		t.Errorf("Verify of a fresh setup: %v", err)
	}
	checkRecords(t, e, vmID, atts)

	for _, a := range atts {
		files, err := e.m.OpenTaps(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != queues {
			t.Fatalf("OpenTaps gave %d fds, want %d", len(files), queues)
		}
		if got := tapInfo(t, a); got.Queues != queues {
			t.Errorf("TAP %s has %d attached queues, want %d", a.Tap, got.Queues, queues)
		}
		g := newGuestPort(t, files)
		mac, _ := net.ParseMAC(a.MAC)
		gw := net.ParseIP(a.Gateway)
		gwMAC := g.arping(mac, net.ParseIP(a.IP), gw)
		g.ping(mac, gwMAC, net.ParseIP(a.IP), gw)
	}

	start = time.Now()
	if err := e.m.Teardown(ctx, vmID, atts); err != nil {
		t.Fatal(err)
	}
	t.Logf("Teardown of 2 NICs took %d ms", time.Since(start).Milliseconds())
	e.requireClean(vmID)
	if err := e.m.Teardown(ctx, vmID, atts); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if err := e.m.Verify(vmID, atts); err == nil {
		t.Error("Verify passed after Teardown")
	}
}

func equalAtt(a, b Attachment) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func tapInfo(t *testing.T, a Attachment) *netlink.Tuntap {
	t.Helper()
	var tt *netlink.Tuntap
	err := ns.WithNetNSPath(a.NetnsPath, func(ns.NetNS) error {
		l, err := netlink.LinkByName(a.Tap)
		if err != nil {
			return err
		}
		tt, _ = l.(*netlink.Tuntap)
		return nil
	})
	if err != nil || tt == nil {
		t.Fatalf("TAP %s in %s: %v (link %T)", a.Tap, a.NetnsPath, err, tt)
	}
	return tt
}

// checkWiring looks inside the VM netns: the TAP's flags and MTU, the veth's MAC and missing
// IPv4 address, and the redirect filters on both.
func checkWiring(t *testing.T, a Attachment) {
	t.Helper()
	tt := tapInfo(t, a)
	wantFlags := netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI
	if a.Queues > 1 {
		wantFlags |= netlink.TUNTAP_MULTI_QUEUE
	}
	if tt.Flags != wantFlags || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist {
		t.Errorf("TAP %s: mode %v flags %#x persist %v, want a persistent TAP with flags %#x", a.Tap, tt.Mode, tt.Flags, !tt.NonPersist, wantFlags)
	}
	if tt.Queues != 0 {
		t.Errorf("TAP %s has %d queues attached before OpenTaps", a.Tap, tt.Queues)
	}
	err := ns.WithNetNSPath(a.NetnsPath, func(ns.NetNS) error {
		veth, err := netlink.LinkByName(a.IfName)
		if err != nil {
			return err
		}
		if got := veth.Attrs().HardwareAddr.String(); got != a.MAC {
			t.Errorf("veth MAC %s, attachment MAC %s", got, a.MAC)
		}
		if veth.Attrs().MTU != a.MTU || tt.MTU != a.MTU {
			t.Errorf("MTU: veth %d TAP %d attachment %d", veth.Attrs().MTU, tt.MTU, a.MTU)
		}
		for _, l := range []netlink.Link{veth, tt} {
			addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
			if err != nil || len(addrs) > 0 {
				t.Errorf("%s has addresses %v (%v): the guest owns the IP", l.Attrs().Name, addrs, err)
			}
		}
		for _, pair := range [][2]netlink.Link{{veth, tt}, {tt, veth}} {
			if !redirects(t, pair[0], pair[1]) {
				t.Errorf("no tc mirred redirect %s -> %s", pair[0].Attrs().Name, pair[1].Attrs().Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func redirects(t *testing.T, from, to netlink.Link) bool {
	filters, err := netlink.FilterList(from, tap.IngressHandle)
	if err != nil {
		t.Fatalf("list filters of %s: %v", from.Attrs().Name, err)
	}
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR &&
				m.Ifindex == to.Attrs().Index && m.Attrs().Action == netlink.TC_ACT_STOLEN {
				return true
			}
		}
	}
	return false
}

func checkRecords(t *testing.T, e *hostEnv, vmID string, atts []Attachment) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.root, "cni", "db", "networks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx cni.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	byIf := map[string]*cni.Record{}
	for id, r := range idx.Networks {
		if r.ID != id {
			t.Errorf("record %s has ID %s", id, r.ID)
		}
		if r.VMID == vmID {
			byIf[r.IfName] = r
		}
	}
	for _, a := range atts {
		r := byIf[a.IfName]
		if r == nil || r.Network == nil || r.Network.IP != a.IP || r.Network.Prefix != a.Prefix ||
			r.Network.Gateway != a.Gateway || r.MAC != a.MAC || r.MTU != a.MTU || r.Tap != a.Tap ||
			r.NetnsPath != a.NetnsPath || r.Type != a.Network {
			t.Errorf("record of %s = %+v, want it to match %+v", a.IfName, r, a)
		}
	}
	if len(byIf) != len(atts) {
		t.Errorf("%d records of %s, want %d", len(byIf), vmID, len(atts))
	}
}

func TestCNISetupFailingHalfwayLeavesNothing(t *testing.T) {
	e := newHostEnv(t, envOpts{rangeStart: 10, rangeEnd: 10}) // room for one NIC only
	vmID := e.newVMID()
	_, err := e.m.Setup(context.Background(), Request{VMID: vmID, NICs: 2, Queues: 1})
	if err == nil {
		t.Fatal("Setup of 2 NICs succeeded on a 1-address range")
	}
	if !strings.Contains(err.Error(), "eth1") {
		t.Errorf("error does not name the failing NIC: %v", err)
	}
	t.Logf("error: %v", err)
	e.requireClean(vmID)
}

func TestCNIRecoveryKeepsIPAndMAC(t *testing.T) {
	e := newHostEnv(t, envOpts{})
	ctx := context.Background()
	vmID := e.newVMID()
	req := Request{VMID: vmID, NICs: 1, Queues: 1}
	atts, err := e.m.Setup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if tt := tapInfo(t, atts[0]); tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		t.Errorf("single-queue TAP created with IFF_MULTI_QUEUE")
	}
	// A second VM takes the next address, so a lost lease would not come back by chance.
	other := e.newVMID()
	if _, err := e.m.Setup(ctx, Request{VMID: other, NICs: 1, Queues: 1}); err != nil {
		t.Fatal(err)
	}

	// What a host reboot does: the netns and everything in it disappear.
	if out, err := exec.Command("ip", "netns", "del", netnsPrefix+vmID).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	if err := e.m.Verify(vmID, atts); err == nil {
		t.Fatal("Verify passed with the netns gone")
	}

	req.Existing = atts
	got, err := e.m.Setup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].IP != atts[0].IP || got[0].MAC != atts[0].MAC || got[0].Tap != atts[0].Tap {
		t.Errorf("recovered NIC %+v, want IP %s MAC %s", got[0], atts[0].IP, atts[0].MAC)
	}
	if err := e.m.Verify(vmID, got); err != nil {
		t.Errorf("Verify after recovery: %v", err)
	}
	checkWiring(t, got[0])
	checkRecords(t, e, vmID, got) // recovery persists its result

	files, err := e.m.OpenTaps(got[0])
	if err != nil {
		t.Fatal(err)
	}
	g := newGuestPort(t, files)
	mac, _ := net.ParseMAC(got[0].MAC)
	g.arping(mac, net.ParseIP(got[0].IP), net.ParseIP(got[0].Gateway))

	for _, id := range []string{vmID, other} {
		if err := e.m.Teardown(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.requireClean(vmID)
	e.requireClean(other)
}
