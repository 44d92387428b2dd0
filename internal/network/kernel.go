package network

import (
	"fmt"
	"net"
	"strings"
)

// KernelIPArgs renders one kernel ip= parameter per NIC with a static IP:
// ip=<ip>::<gateway>:<dotted netmask>:<hostname>:eth<i>:off[:<dns0>[:<dns1>]].
// DHCP NICs get none. dns wins; when it is empty, the nameservers CNI gave the NIC are used.
// The kernel takes at most two DNS servers, IPv4 only; others are skipped.
func KernelIPArgs(atts []Attachment, hostname string, dns []string) []string {
	var out []string
	for i, a := range atts {
		if a.IP == "" {
			continue
		}
		mask := net.IP(net.CIDRMask(a.Prefix, 32)).String()
		arg := fmt.Sprintf("ip=%s::%s:%s:%s:eth%d:off", a.IP, a.Gateway, mask, hostname, i)
		servers := dns
		if len(servers) == 0 {
			servers = a.DNS
		}
		if v4 := ipv4Only(servers); len(v4) > 0 {
			arg += ":" + strings.Join(v4[:min(2, len(v4))], ":")
		}
		out = append(out, arg)
	}
	return out
}

func ipv4Only(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			out = append(out, a)
		}
	}
	return out
}
