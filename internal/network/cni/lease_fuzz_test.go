package cni

import (
	"net"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// FuzzParseResult: any plugin output that parses as a CNI 1.0 result gives a sane IPv4 lease
// (or none), never a panic or a prefix outside 0..32.
func FuzzParseResult(f *testing.F) {
	f.Add(`{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.5/24","gateway":"10.88.0.1"}],"dns":{"nameservers":["1.1.1.1"]}}`)
	f.Add(`{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64"},{"address":"10.0.0.2/8"}]}`)
	f.Add(`{"cniVersion":"1.0.0","ips":[]}`)
	f.Add(`{"cniVersion":"1.0.0","ips":[{"address":"::ffff:10.1.2.3/100"}]}`)
	f.Add(`{"cniVersion":"1.0.0","ips":[{"address":"::ffff:10.1.2.3/50"}]}`)
	f.Fuzz(func(t *testing.T, data string) {
		res, err := types100.NewResult([]byte(data))
		if err != nil {
			return
		}
		l, _, err := ParseResult(res)
		if err != nil || l == nil {
			return
		}
		if ip := net.ParseIP(l.IP); ip == nil || ip.To4() == nil {
			t.Fatalf("lease IP %q is not IPv4", l.IP)
		}
		if l.Prefix < 0 || l.Prefix > 32 {
			t.Fatalf("lease prefix %d outside 0..32 for %s", l.Prefix, data)
		}
		if l.Gateway != "" && net.ParseIP(l.Gateway).To4() == nil {
			t.Fatalf("gateway %q is not IPv4", l.Gateway)
		}
	})
}
