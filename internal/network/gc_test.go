package network

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cocoonstack/cocoon/internal/network/tap"
)

func TestGCRemovesOnlyDeadVMsOfThisRoot(t *testing.T) {
	e := newHostEnv(t, envOpts{})
	ctx := context.Background()
	brName := "ccbb" + e.id
	e.addTestBridge(brName, 1500)
	setup := func(req Request) []Attachment {
		t.Helper()
		atts, err := e.m.Setup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return atts
	}
	live, dead, crashed := e.newVMID(), e.newVMID(), e.newVMID()
	liveAtts := setup(Request{VMID: live, NICs: 1, Queues: 1})
	setup(Request{VMID: dead, NICs: 2, Queues: 1})
	setup(Request{VMID: crashed, NICs: 1, Queues: 1})
	// A crash between CNI ADD and the record update: only libcni's cache knows the NIC.
	if err := e.m.records.Remove(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	liveBr, deadBr := e.newVMID(), e.newVMID()
	liveBrAtts := setup(Request{VMID: liveBr, NICs: 1, Queues: 1, Bridge: brName})
	setup(Request{VMID: deadBr, NICs: 2, Queues: 1, Bridge: brName})
	// Another Cocoon root's VM on the same host: not ours to collect.
	foreign := netnsPrefix + rand.Text()
	if out, err := exec.Command("ip", "netns", "add", foreign).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", foreign).Run() })

	// Another root on the same bridge: its dead-looking TAP is not ours. An untagged TAP with
	// our naming cannot be attributed: left and reported.
	other := NewManager(t.TempDir(), e.confDir, pluginDir)
	otherID := e.newVMID()
	otherAtts, err := other.Setup(ctx, Request{VMID: otherID, NICs: 1, Queues: 1, Bridge: brName})
	if err != nil {
		t.Fatal(err)
	}
	untagged := bridgeTapPrefix + e.newVMID()[:8] + "-0"
	if _, err := tap.Create(untagged, 1, 1500); err != nil {
		t.Fatal(err)
	}

	removed, unattributed, err := e.m.GC(ctx, map[string]struct{}{live: {}, liveBr: {}})
	if err != nil {
		t.Fatal(err)
	}
	if len(unattributed) != 1 || !strings.Contains(unattributed[0], untagged) {
		t.Errorf("GC reported %q as unattributable, want only %s", unattributed, untagged)
	}
	if err := other.Verify(otherID, otherAtts); err != nil {
		t.Errorf("GC touched another root's bridge TAP: %v", err)
	}
	if _, err := netlink.LinkByName(untagged); err != nil {
		t.Errorf("GC removed the untagged TAP: %v", err)
	}
	slices.Sort(removed)
	want := []string{
		"bridge TAP bt" + deadBr[:8] + "-0", "bridge TAP bt" + deadBr[:8] + "-1",
		"network of VM " + crashed, "network of VM " + dead,
	}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("GC removed %q\nwant %q", removed, want)
	}
	for _, id := range []string{dead, crashed} {
		if _, err := os.Stat(netnsPath(id)); !os.IsNotExist(err) {
			t.Errorf("netns of %s survived GC", id)
		}
	}
	if l := e.leases(); len(l) != 1 || l[0] != liveAtts[0].IP {
		t.Errorf("leases after GC %v, want only %s", l, liveAtts[0].IP)
	}
	if ids, _ := e.m.records.VMIDs(ctx); !slices.Equal(ids, []string{live}) {
		t.Errorf("records after GC are of %v, want only %s", ids, live)
	}
	if err := e.m.Verify(live, liveAtts); err != nil {
		t.Errorf("live VM damaged: %v", err)
	}
	if err := e.m.Verify(liveBr, liveBrAtts); err != nil {
		t.Errorf("live bridge-mode VM damaged: %v", err)
	}
	if _, err := os.Stat("/run/netns/" + foreign); err != nil {
		t.Errorf("GC removed another root's netns: %v", err)
	}

	if again, _, err := e.m.GC(ctx, map[string]struct{}{live: {}, liveBr: {}}); err != nil || len(again) > 0 {
		t.Errorf("second GC removed %q (%v), want nothing", again, err)
	}
}
