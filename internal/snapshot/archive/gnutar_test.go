package archive

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func needGNUTar(t *testing.T) {
	t.Helper()
	out, err := exec.Command("tar", "--version").Output()
	if err != nil || !strings.Contains(string(out), "GNU tar") {
		t.Skip("GNU tar binary not found (tar --version does not say GNU tar)")
	}
	if _, err := exec.LookPath("gzip"); err != nil {
		t.Skip("gzip binary not found")
	}
}

// runTar runs GNU tar and fails on any error or warning it prints.
func runTar(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("tar", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("tar %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestGNUTarListsRealNamesInOrder(t *testing.T) {
	needGNUTar(t)
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	archive := exportTo(t, src, names(files), ExportOptions{})

	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(runTar(t, "-tvzf", archive)), "\n") {
		// -rw------- 0/0 1073741824 2026-01-02 03:04 mem
		fields := strings.Fields(line)
		if len(fields) != 6 {
			t.Fatalf("unexpected tar -tv line %q", line)
		}
		listed = append(listed, fields[5])
		for _, tf := range files {
			if tf.name == fields[5] && fields[2] != strconv.FormatInt(tf.size, 10) {
				t.Errorf("tar lists %s with size %s, want its apparent size %d", tf.name, fields[2], tf.size)
			}
		}
	}
	if !slices.Equal(listed, names(files)) {
		t.Errorf("tar -t lists %q, want %q", listed, names(files))
	}
}

func TestGNUTarExtractsExportWithHoles(t *testing.T) {
	needGNUTar(t)
	src, out := t.TempDir(), t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	archive := exportTo(t, src, names(files), ExportOptions{})
	runTar(t, "-xzf", archive, "-C", out)
	checkSameFiles(t, src, out, files)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("tar extracted %d entries, want %d (GNUSparseFile/PaxHeaders leftovers?)", len(entries), len(files))
	}
}

func TestImportReadsGNUTarArchives(t *testing.T) {
	needGNUTar(t)
	src := t.TempDir()
	files := snapshotFiles()
	writeTestFiles(t, src, files)
	for _, tc := range []struct {
		name    string
		args    []string
		members []string
	}{
		{"pax sparse 1.0", []string{"--format=pax", "--sparse-version=1.0"}, names(files)},
		{"pax sparse 0.1", []string{"--format=pax", "--sparse-version=0.1"}, names(files)},
		{"gnu sparse, whole directory", []string{"--format=gnu"}, []string{"."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := t.TempDir() + "/gnu.tar.gz"
			runTar(t, append(append([]string{"--sparse", "-czf", archive, "-C", src}, tc.args...), tc.members...)...)
			staging := t.TempDir()
			entries, err := importFile(t, archive, staging, Limits{})
			if err != nil {
				t.Fatalf("Import of a GNU tar archive: %v", err)
			}
			got := entryNames(entries)
			slices.Sort(got)
			want := slices.Sorted(slices.Values(names(files)))
			if !slices.Equal(got, want) {
				t.Errorf("Import returned %q, want %q", got, want)
			}
			checkSameFiles(t, src, staging, files)
		})
	}
}
