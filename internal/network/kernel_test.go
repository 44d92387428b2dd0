package network

import (
	"slices"
	"testing"
)

func TestKernelIPArgs(t *testing.T) {
	atts := []Attachment{
		{IP: "10.88.0.5", Prefix: 16, Gateway: "10.88.0.1", DNS: []string{"10.88.0.2"}},
		{}, // DHCP NIC: no ip= entry, but later NICs keep their eth index
		{IP: "192.168.7.9", Prefix: 24},
		{IP: "172.16.0.3", Prefix: 20, Gateway: "172.16.0.1", DNS: []string{"fd00::53", "172.16.0.53"}},
	}
	cases := []struct {
		name string
		dns  []string
		want []string
	}{
		{"explicit dns wins, two at most", []string{"8.8.8.8", "1.1.1.1", "9.9.9.9"}, []string{
			"ip=10.88.0.5::10.88.0.1:255.255.0.0:web1:eth0:off:8.8.8.8:1.1.1.1",
			"ip=192.168.7.9:::255.255.255.0:web1:eth2:off:8.8.8.8:1.1.1.1",
			"ip=172.16.0.3::172.16.0.1:255.255.240.0:web1:eth3:off:8.8.8.8:1.1.1.1",
		}},
		{"CNI dns as fallback, IPv6 skipped", nil, []string{
			"ip=10.88.0.5::10.88.0.1:255.255.0.0:web1:eth0:off:10.88.0.2",
			"ip=192.168.7.9:::255.255.255.0:web1:eth2:off",
			"ip=172.16.0.3::172.16.0.1:255.255.240.0:web1:eth3:off:172.16.0.53",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := KernelIPArgs(atts, "web1", c.dns)
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n%q\nwant\n%q", got, c.want)
			}
		})
	}
	if got := KernelIPArgs(nil, "web1", []string{"8.8.8.8"}); got != nil {
		t.Errorf("no NICs: got %q", got)
	}
}
