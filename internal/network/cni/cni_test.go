package cni

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func TestParseResult(t *testing.T) {
	idx := 1
	r := &types100.Result{
		CNIVersion: "1.0.0",
		IPs: []*types100.IPConfig{
			{Interface: &idx, Address: net.IPNet{IP: net.ParseIP("fd00::5"), Mask: net.CIDRMask(64, 128)}},
			// An IPv4 address with a 16-byte mask, as some plugins produce.
			{Interface: &idx, Address: net.IPNet{IP: net.ParseIP("10.88.0.5"), Mask: net.CIDRMask(112, 128)}, Gateway: net.ParseIP("10.88.0.1")},
			{Interface: &idx, Address: net.IPNet{IP: net.ParseIP("10.99.0.5").To4(), Mask: net.CIDRMask(24, 32)}},
		},
		DNS: types.DNS{Nameservers: []string{"10.88.0.53"}},
	}
	lease, dns, err := ParseResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if *lease != (Lease{IP: "10.88.0.5", Gateway: "10.88.0.1", Prefix: 16}) || !slices.Equal(dns, []string{"10.88.0.53"}) {
		t.Errorf("lease %+v dns %v", lease, dns)
	}

	// Older result versions convert; no IPv4 means a DHCP NIC.
	old := &types040.Result{CNIVersion: "0.4.0"}
	if lease, _, err := ParseResult(old); err != nil || lease != nil {
		t.Errorf("result without IPs: lease %+v err %v", lease, err)
	}
}

func TestRecords(t *testing.T) {
	ctx := context.Background()
	r := NewRecords(t.TempDir())
	recs := make([]Record, 11)
	for i := range recs {
		recs[i] = Record{Type: "net", IfName: "eth" + string(rune('0'+i%10))}
	}
	recs[10].IfName = "eth10"
	recs[2], recs[10] = recs[10], recs[2]
	if err := r.Replace(ctx, "VMAAAAAAAA", recs); err != nil {
		t.Fatal(err)
	}
	if err := r.Replace(ctx, "VMBBBBBBBB", recs[:1]); err != nil {
		t.Fatal(err)
	}
	got, err := r.ForVM(ctx, "VMAAAAAAAA")
	if err != nil || len(got) != 11 {
		t.Fatalf("ForVM: %d records (%v)", len(got), err)
	}
	if got[2].IfName != "eth2" || got[10].IfName != "eth10" || got[0].VMID != "VMAAAAAAAA" || got[0].ID == "" || got[0].ID == got[1].ID {
		t.Errorf("records not ordered by interface or missing IDs: %+v", got)
	}
	if err := r.Replace(ctx, "VMAAAAAAAA", recs[:2]); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.ForVM(ctx, "VMAAAAAAAA"); len(got) != 2 {
		t.Errorf("Replace kept %d records, want 2", len(got))
	}
	if ids, _ := r.VMIDs(ctx); !slices.Equal(ids, []string{"VMAAAAAAAA", "VMBBBBBBBB"}) {
		t.Errorf("VMIDs = %v", ids)
	}
	if err := r.Remove(ctx, "VMAAAAAAAA"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := r.VMIDs(ctx); !slices.Equal(ids, []string{"VMBBBBBBBB"}) {
		t.Errorf("VMIDs after Remove = %v", ids)
	}
}
