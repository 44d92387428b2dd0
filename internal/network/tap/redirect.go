package tap

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IngressHandle is the handle of the ingress qdisc ("ffff:") and the parent of its filters.
var IngressHandle = netlink.MakeHandle(0xffff, 0)

// Wire joins a and b at layer 2 without a bridge: every frame arriving on one is sent out of the
// other (an ingress qdisc plus a match-all u32 filter with a mirred egress redirect, both ways).
// Neither link keeps any frame for its own stack.
func Wire(a, b netlink.Link) error {
	if err := redirect(a, b); err != nil {
		return err
	}
	return redirect(b, a)
}

func redirect(from, to netlink.Link) error {
	idx := from.Attrs().Index
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx,
		Handle:    IngressHandle,
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("add ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    IngressHandle,
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		// A nil selector is netlink's match-all key with the terminal flag.
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}
