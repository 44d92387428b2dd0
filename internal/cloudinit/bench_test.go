package cloudinit

import (
	"testing"
	"time"
)

// BenchmarkBuildFAT12: render a two-NIC seed and build its FAT12 image (in memory).
func BenchmarkBuildFAT12(b *testing.B) {
	s := Seed{InstanceID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", Hostname: "bench", User: "cocoon", Password: "p@ss word",
		DNS:  []string{"1.1.1.1", "8.8.8.8"},
		NICs: []NIC{{MAC: "02:00:00:00:00:01", IP: "10.88.0.2", Prefix: 24, Gateway: "10.88.0.1"}, {MAC: "02:00:00:00:00:02"}}}
	for range b.N {
		meta, user, network, err := Render(s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := buildFAT12("CIDATA", []fatFile{{"meta-data", meta}, {"user-data", user}, {"network-config", network}}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
