package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// testOptions points every path doctor reads or writes into a temp dir, with a fake /proc/sys
// (ip_forward off, a low aio-max-nr), so --fix never touches the machine.
func testOptions(t *testing.T) Options {
	t.Helper()
	tmp := t.TempDir()
	o := Options{
		RootDir: filepath.Join(tmp, "root"), RunDir: filepath.Join(tmp, "root/run"), LogDir: filepath.Join(tmp, "log"),
		MemoryDir: filepath.Join(tmp, "mem"), NetnsDir: filepath.Join(tmp, "netns"),
		CNIConfDir: filepath.Join(tmp, "cni"), CNIBinDir: "/usr/lib/cni",
		QEMUBinary:   "qemu-system-x86_64",
		FirmwareCode: filepath.Join(tmp, "OVMF_CODE.fd"), FirmwareVars: filepath.Join(tmp, "OVMF_VARS.fd"),
		FirmwareCodeARM64: filepath.Join(tmp, "AAVMF_CODE.fd"), FirmwareVarsARM64: filepath.Join(tmp, "AAVMF_VARS.fd"),
		ProcSys: filepath.Join(tmp, "proc/sys"), KSMDir: filepath.Join(tmp, "ksm"), SysctlDir: filepath.Join(tmp, "sysctl.d"), Subnet: "10.77.0.0/16",
		KVMProblem: func() string { return "" },
		Backends: []Backend{{Name: "usable", Available: func() error { return nil }},
			{Name: "missing", Available: func() error { return errors.New("cocoon-no-such-ch not found") }}},
	}
	for key, val := range map[string]string{"net.ipv4.ip_forward": "0\n", "fs.aio-max-nr": "65536\n", "vm.nr_hugepages": "0\n"} {
		p := sysctlPath(&o, key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestCheckAndFixAgainstTempDirs(t *testing.T) {
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.erofs", "mkfs.ext4"} {
		if _, err := os.Stat("/usr/bin/" + bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				t.Skipf("%s not installed", bin)
			}
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI plugins not installed in /usr/lib/cni (containernetworking-plugins)")
	}
	ctx := context.Background()
	o := testOptions(t)
	r := byName(Run(ctx, o))
	want := map[string]Status{
		"kvm": Pass, "qemu": Pass, "qemu-img": Pass, "mkfs.erofs": Pass, "mkfs.ext4": Pass, "cni plugins": Pass,
		"backend usable": Pass, "backend missing": Warn, "firmware OVMF": Warn, "firmware AAVMF": Warn, "firmware CLOUDHV": Warn,
		"cni conflist": Fail, "sysctl net.ipv4.ip_forward": Warn, "sysctl fs.aio-max-nr": Warn,
		"dir root_dir": Warn, "dir memory_dir": Warn, "hugepages": Pass, "memory merge": Pass,
	}
	for name, st := range want {
		if r[name].Status != st {
			t.Errorf("%s: %s (%s), want %s", name, r[name].Status, r[name].Detail, st)
		}
	}
	// KVM is taken as usable here: the host's own platform runs with it, the other is emulated.
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if d := r["platforms"].Detail; !strings.Contains(d, "host linux/"+runtime.GOARCH) ||
		!strings.Contains(d, "linux/"+runtime.GOARCH+" guests: KVM") || !strings.Contains(d, "linux/"+other+" guests: ") {
		t.Errorf("platforms: %q", d)
	}
	if !strings.Contains(r["mkfs.erofs"].Detail, "mkfs.erofs 1.") {
		t.Errorf("mkfs.erofs version missing: %q", r["mkfs.erofs"].Detail)
	}

	o.Fix = true
	fixed := Run(ctx, o)
	r = byName(fixed)
	for _, name := range []string{"cni conflist", "sysctl net.ipv4.ip_forward", "sysctl fs.aio-max-nr", "dir root_dir", "dir run_dir", "dir log_dir", "dir memory_dir", "dir netns dir"} {
		if r[name].Status != Fixed {
			t.Errorf("--fix %s: %s (%s), want FIXED", name, r[name].Status, r[name].Detail)
		}
	}
	if Failed(fixed) {
		t.Errorf("failures left after --fix: %+v", fixed)
	}
	if n, _ := readSysctl(&o, "net.ipv4.ip_forward"); n != 1 {
		t.Errorf("ip_forward = %d after --fix", n)
	}
	conf, err := os.ReadFile(filepath.Join(o.SysctlDir, sysctlConf))
	if err != nil || !strings.Contains(string(conf), "net.ipv4.ip_forward = 1\n") || !strings.Contains(string(conf), "fs.aio-max-nr = 1048576\n") {
		t.Errorf("persisted sysctls: %v\n%s", err, conf)
	}
	// libcni itself must accept the conflist.
	list, err := libcni.ConfListFromFile(filepath.Join(o.CNIConfDir, "10-cocoon.conflist"))
	if err != nil || list.Name != "cocoon" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "bridge" ||
		!strings.Contains(string(list.Bytes), `"gateway": "10.77.0.1"`) {
		t.Fatalf("conflist: %v %+v", err, list)
	}
	if st, err := os.Stat(o.RootDir); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("root dir: %v %v", err, st)
	}

	// Idempotent: a second --fix finds nothing to do and leaves the files as they are.
	again := byName(Run(ctx, o))
	for name, res := range again {
		if res.Status == Fixed {
			t.Errorf("second --fix changed %s again: %s", name, res.Detail)
		}
	}
	if conf2, _ := os.ReadFile(filepath.Join(o.SysctlDir, sysctlConf)); string(conf2) != string(conf) {
		t.Errorf("second --fix rewrote the sysctl file:\n%s", conf2)
	}
}

func TestPersistSysctlKeepsOtherLines(t *testing.T) {
	o := testOptions(t)
	p := filepath.Join(o.SysctlDir, sysctlConf)
	if err := os.MkdirAll(o.SysctlDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("# mine\nvm.swappiness = 10\nfs.aio-max-nr = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := persistSysctl(&o, "fs.aio-max-nr", aioMaxNr); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "# mine\nvm.swappiness = 10\nfs.aio-max-nr = 1048576\n" {
		t.Fatalf("got:\n%s", got)
	}
}

func TestWorldWritableDirAndBadSubnet(t *testing.T) {
	o := testOptions(t)
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(o.LogDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if r := checkDir(o.LogDir)(context.Background(), &o); r.Status != Warn || !strings.Contains(r.Detail, "world-writable") {
		t.Fatalf("%+v", r)
	}
	if err := fixDir(o.LogDir)(&o); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(o.LogDir); st.Mode().Perm() != 0o775 {
		t.Fatalf("mode %04o after fix", st.Mode().Perm())
	}
	o.Subnet = "fd00::/64"
	if err := writeConflist(&o); err == nil || !strings.Contains(err.Error(), "IPv4 CIDR") {
		t.Fatalf("IPv6 subnet: %v", err)
	}
}

// TestMemoryMerge: off needs nothing; on needs ksmd running, which --fix starts.
func TestMemoryMerge(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	if err := os.MkdirAll(o.KSMDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.KSMDir, "run"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := checkMemoryMerge(ctx, &o); r.Status != Pass || !strings.Contains(r.Detail, "off") {
		t.Errorf("memory_merge off: %+v", r)
	}
	o.MemoryMerge = true
	if r := checkMemoryMerge(ctx, &o); r.Status != Warn || !strings.Contains(r.Hint, "doctor --fix") {
		t.Errorf("memory_merge on, KSM stopped: %+v", r)
	}
	o.Fix = true
	if r := byName(Run(ctx, o))["memory merge"]; r.Status != Fixed {
		t.Errorf("--fix: %+v", r)
	}
	if run, _ := os.ReadFile(filepath.Join(o.KSMDir, "run")); string(run) != "1\n" {
		t.Errorf("ksm run after --fix = %q", run)
	}
	o.KSMDir = filepath.Join(t.TempDir(), "none")
	if r := checkMemoryMerge(ctx, &o); r.Status != Fail || !strings.Contains(r.Hint, "memory_merge to false") {
		t.Errorf("no KSM: %+v", r)
	}
}
