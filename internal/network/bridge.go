package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/network/tap"
)

const bridgeTapPrefix = "bt"

// bridgeLink returns the Linux bridge dev of the current netns.
func bridgeLink(dev string) (*netlink.Bridge, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %q not found: create it (ip link add %s type bridge) or pick another with --bridge", dev, dev)
		}
		return nil, fmt.Errorf("look up bridge %q: %w", dev, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%q is not a bridge (type %s): name a Linux bridge with --bridge", dev, l.Type())
	}
	return br, nil
}

// setupBridge puts one TAP per NIC on the bridge. The guest configures itself with DHCP from
// the bridge's network, so there is no IP to record.
func setupBridge(p *plan, owner string) (atts []Attachment, err error) {
	br, err := bridgeLink(p.bridge)
	if err != nil {
		return nil, err
	}
	if len(p.existing) > 0 {
		// Recovery: TAPs that survived are rebuilt, so every NIC gets the same settings.
		if err := deleteBridgeTaps(p.vmID, owner); err != nil {
			return nil, fmt.Errorf("recover network of VM %s: %w", p.vmID, err)
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, deleteBridgeTaps(p.vmID, owner))
		}
	}()
	for i := range p.nics {
		mac, err := bridgeMAC(p.existing, i)
		if err != nil {
			return nil, err
		}
		name := tapName(bridgeTapPrefix, p.vmID, i)
		if _, err := netlink.LinkByName(name); err == nil {
			return nil, fmt.Errorf("TAP %s already exists: remove the leftover with 'cocoon gc' or 'ip link del %s'", name, name)
		}
		if err := addBridgePort(br, name, p.queues, mac, owner); err != nil {
			return nil, fmt.Errorf("bridge NIC %d of VM %s: %w", i, p.vmID, err)
		}
		atts = append(atts, Attachment{
			Backend:   BackendBridge,
			BridgeDev: p.bridge,
			IfName:    ifName(i),
			Tap:       name,
			MAC:       mac.String(),
			MTU:       br.MTU,
			Queues:    p.queues,
			QueueSize: p.queueSize,
		})
	}
	return atts, nil
}

// bridgeMAC is the recorded MAC on recovery, else a random locally administered unicast one.
func bridgeMAC(existing []Attachment, i int) (net.HardwareAddr, error) {
	if i < len(existing) && existing[i].MAC != "" {
		mac, err := net.ParseMAC(existing[i].MAC)
		if err != nil {
			return nil, fmt.Errorf("parse recorded MAC %q: %w", existing[i].MAC, err)
		}
		return mac, nil
	}
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac) //nolint:errcheck // crypto/rand.Read never fails
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac, nil
}

// addBridgePort creates the TAP, tags it with its owner (see tapOwner) and enslaves it.
// Learning is off and the guest MAC is a static FDB entry: frames for the guest go to its port
// only, and a guest spoofing another MAC cannot move that MAC's traffic to itself.
func addBridgePort(br *netlink.Bridge, name string, queues int, mac net.HardwareAddr, owner string) error {
	t, err := tap.Create(name, queues, br.MTU)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetAlias(t, owner); err != nil {
		return fmt.Errorf("tag %s with its owner: %w", name, err)
	}
	if err := netlink.LinkSetMaster(t, br); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", name, br.Name, err)
	}
	if err := netlink.LinkSetLearning(t, false); err != nil {
		return fmt.Errorf("disable learning on %s: %w", name, err)
	}
	fdb := &netlink.Neigh{
		LinkIndex:    t.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_MASTER,
		State:        netlink.NUD_NOARP,
		HardwareAddr: mac,
	}
	if err := netlink.NeighAdd(fdb); err != nil {
		return fmt.Errorf("add FDB entry %s on %s: %w", mac, name, err)
	}
	return nil
}

// deleteBridgeTaps deletes the VM's bt<id8>-<n> links of the current netns: those tagged with
// owner, and untagged ones (made before TAPs were tagged), never another root's or VM's.
func deleteBridgeTaps(vmID, owner string) error {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	prefix := bridgeTapPrefix + vmID[:8] + "-"
	var errs []error
	for _, l := range links {
		if a := l.Attrs(); strings.HasPrefix(a.Name, prefix) && (a.Alias == owner || a.Alias == "") {
			errs = append(errs, tap.Delete(a.Name))
		}
	}
	return errors.Join(errs...)
}

func checkBridgeNIC(a Attachment) error {
	l, err := netlink.LinkByName(a.Tap)
	if err != nil {
		return fmt.Errorf("TAP %s missing: %w", a.Tap, err)
	}
	br, err := bridgeLink(a.BridgeDev)
	if err != nil {
		return err
	}
	if l.Attrs().MasterIndex != br.Index {
		return fmt.Errorf("TAP %s is not a port of bridge %s", a.Tap, a.BridgeDev)
	}
	return nil
}
