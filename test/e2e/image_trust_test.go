package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// mustExec runs a host tool for test setup.
func mustExec(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// assertNoImageLeftovers checks that the image store holds no entry, blob or temp file.
func assertNoImageLeftovers(t *testing.T, env *harness.Env) {
	t.Helper()
	if imgs := listImages(t, env); len(imgs) != 0 {
		t.Errorf("images left: %+v", imgs)
	}
	for _, d := range []string{"oci/blobs", "oci/boot", "oci/temp", "cloudimg/blobs", "cloudimg/temp"} {
		ents, _ := os.ReadDir(filepath.Join(env.Root, d))
		if len(ents) != 0 {
			t.Errorf("%s is not empty: %d entries", d, len(ents))
		}
	}
}

// Raw disks are told apart from random bytes by their partition table or filesystem, as the
// original detects by magic bytes.
func TestImageImportDetectsRawDisks(t *testing.T) {
	harness.Require(t, "qemu-img", "mkfs.ext4", "sfdisk", "truncate")
	env := harness.NewEnv(t)
	dir := t.TempDir()

	random := filepath.Join(dir, "random.bin")
	buf := make([]byte, 64<<10)
	rand.Read(buf) //nolint:errcheck // never fails
	if err := os.WriteFile(random, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	env.MustFail("cannot detect file type", "image", "import", "random", random)
	blank := filepath.Join(dir, "blank.raw")
	mustExec(t, "truncate", "-s", "16M", blank)
	env.MustFail("cannot detect file type", "image", "import", "blank", blank)
	assertNoImageLeftovers(t, env)

	ext4 := filepath.Join(dir, "ext4.raw")
	mustExec(t, "truncate", "-s", "16M", ext4)
	mustExec(t, "mkfs.ext4", "-q", "-F", ext4)
	gpt := filepath.Join(dir, "gpt.raw")
	mustExec(t, "truncate", "-s", "16M", gpt)
	sf := exec.Command("sfdisk", "-q", gpt)
	sf.Stdin = strings.NewReader("label: gpt\n,,L\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	env.MustRun("image", "import", "ext4disk", ext4)
	env.MustRun("image", "import", "gptdisk", gpt)
	if imgs := listImages(t, env); len(imgs) != 2 || imgs[0].Kind != "cloudimg" || imgs[1].Kind != "cloudimg" {
		t.Fatalf("want the two raw disks as cloud images, got %+v", imgs)
	}
}

// A 10 KiB tar declaring a 1 TiB sparse file fails at its header, leaving nothing behind.
func TestImageImportRefusesSparseBomb(t *testing.T) {
	harness.Require(t, "tar", "truncate")
	env := harness.NewEnv(t)
	dir := t.TempDir()
	mustExec(t, "truncate", "-s", "1T", filepath.Join(dir, "bomb"))
	bomb := filepath.Join(dir, "bomb.tar")
	mustExec(t, "tar", "-C", dir, "--sparse", "-cf", bomb, "bomb")
	if st, err := os.Stat(bomb); err != nil || st.Size() > 10<<10 {
		t.Fatalf("bomb tar: %v %v", st, err)
	}
	env.MustFail(`tar entry "bomb": too large: entry declares 1TiB`, "image", "import", "bomb", bomb)
	assertNoImageLeftovers(t, env)

	// A configured cap below the layer's size refuses it the same way.
	mustExec(t, "truncate", "-s", "2M", filepath.Join(dir, "bomb"))
	mustExec(t, "tar", "-C", dir, "--sparse", "-cf", bomb, "bomb")
	env.ExtraEnv = []string{"COCOON_MAX_LAYER_SIZE=1M"}
	env.MustFail("past its limit of 1MiB", "image", "import", "bomb", bomb)
	assertNoImageLeftovers(t, env)
}

// A whiteout must name an entry: `.wh.`, `.wh..` and `.wh...` would delete the directory itself
// or its parent in the stacked guest filesystem.
func TestImageImportRefusesWhiteoutsOfNothing(t *testing.T) {
	harness.Require(t, "mkfs.erofs")
	env := harness.NewEnv(t)
	for _, wh := range []string{".wh.", "etc/.wh..", "etc/.wh..."} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range []*tar.Header{
			{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: wh, Typeflag: tar.TypeReg, Mode: 0o644},
		} {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "layer.tar")
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		env.MustFail("unsafe layer: whiteout", "image", "import", "wh", p)
		assertNoImageLeftovers(t, env)
	}
}
