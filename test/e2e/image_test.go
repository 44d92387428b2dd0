package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// imageJSON is the original's image record (id is the digest, name the ref).
type imageJSON struct {
	Kind   string `json:"type"`
	Ref    string `json:"name"`
	Digest string `json:"id"`
}

func listImages(t *testing.T, env *harness.Env) []imageJSON {
	t.Helper()
	var imgs []imageJSON
	if err := json.Unmarshal([]byte(env.MustRun("image", "list", "-o", "json")), &imgs); err != nil {
		t.Fatal(err)
	}
	return imgs
}

func TestImageCommands(t *testing.T) {
	harness.Require(t, "mkfs.erofs", "qemu-img", "mkfs.ext4")
	layout := harness.RequireImage(t, "tiny")
	env := harness.NewEnv(t)
	reg := harness.NewRegistry(t)
	ref := reg.PushLayout(layout, "cocoon/tiny:1")
	ref2 := reg.PushLayout(layout, "cocoon/tiny:2")

	env.MustRun("image", "pull", ref, ref2)
	imgs := listImages(t, env)
	if len(imgs) != 2 || imgs[0].Kind != "oci" {
		t.Fatalf("want two OCI images, got %+v", imgs)
	}
	if table := env.MustRun("image", "ls"); !strings.Contains(table, "cocoon/tiny:1") || !strings.Contains(table, "TYPE") {
		t.Fatalf("table:\n%s", table)
	}
	var insp imageJSON
	if err := json.Unmarshal([]byte(env.MustRun("image", "inspect", ref)), &insp); err != nil || !strings.HasPrefix(insp.Digest, "sha256:") {
		t.Fatalf("inspect: %v %+v", err, insp)
	}

	// Import the same layout as a tar from stdin, and a raw disk from a file.
	tarCmd := exec.Command("tar", "-C", layout, "-cf", "-", ".")
	imp := env.Cmd(t.Context(), "image", "import", "tiny-imported")
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	if r := env.RunCmd(imp); r.Err != nil {
		t.Fatalf("import from stdin: %v %s", r.Err, r.Stderr)
	}
	_ = tarCmd.Wait()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if out, err := exec.Command("qemu-img", "create", "-f", "raw", raw, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	mustExec(t, "mkfs.ext4", "-q", "-F", raw) // a raw disk is recognised by its filesystem
	env.MustRun("image", "import", "rawdisk", raw)
	text := filepath.Join(t.TempDir(), "README")
	if err := os.WriteFile(text, []byte("just some text\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env.MustFail("", "image", "import", "bogus", text)
	if n := len(listImages(t, env)); n != 4 {
		t.Fatalf("want 4 images after imports, got %d", n)
	}

	env.MustFail("", "image", "pull", reg.Host+"/cocoon/nope:1")
	env.MustRun("image", "rm", ref2, "rawdisk")
	if n := len(listImages(t, env)); n != 2 {
		t.Fatalf("want 2 images after rm, got %d", n)
	}
	env.MustRun("gc")
}
