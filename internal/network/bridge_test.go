package network

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addTestBridge creates a Linux bridge with an address in the host netns of e.
func (e *hostEnv) addTestBridge(name string, mtu int) *netlink.Bridge {
	e.t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := netlink.LinkAdd(br); err != nil {
		e.t.Fatalf("add bridge %s: %v", name, err)
	}
	addr, _ := netlink.ParseAddr(e.subnet + ".1/24")
	if err := netlink.AddrAdd(br, addr); err != nil {
		e.t.Fatal(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		e.t.Fatal(err)
	}
	return br
}

func TestBridgeModeTapsOnExistingBridge(t *testing.T) {
	e := newHostEnv(t, envOpts{})
	ctx := context.Background()
	brName := "ccbb" + e.id
	br := e.addTestBridge(brName, 1450)
	// Bridge mode needs no CNI configuration at all.
	m := NewManager(e.root, t.TempDir(), t.TempDir())
	vmID := e.newVMID()

	if _, err := m.Setup(ctx, Request{VMID: vmID, NICs: 1, Queues: 1, Bridge: brName, Network: "x"}); err == nil {
		t.Error("Setup accepted --bridge with --network")
	}
	req := Request{VMID: vmID, NICs: 2, Queues: 2, Bridge: brName}
	atts, err := m.Setup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 2 || atts[0].MAC == atts[1].MAC {
		t.Fatalf("attachments %+v", atts)
	}
	for i, a := range atts {
		want := Attachment{Backend: BackendBridge, BridgeDev: brName, IfName: ifName(i),
			Tap: fmt.Sprintf("bt%s-%d", vmID[:8], i), MAC: a.MAC, MTU: 1450, Queues: 2, QueueSize: DefaultQueueSize}
		if !equalAtt(a, want) {
			t.Errorf("NIC %d:\n got %+v\nwant %+v", i, a, want)
		}
		checkBridgePort(t, br, a)
	}
	if err := m.Verify(vmID, atts); err != nil {
		t.Errorf("Verify: %v", err)
	}

	files, err := m.OpenTaps(atts[1])
	if err != nil {
		t.Fatal(err)
	}
	g := newGuestPort(t, files)
	mac, _ := net.ParseMAC(atts[1].MAC)
	g.arping(mac, net.ParseIP(e.subnet+".50"), net.ParseIP(e.subnet+".1"))

	// Recovery: one TAP lost; both come back with their MACs.
	if err := netlink.LinkDel(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: atts[0].Tap}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(vmID, atts); err == nil {
		t.Fatal("Verify passed with a TAP gone")
	}
	req.Existing = atts
	got, err := m.Setup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !equalAtt(got[i], atts[i]) {
			t.Errorf("recovered NIC %d = %+v, want %+v", i, got[i], atts[i])
		}
	}
	if err := m.Verify(vmID, got); err != nil {
		t.Errorf("Verify after recovery: %v", err)
	}

	for range 2 {
		if err := m.Teardown(ctx, vmID, got); err != nil {
			t.Fatal(err)
		}
	}
	if links := e.hostLinks(); len(links) != 1 || links[0] != brName {
		t.Errorf("links left after teardown: %v", links)
	}
}

func checkBridgePort(t *testing.T, br *netlink.Bridge, a Attachment) {
	t.Helper()
	mac, err := net.ParseMAC(a.MAC)
	if err != nil || mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Errorf("MAC %s is not a locally administered unicast address (%v)", a.MAC, err)
	}
	l, err := netlink.LinkByName(a.Tap)
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := l.(*netlink.Tuntap)
	want := netlink.TUNTAP_MULTI_QUEUE | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI
	if !ok || tt.Flags != want || tt.MasterIndex != br.Index || tt.MTU != 1450 {
		t.Errorf("TAP %s: %T flags %#x master %d MTU %d; want flags %#x on bridge %d, MTU 1450",
			a.Tap, l, tt.Flags, tt.MasterIndex, tt.MTU, want, br.Index)
	}
	if pi, err := netlink.LinkGetProtinfo(l); err != nil || pi.Learning {
		t.Errorf("learning on %s: %v (%v)", a.Tap, pi.Learning, err)
	}
	fdb, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range fdb {
		found = found || (n.HardwareAddr.String() == a.MAC && n.State&netlink.NUD_NOARP != 0)
	}
	if !found {
		t.Errorf("no static FDB entry for %s on %s: %+v", a.MAC, a.Tap, fdb)
	}
}
