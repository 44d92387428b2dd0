package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const diskSize = 4 << 20

// rawDisk writes a raw disk with a recognisable first sector.
func rawDisk(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	data := mbrDisk(diskSize)
	copy(data, "COCOON TEST DISK")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mbrDisk is size bytes starting with an MBR that has one partition from sector 1.
func mbrDisk(size int) []byte {
	data := make([]byte, size)
	copy(data[446:], []byte{0x80, 0, 0, 0, 0x83, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0})
	data[510], data[511] = 0x55, 0xaa
	return data
}

// qcow2Disk converts rawDisk with the real qemu-img (compat as given).
func qcow2Disk(t testing.TB, compat string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat="+compat, rawDisk(t), p).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	return p
}

func sha(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

type fileServer struct {
	srv  *httptest.Server
	hits atomic.Int64
}

// serve serves files by name; "truncated-<name>" promises more bytes than it sends.
func serve(t testing.TB, files map[string]string) *fileServer {
	t.Helper()
	fs := &fileServer{}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.hits.Add(1)
		name := strings.TrimPrefix(r.URL.Path, "/")
		short, truncated := strings.CutPrefix(name, "truncated-")
		p, ok := files[short]
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return
		}
		if truncated {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)+4096))
		}
		w.Write(data) //nolint:errcheck
	}))
	t.Cleanup(fs.srv.Close)
	return fs
}

func qemuInfo(t testing.TB, p string) map[string]any {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func checkCloudBlob(t *testing.T, img *Image, root, source string) {
	t.Helper()
	contentHex := sha(t, source)
	want := filepath.Join(root, "cloudimg/blobs", contentHex+".qcow2")
	if img.Kind != KindCloud || img.Digest != "sha256:"+contentHex || img.BlobPath != want || img.VirtualSize != diskSize {
		t.Fatalf("image %+v", img)
	}
	if img.BlobDigest != "sha256:"+sha(t, want) {
		t.Errorf("blob digest %s is not the sha256 of the stored blob", img.BlobDigest)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o444 || fi.Size() != img.Size {
		t.Errorf("blob %v %v", fi, err)
	}
	info := qemuInfo(t, want)
	compat := info["format-specific"].(map[string]any)["data"].(map[string]any)["compat"]
	if info["format"] != "qcow2" || compat != "1.1" {
		t.Errorf("blob format %v compat %v, want qcow2 1.1", info["format"], compat)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", want, source).CombinedOutput(); err != nil {
		t.Errorf("blob content differs from the source: %s", out)
	}
	if ids := img.BlobIDs(); len(ids) != 1 || ids[0] != contentHex {
		t.Errorf("BlobIDs %v", ids)
	}
}

func TestPullCloudImages(t *testing.T) {
	needBin(t, "qemu-img")
	files := map[string]string{"disk.raw": rawDisk(t), "disk.qcow2": qcow2Disk(t, "0.10")}
	fs := serve(t, files)
	for name, src := range files {
		t.Run(name, func(t *testing.T) {
			m, root := newManager(t)
			url := fs.srv.URL + "/" + name
			img, st, err := m.Pull(context.Background(), url, false)
			if err != nil {
				t.Fatal(err)
			}
			if st.Converted != 1 || st.Bytes == 0 || img.Source != url || img.Ref != url {
				t.Errorf("stats %+v image %+v", st, img)
			}
			checkCloudBlob(t, img, root, src)
			if names := dirNames(t, filepath.Join(root, "cloudimg/temp")); len(names) != 0 {
				t.Errorf("temp files left: %v", names)
			}
			hits := fs.hits.Load()
			if _, st, err := m.Pull(context.Background(), url, false); err != nil || !st.UpToDate {
				t.Errorf("second pull %+v %v", st, err)
			}
			if fs.hits.Load() != hits {
				t.Errorf("an up-to-date pull downloaded again")
			}
			if _, st, err := m.Pull(context.Background(), url, true); err != nil || st.Converted != 1 || fs.hits.Load() != hits+1 {
				t.Errorf("forced pull %+v %v", st, err)
			}
		})
	}
}

func TestPullCloudImageFailuresStoreNothing(t *testing.T) {
	needBin(t, "qemu-img")
	page := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(page, []byte("<!DOCTYPE html><html><body>Not here</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := serve(t, map[string]string{"disk.raw": rawDisk(t), "page.html": page})
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	cases := map[string]string{
		fs.srv.URL + "/missing.qcow2":      "404 Not Found: check the URL",
		fs.srv.URL + "/truncated-disk.raw": "download truncated",
		fs.srv.URL + "/page.html":          "looks like a text file",
		dead.URL + "/disk.raw":             "connection refused",
	}
	for url, want := range cases {
		m, root := newManager(t)
		_, _, err := m.Pull(context.Background(), url, false)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Pull(%s) = %v, want one line containing %q", url, err, want)
		}
		assertNothingStored(t, m, root)
	}
}

func TestConcurrentCloudPullsDownloadOnce(t *testing.T) {
	needBin(t, "qemu-img")
	fs := serve(t, map[string]string{"disk.qcow2": qcow2Disk(t, "1.1")})
	m, root := newManager(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = NewManager(root, Options{}).Pull(context.Background(), fs.srv.URL+"/disk.qcow2", false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fs.hits.Load(); n != 1 {
		t.Errorf("downloaded %d times, want 1", n)
	}
	if imgs, _ := m.List(context.Background()); len(imgs) != 1 {
		t.Errorf("%d images, want 1", len(imgs))
	}
}
