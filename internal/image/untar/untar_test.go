package untar

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: extraction sets ownership, creates device nodes and trusted.* xattrs")
	}
}

func build(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(h.Name))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(h.Name)[:h.Size]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func extract(t *testing.T, data []byte, opts Options) (string, error) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return root, Extract(context.Background(), bytes.NewReader(data), root, opts)
}

func reg(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }

func TestExtractPreservesMetadata(t *testing.T) {
	needRoot(t)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	var seen []string
	root, err := extract(t, build(t,
		&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o711, Uid: 7, Gid: 8, ModTime: mtime},
		&tar.Header{Name: "etc/secret", Typeflag: tar.TypeReg, Mode: 0o4750, Uid: 1234, Gid: 99, ModTime: mtime, Size: 5,
			PAXRecords: map[string]string{"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.redirect": "/x"}},
		&tar.Header{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/secret", Uid: 5, ModTime: mtime},
		&tar.Header{Name: "etc/hard", Typeflag: tar.TypeLink, Linkname: "etc/secret"},
		&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		&tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600},
		&tar.Header{Name: "/abs/file", Typeflag: tar.TypeReg},
	), Options{OnFile: func(n string) { seen = append(seen, n) }})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	check := func(p string) {
		t.Helper()
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
	}
	check("etc/secret")
	if st.Uid != 1234 || st.Gid != 99 || st.Mode&0o7777 != 0o4750 || st.Mtim.Sec != mtime.Unix() || st.Nlink != 2 {
		t.Errorf("etc/secret: uid %d gid %d mode %o mtime %d nlink %d", st.Uid, st.Gid, st.Mode&0o7777, st.Mtim.Sec, st.Nlink)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(root, "etc/secret"), "user.note", buf); err != nil || string(buf[:n]) != "hi" {
		t.Errorf("user.note xattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(root, "etc/secret"), "trusted.overlay.redirect", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("overlay xattr from the layer must be dropped, got %v", err)
	}
	check("etc")
	if st.Uid != 7 || st.Mode&0o7777 != 0o711 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("etc dir: uid %d mode %o mtime %d", st.Uid, st.Mode&0o7777, st.Mtim.Sec)
	}
	check("etc/link")
	if st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Uid != 5 {
		t.Errorf("etc/link: mode %o uid %d", st.Mode, st.Uid)
	}
	check("dev/null")
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d", st.Mode, st.Rdev)
	}
	check("run/fifo")
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/fifo: mode %o", st.Mode)
	}
	check("abs/file")
	check(".")
	if st.Mode&0o777 != 0o755 {
		t.Errorf("root mode %o, want 0755", st.Mode&0o777)
	}
	if len(seen) != 2 || seen[0] != "etc/secret" || seen[1] != "abs/file" {
		t.Errorf("OnFile saw %v", seen)
	}
}

func TestExtractWhiteouts(t *testing.T) {
	needRoot(t)
	root, err := extract(t, build(t,
		&tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
		reg("dir/.wh..wh..opq"),
		reg("etc/.wh.gone"),
		reg(".wh..wh.plnk"),
	), Options{Whiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "etc/gone"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: mode %o rdev %d, want char 0/0", st.Mode, st.Rdev)
	}
	buf := make([]byte, 4)
	if n, err := unix.Getxattr(filepath.Join(root, "dir"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", buf[:n], err)
	}
	for _, p := range []string{"dir/.wh..wh..opq", "etc/.wh.gone", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s should not exist: %v", p, err)
		}
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	needRoot(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]*tar.Header{
		"dotdot file":          {reg("../../" + filepath.Base(outside) + "/pwned")},
		"dotdot in the middle": {reg("a/../../pwned")},
		"write through absolute symlink": {
			{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside},
			reg("evil/pwned"),
		},
		"write through relative symlink": {
			{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../.." + outside},
			reg("up/pwned"),
		},
		"hardlink escaping root":         {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../../../../../.." + secret}},
		"absolute hardlink to host file": {{Name: "h", Typeflag: tar.TypeLink, Linkname: secret}},
		"hardlink through symlink": {
			{Name: "s", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "s/secret"},
		},
	}
	for name, hdrs := range cases {
		t.Run(name, func(t *testing.T) {
			root, err := extract(t, build(t, hdrs...), Options{Whiteouts: true})
			if err == nil {
				t.Fatalf("extraction succeeded; root has %v", ls(root))
			}
			t.Log(err)
			if _, err := os.Stat(filepath.Join(outside, "pwned")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a file was written outside the root: %v", err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(secret, &st); err != nil || st.Nlink != 1 {
				t.Fatalf("host file got linked: nlink %d %v", st.Nlink, err)
			}
		})
	}
}

func TestExtractLaterEntriesReplaceEarlier(t *testing.T) {
	needRoot(t)
	root, err := extract(t, build(t,
		&tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755},
		reg("x/child"),
		&tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/nowhere"},
		reg("f"),
		&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 1},
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(root, "x")); err != nil || target != "/nowhere" {
		t.Errorf("x: %q %v", target, err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "f")); err != nil || string(data) != "f" {
		t.Errorf("f: %q %v", data, err)
	}
}

func TestOpenFileRefusesSymlinks(t *testing.T) {
	needRoot(t)
	root, err := extract(t, build(t,
		reg("boot/vmlinuz-1"),
		&tar.Header{Name: "boot/vmlinuz", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(root, "boot/vmlinuz-1")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f, err := OpenFile(root, "boot/vmlinuz"); err == nil {
		f.Close()
		t.Fatal("OpenFile followed a symlink")
	}
	if _, err := OpenFile(root, "../x"); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("OpenFile(../x) = %v, want ErrUnsafe", err)
	}
}

func ls(root string) []string {
	var out []string
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { //nolint:errcheck // diagnostics only
		out = append(out, p)
		return nil
	})
	return out
}
