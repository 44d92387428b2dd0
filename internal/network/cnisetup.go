package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/cocoonstack/cocoon/internal/network/cni"
	"github.com/cocoonstack/cocoon/internal/network/tap"
)

func ifName(i int) string { return fmt.Sprintf("eth%d", i) }

// tapName is <prefix><first 8 of the VM ID>-<nic>: at most 15 bytes for MaxNICs.
func tapName(prefix, vmID string, i int) string { return fmt.Sprintf("%s%s-%d", prefix, vmID[:8], i) }

func (m *Manager) setupCNI(ctx context.Context, p *plan) (atts []Attachment, err error) {
	if len(p.existing) > 0 {
		// DEL first: IPAM can only hand the old addresses out again once they are released.
		if err := m.teardownCNI(ctx, p.vmID, p.existing); err != nil {
			return nil, fmt.Errorf("recover network of VM %s: release the old NICs: %w", p.vmID, err)
		}
	}
	nsPath := netnsPath(p.vmID)
	recs := make([]cni.Record, p.nics)
	for i := range recs {
		recs[i] = cni.Record{Type: p.list.Name, IfName: ifName(i), NetnsPath: nsPath}
	}
	// Records first: a crash from here on leaves state this root knows it owns.
	if err := m.records.Replace(ctx, p.vmID, recs); err != nil {
		return nil, fmt.Errorf("record network of VM %s: %w", p.vmID, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if cerr := m.teardownCNI(context.WithoutCancel(ctx), p.vmID, nil); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up network of VM %s: %w", p.vmID, cerr))
		}
	}()
	if err := createNetns(nsPath); err != nil {
		return nil, err
	}
	for i := range p.nics {
		att, err := m.addNIC(ctx, p, nsPath, i)
		if err != nil {
			return nil, err
		}
		atts = append(atts, att)
		recs[i] = toRecord(att)
	}
	if err := m.records.Replace(ctx, p.vmID, recs); err != nil {
		return nil, fmt.Errorf("record network of VM %s: %w", p.vmID, err)
	}
	return atts, nil
}

func (m *Manager) addNIC(ctx context.Context, p *plan, nsPath string, i int) (Attachment, error) {
	att := Attachment{
		Backend:   BackendCNI,
		Network:   p.list.Name,
		IfName:    ifName(i),
		Tap:       tapName("tap", p.vmID, i),
		NetnsPath: nsPath,
		Queues:    p.queues,
		QueueSize: p.queueSize,
	}
	rt := &libcni.RuntimeConf{ContainerID: p.vmID, NetNS: nsPath, IfName: att.IfName}
	var old Attachment
	if i < len(p.existing) {
		old = p.existing[i]
	}
	if old.IP != "" {
		rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"IP", old.IP}}
	}
	res, err := m.cni.AddNetworkList(ctx, p.list, rt)
	if err != nil {
		return att, fmt.Errorf("CNI ADD %s of VM %s on network %q: %w", att.IfName, p.vmID, p.list.Name, err)
	}
	lease, dns, err := cni.ParseResult(res)
	if err != nil {
		return att, fmt.Errorf("CNI ADD %s of VM %s: %w", att.IfName, p.vmID, err)
	}
	att.DNS = dns
	if lease != nil {
		att.IP, att.Prefix, att.Gateway = lease.IP, lease.Prefix, lease.Gateway
	}
	if old.IP != "" && old.IP != att.IP {
		slog.Warn("IPAM did not give the NIC its old IP back", "vm", p.vmID, "nic", att.IfName, "old", old.IP, "new", att.IP)
	}
	err = ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var err error
		att.MAC, att.MTU, err = wireNIC(att.IfName, att.Tap, p.queues, old.MAC)
		return err
	})
	if err != nil {
		return att, fmt.Errorf("wire %s of VM %s to TAP %s: %w", att.IfName, p.vmID, att.Tap, err)
	}
	return att, nil
}

// wireNIC runs inside the VM netns: it hands the CNI veth's identity to the guest (MAC, MTU,
// and the IP, which it removes from the veth) and joins the veth to a new TAP.
func wireNIC(vethName, tapName string, queues int, mac string) (string, int, error) {
	veth, err := netlink.LinkByName(vethName)
	if err != nil {
		return "", 0, fmt.Errorf("find CNI interface: %w", err)
	}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return "", 0, fmt.Errorf("parse recorded MAC %q: %w", mac, err)
		}
		if err := netlink.LinkSetHardwareAddr(veth, hw); err != nil {
			return "", 0, fmt.Errorf("set recorded MAC %s on %s: %w", mac, vethName, err)
		}
	}
	// The guest owns the address: the namespace must not answer ARP for it or route with it.
	// No IPv6 link-local either, so the namespace's own stack sends nothing with the guest's MAC.
	if err := netlink.LinkSetIP6AddrGenMode(veth, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		slog.Debug("stop IPv6 address generation on CNI veth", "if", vethName, "err", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(veth, netlink.FAMILY_ALL) })
	if err != nil {
		return "", 0, fmt.Errorf("list addresses of %s: %w", vethName, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(veth, &a); err != nil {
			return "", 0, fmt.Errorf("remove %s from %s: %w", a.IPNet, vethName, err)
		}
	}
	if veth, err = netlink.LinkByName(vethName); err != nil {
		return "", 0, fmt.Errorf("find CNI interface: %w", err)
	}
	t, err := tap.Create(tapName, queues, veth.Attrs().MTU)
	if err != nil {
		return "", 0, err
	}
	if err := tap.Wire(veth, t); err != nil {
		return "", 0, err
	}
	return veth.Attrs().HardwareAddr.String(), veth.Attrs().MTU, nil
}

func toRecord(a Attachment) cni.Record {
	r := cni.Record{Type: a.Network, IfName: a.IfName, MAC: a.MAC, MTU: a.MTU, Tap: a.Tap, NetnsPath: a.NetnsPath}
	if a.IP != "" {
		r.Network = &cni.Lease{IP: a.IP, Gateway: a.Gateway, Prefix: a.Prefix}
	}
	return r
}

// teardownCNI releases the CNI NICs of vmID known from libcni's cache (config and args of each
// successful ADD), its records and atts, then deletes the netns. Records are kept when a DEL
// fails, so a later rm or GC retries it.
func (m *Manager) teardownCNI(ctx context.Context, vmID string, atts []Attachment) error {
	recs, err := m.records.ForVM(ctx, vmID)
	if err != nil {
		return err
	}
	cached, err := m.cni.GetCachedAttachments(vmID)
	if err != nil {
		return fmt.Errorf("read CNI cache of VM %s: %w", vmID, err)
	}
	nsPath := netnsPath(vmID)
	// A netns file without its mount (crash during creation) makes plugins refuse DEL.
	removeStaleNetnsFile(nsPath)
	var errs []error
	done := map[string]bool{}
	for _, c := range cached {
		done[c.Network+"/"+c.IfName] = true
		if err := m.delCached(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL %s of VM %s: %w", c.IfName, vmID, err))
		}
	}
	// NICs whose ADD never completed have no cache entry; DEL them with the current conflist.
	var catalog *cni.Catalog
	for _, n := range uncachedNICs(recs, atts, done) {
		if catalog == nil {
			if catalog, err = cni.LoadCatalog(m.confDir); err != nil {
				errs = append(errs, fmt.Errorf("CNI DEL %s of VM %s: %w", n.IfName, vmID, err))
				break
			}
		}
		list, err := catalog.Get(n.Type)
		if err == nil {
			err = m.cni.DelNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: vmID, NetNS: nsPath, IfName: n.IfName})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL %s of VM %s: %w", n.IfName, vmID, err))
		}
	}
	if err := deleteNetns(nsPath); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && len(recs) > 0 {
		if err := m.records.Remove(ctx, vmID); err != nil {
			errs = append(errs, fmt.Errorf("remove network records of VM %s: %w", vmID, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) delCached(ctx context.Context, c *libcni.NetworkAttachment) error {
	list, err := libcni.NetworkConfFromBytes(c.Config)
	if err != nil {
		return fmt.Errorf("parse cached config of network %q: %w", c.Network, err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    c.ContainerID,
		NetNS:          c.NetNS,
		IfName:         c.IfName,
		Args:           c.CniArgs,
		CapabilityArgs: c.CapabilityArgs,
	}
	return m.cni.DelNetworkList(ctx, list, rt)
}

// uncachedNICs merges the records and attachments of a VM, minus the NICs DEL'd from the cache.
func uncachedNICs(recs []cni.Record, atts []Attachment, done map[string]bool) []cni.Record {
	var out []cni.Record
	add := func(network, ifName string) {
		key := network + "/" + ifName
		if network == "" || ifName == "" || done[key] {
			return
		}
		done[key] = true
		out = append(out, cni.Record{Type: network, IfName: ifName})
	}
	for _, r := range recs {
		add(r.Type, r.IfName)
	}
	for _, a := range atts {
		if a.Backend == BackendCNI {
			add(a.Network, a.IfName)
		}
	}
	return out
}

// checkCNINIC runs inside the VM netns.
func checkCNINIC(a Attachment) error {
	for _, name := range []string{a.IfName, a.Tap} {
		if _, err := netlink.LinkByName(name); err != nil {
			return fmt.Errorf("%s missing in %s: %w", name, a.NetnsPath, err)
		}
	}
	return nil
}
