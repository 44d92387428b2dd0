package engine

import (
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/cloudinit"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/network"
)

// A clone's seed names the clone, matches its new MAC, keeps the data disk mounts and sets no
// credentials (the guest keeps the ones it has).
func TestCloneSeedIdentity(t *testing.T) {
	vm := &VM{ID: "CLONEID", Name: "web-clone",
		Networks: []network.Attachment{{MAC: "02:00:00:00:00:0b", IP: "10.88.0.9", Prefix: 16, Gateway: "10.88.0.1"}},
		Disks: []hypervisor.Disk{{Role: "cow"}, {Role: "data", Serial: "db", FSType: "ext4", MountPoint: "/srv/db"},
			{Role: "data", Serial: "raw", FSType: "none"}}}
	meta, user, netcfg, err := cloudinit.Render(cloudSeed(vm, "", "", []string{"1.1.1.1"}))
	if err != nil {
		t.Fatal(err)
	}
	for doc, want := range map[string][]string{
		string(meta):   {"instance-id: CLONEID", "local-hostname: web-clone"},
		string(user):   {"hostname: web-clone", "[/dev/disk/by-id/virtio-db, /srv/db, ext4, 'defaults,nofail', \"0\", \"2\"]"},
		string(netcfg): {`macaddress: "02:00:00:00:00:0b"`, "10.88.0.9/16"},
	} {
		for _, w := range want {
			if !strings.Contains(doc, w) {
				t.Errorf("seed lacks %q:\n%s", w, doc)
			}
		}
	}
	if strings.Contains(string(user), "chpasswd") || strings.Contains(string(user), "virtio-raw") {
		t.Errorf("clone seed sets a password or mounts the unformatted disk:\n%s", user)
	}
}
