package cni

import (
	"cmp"
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"strings"

	"github.com/cocoonstack/cocoon/internal/store"
)

// Record is one NIC a VM got from CNI in this root. Records are written before the VM's netns
// is created and completed after the NIC is wired, so whatever a crash leaves behind is known
// to this root, and only to this root, for teardown and GC.
type Record struct {
	ID        string `json:"id"`
	VMID      string `json:"vm_id"`
	Type      string `json:"type"` // conflist name
	IfName    string `json:"if_name"`
	Network   *Lease `json:"network,omitempty"` // nil while being set up, or for a DHCP NIC
	MAC       string `json:"mac,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
	Tap       string `json:"tap,omitempty"`
	NetnsPath string `json:"netns_path"`
}

// Index is the on-disk shape of networks.json.
type Index struct {
	store.Header
	Networks map[string]*Record `json:"networks"`
}

// Init allocates the map of an empty or freshly read index.
func (x *Index) Init() {
	if x.Networks == nil {
		x.Networks = map[string]*Record{}
	}
}

// Records is the CNI record index <dir>/networks.json.
type Records struct {
	s *store.Store[Index, *Index]
}

// NewRecords returns the index kept in dir.
func NewRecords(dir string) *Records {
	return &Records{s: store.New[Index](dir, "networks", 1)}
}

// Replace makes recs the records of vmID, dropping the ones it had. Records get fresh IDs.
func (r *Records) Replace(ctx context.Context, vmID string, recs []Record) error {
	return r.s.Update(ctx, func(x *Index) error {
		drop(x, vmID)
		for _, rec := range recs {
			rec.ID = rand.Text()
			rec.VMID = vmID
			x.Networks[rec.ID] = &rec
		}
		return nil
	})
}

// Remove deletes every record of vmID.
func (r *Records) Remove(ctx context.Context, vmID string) error {
	return r.s.Update(ctx, func(x *Index) error {
		drop(x, vmID)
		return nil
	})
}

// ForVM returns the records of vmID ordered by interface name.
func (r *Records) ForVM(ctx context.Context, vmID string) ([]Record, error) {
	var out []Record
	err := r.s.Read(ctx, func(x *Index) error {
		for _, rec := range x.Networks {
			if rec.VMID == vmID {
				out = append(out, *rec)
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b Record) int { return compareIfNames(a.IfName, b.IfName) })
	return out, err
}

// VMIDs returns the IDs of every VM that has records.
func (r *Records) VMIDs(ctx context.Context) ([]string, error) {
	ids := map[string]bool{}
	err := r.s.Read(ctx, func(x *Index) error {
		for _, rec := range x.Networks {
			ids[rec.VMID] = true
		}
		return nil
	})
	return slices.Sorted(maps.Keys(ids)), err
}

func drop(x *Index, vmID string) {
	for id, rec := range x.Networks {
		if rec.VMID == vmID {
			delete(x.Networks, id)
		}
	}
}

// compareIfNames orders eth2 before eth10.
func compareIfNames(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
}
