package cni

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// Lease is the IPv4 configuration IPAM handed out for one NIC.
type Lease struct {
	IP      string `json:"ip"`
	Gateway string `json:"gateway,omitempty"`
	Prefix  int    `json:"prefix"`
}

// ParseResult takes the first IPv4 address of an ADD result and the DNS servers it names.
// A result without IPv4 gives a nil lease: the guest configures that NIC with DHCP.
func ParseResult(res types.Result) (*Lease, []string, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, nil, fmt.Errorf("convert CNI result: %w", err)
	}
	dns := r.DNS.Nameservers
	for _, ipc := range r.IPs {
		ip4 := ipc.Address.IP.To4()
		if ip4 == nil {
			continue
		}
		ones, bits := ipc.Address.Mask.Size()
		if bits == 8*16 { // an IPv4 address may carry a 16-byte mask
			ones -= 96
		}
		if ones < 0 || ones > 32 { // e.g. ::ffff:a.b.c.d/50: no IPv4 prefix the guest could use
			return nil, nil, fmt.Errorf("CNI result: IPv4 address %s has no valid IPv4 prefix", ipc.Address.String())
		}
		l := &Lease{IP: ip4.String(), Prefix: ones}
		if gw := ipc.Gateway.To4(); gw != nil {
			l.Gateway = gw.String()
		}
		return l, dns, nil
	}
	return nil, dns, nil
}
