package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// Read commands write nothing when reconciliation changes no record: the VM index keeps its
// inode (every write is a rename of a new file), mtime and size through vm list (table and
// JSON) and vm inspect.
func TestReadCommandsLeaveTheIndexAlone(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "create", "--name", "r1", "--nics", "0", ref)
	env.MustRun("vm", "create", "--name", "r2", "--nics", "0", ref)
	index := filepath.Join(env.Root, "vm", "db", "vms.json")
	stat := func() syscall.Stat_t {
		t.Helper()
		fi, err := os.Stat(index)
		if err != nil {
			t.Fatal(err)
		}
		return *fi.Sys().(*syscall.Stat_t)
	}
	before := stat()
	for _, args := range [][]string{{"vm", "list"}, {"vm", "list", "-o", "json"}, {"vm", "inspect", "r1"}, {"vm", "inspect", "r2"}, {"vm", "list"}} {
		env.MustRun(args...)
		if after := stat(); after.Ino != before.Ino || after.Mtim != before.Mtim || after.Size != before.Size {
			t.Fatalf("cocoon %v rewrote the VM index (inode %d→%d, mtime %v→%v)", args, before.Ino, after.Ino, before.Mtim, after.Mtim)
		}
	}
	env.MustRun("vm", "rm", "r1", "r2")
}
