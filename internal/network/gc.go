package network

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cocoonstack/cocoon/internal/network/tap"
	"github.com/cocoonstack/cocoon/internal/store"
)

// bridgeTapName matches bridge-mode TAPs and captures the VM ID prefix.
var bridgeTapName = regexp.MustCompile(`^` + bridgeTapPrefix + `([A-Za-z0-9_.-]{8})-[0-9]+$`)

// tapOwnerPrefix starts the alias (IFLA_IFALIAS) of every bridge TAP: "cocoon:<root id>:<VM id>".
const tapOwnerPrefix = "cocoon:"

// tapOwner is the tag a bridge TAP of vmID made by this root carries, so GC can tell its own
// TAPs from another root's on the same bridge.
func (m *Manager) tapOwner(vmID string) (string, error) {
	root, err := store.RootID(m.rootDir)
	if err != nil {
		return "", err
	}
	return tapOwnerPrefix + root + ":" + vmID, nil
}

// GC tears down the networks of VMs not in live and returns what it removed, and the bridge
// TAPs it left because it cannot tell whose they are. Only VMs this root knows of (CNI records
// or libcni cache entries under <root>/cni) are considered: another Cocoon root on the same
// host owns its own cocoon-* namespaces. A bridge-mode TAP is removed only when its tag names
// this root and a VM not in live.
func (m *Manager) GC(ctx context.Context, live map[string]struct{}) (removed, unattributed []string, err error) {
	ids, err := m.records.VMIDs(ctx)
	if err != nil {
		return nil, nil, err
	}
	cached, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, nil, fmt.Errorf("read CNI cache: %w", err)
	}
	for _, c := range cached {
		if !slices.Contains(ids, c.ContainerID) {
			ids = append(ids, c.ContainerID)
		}
	}
	var errs []error
	for _, id := range ids {
		if _, ok := live[id]; ok {
			continue
		}
		if err := checkVMID(id); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.teardownCNI(ctx, id, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "network of VM "+id)
	}
	taps, unattributed, err := m.gcBridgeTaps(live)
	return append(removed, taps...), unattributed, errors.Join(append(errs, err)...)
}

func (m *Manager) gcBridgeTaps(live map[string]struct{}) (removed, unattributed []string, err error) {
	mine, err := m.tapOwner("")
	if err != nil {
		return nil, nil, err
	}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		name, alias := l.Attrs().Name, l.Attrs().Alias
		if _, ok := l.(*netlink.Tuntap); !ok || !bridgeTapName.MatchString(name) {
			continue
		}
		vmID, ours := strings.CutPrefix(alias, mine)
		switch {
		case alias == "":
			unattributed = append(unattributed, "bridge TAP "+name+" (untagged: not provably this root's)")
			continue
		case !ours || checkVMID(vmID) != nil:
			continue // another root's
		}
		if _, ok := live[vmID]; ok {
			continue
		}
		if err := tap.Delete(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "bridge TAP "+name)
	}
	return removed, unattributed, errors.Join(errs...)
}
