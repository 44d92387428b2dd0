package e2e

import (
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// Refs resolve an exact ID, then an exact name, then an ID prefix, so a name equal to or
// beginning an existing ID would hide that record from its short ID, and an ID-shaped name
// would read as an ID. Every command that names a VM or a snapshot refuses both, leaving nothing.
func TestNamesCannotPassForIDs(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustRun("vm", "create", "--name", "a", "--nics", "0", ref)
	vmID := env.Inspect("a").ID
	idLike := rand.Text()
	for _, c := range []struct{ name, want string }{
		{vmID, "looks like a VM ID"},
		{strings.ToLower(vmID[:5]), "equals or begins the ID of VM " + vmID},
		{idLike, "looks like a VM ID"},
		{strings.ToLower(idLike), "looks like a VM ID"},
	} {
		env.MustFail(c.want, "vm", "create", "--name", c.name, "--nics", "0", ref)
	}

	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	snapID := snapshotID(t, env.MustRun("snapshot", "save", "--name", "s1", "src"))
	for _, c := range []struct{ name, want string }{
		{snapID, "looks like a snapshot ID"},
		{snapID[:4], "equals or begins the ID of snapshot " + snapID},
		{idLike, "looks like a snapshot ID"},
	} {
		env.MustFail(c.want, "snapshot", "save", "--name", c.name, "src")
	}
	env.MustFail("equals or begins the ID of VM "+vmID, "vm", "clone", "--name", vmID[:6], "s1")
	env.MustFail("looks like a VM ID", "vm", "clone", "--name", idLike, "s1")

	archive := filepath.Join(t.TempDir(), "s1.tar.gz")
	env.MustRun("snapshot", "export", "-o", archive, "s1")
	env.MustFail("equals or begins the ID of snapshot "+snapID, "snapshot", "import", "--name", strings.ToLower(snapID[:3]), archive)
	env.MustFail("looks like a snapshot ID", "snapshot", "import", "--name", idLike, archive)

	var vms, snaps []json.RawMessage
	if err := json.Unmarshal([]byte(env.MustRun("vm", "list", "-o", "json")), &vms); err != nil || len(vms) != 2 {
		t.Fatalf("refused commands changed the VMs: %v %d", err, len(vms))
	}
	if err := json.Unmarshal([]byte(env.MustRun("snapshot", "list", "-o", "json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("refused commands changed the snapshots: %v %d", err, len(snaps))
	}
}
