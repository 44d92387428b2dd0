package apicheck

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustCH(t *testing.T, opts ...Option) *Checker {
	t.Helper()
	c, err := LoadCloudHypervisor(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustFC(t *testing.T, opts ...Option) *Checker {
	t.Helper()
	c, err := LoadFirecracker(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

func TestValidRequestsPass(t *testing.T) {
	ch, fc := mustCH(t), mustFC(t)
	if ch.Flavor() != CloudHypervisor || fc.Flavor() != Firecracker {
		t.Fatalf("flavors: %s %s", ch.Flavor(), fc.Flavor())
	}
	cases := []struct {
		c                  *Checker
		method, path, body string
	}{
		{ch, "PUT", "/api/v1/vm.snapshot", `{"destination_url":"file:///x"}`},
		{ch, "GET", "/api/v1/vm.info", ``},
		{ch, "GET", "/api/v1/vmm.ping", ``},
		{ch, "PUT", "/api/v1/vm.add-net", `{"tap":"t0","mac":"aa:bb:cc:dd:ee:ff"}`},
		{ch, "PUT", "/api/v1/vm.restore", `{"source_url":"file:///s","memory_restore_mode":"OnDemand","resume":false}`},
		{ch, "PUT", "/api/v1/vm.pause", ``},
		{ch, "PUT", "/api/v1/vm.remove-device", `{"id":"net1"}`},
		{ch, "PUT", "/api/v1/vm.create", `{"cpus":{"boot_vcpus":2,"max_vcpus":2},"memory":{"size":536870912,"shared":true},` +
			`"payload":{"kernel":"/k","initramfs":"/i","cmdline":"console=hvc0"},` +
			`"disks":[{"path":"/l.erofs","readonly":true,"serial":"l0"}],"net":[{"tap":"t0","mac":"aa:bb:cc:dd:ee:ff","num_queues":2}],` +
			`"console":{"mode":"Pty"},"serial":{"mode":"Off"}}`},
		{fc, "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`},
		{fc, "PUT", "/actions", `{"action_type":"InstanceStart"}`},
		{fc, "PUT", "/snapshot/load", `{"snapshot_path":"/s/vmstate","mem_backend":{"backend_type":"File","backend_path":"/s/mem"},"resume_vm":true}`},
		{fc, "PUT", "/snapshot/create", `{"snapshot_type":"Full","snapshot_path":"/s/vmstate","mem_file_path":"/s/mem"}`},
		{fc, "PATCH", "/vm", `{"state":"Paused"}`},
		{fc, "PUT", "/boot-source", `{"kernel_image_path":"/k","boot_args":"console=ttyS0"}`},
		{fc, "PUT", "/drives/drive_0", `{"drive_id":"drive_0","path_on_host":"/d.raw","is_root_device":false,"is_read_only":true}`},
		{fc, "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"aa:bb:cc:dd:ee:ff"}`},
		{fc, "PUT", "/mmds", `{"latest":{"meta-data":{"any":"thing"}}}`}, // free-form object stays open
		{fc, "GET", "/", ``},
	}
	for _, tc := range cases {
		if err := tc.c.Check(tc.method, tc.path, jsonHeader, []byte(tc.body)); err != nil {
			t.Errorf("%s %s %s: unexpected error: %v", tc.method, tc.path, tc.body, err)
		}
	}
	// No Content-Type is taken as JSON, as both hypervisors do.
	if err := fc.Check("PUT", "/actions", nil, []byte(`{"action_type":"InstanceStart"}`)); err != nil {
		t.Errorf("body without Content-Type: %v", err)
	}
}

func TestInvalidRequestsFail(t *testing.T) {
	ch, fc := mustCH(t), mustFC(t)
	cases := []struct {
		name               string
		c                  *Checker
		method, path, body string
		want               []string // all must appear in the one-line message
	}{
		{"wrong type", ch, "PUT", "/api/v1/vm.add-net", `{"tap":1}`, []string{`"tap"`, "must be a string"}},
		{"wrong type fc", fc, "PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":256}`, []string{`"vcpu_count"`, "must be an integer"}},
		{"missing required", fc, "PUT", "/machine-config", `{"vcpu_count":2}`, []string{`required field "mem_size_mib" is missing`}},
		{"missing required ch", ch, "PUT", "/api/v1/vm.restore", `{"prefault":true}`, []string{`"source_url"`, "missing"}},
		{"missing nested required", ch, "PUT", "/api/v1/vm.create", `{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1}}`, []string{`required field "cpus.max_vcpus" is missing`}},
		{"bad enum", fc, "PUT", "/actions", `{"action_type":"Bogus"}`, []string{`"action_type"`, "allowed values", "InstanceStart"}},
		{"bad enum ch", ch, "PUT", "/api/v1/vm.restore", `{"source_url":"x","memory_restore_mode":"Lazy"}`, []string{`"memory_restore_mode"`, "OnDemand"}},
		{"bad enum fc vm", fc, "PATCH", "/vm", `{"state":"Stopped"}`, []string{`"state"`, "Paused"}},
		{"unknown property", ch, "PUT", "/api/v1/vm.snapshot", `{"destination":"file:///x"}`, []string{`unknown field "destination"`}},
		{"unknown nested property", fc, "PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File","backend_pth":"/m"}}`, []string{`unknown field "mem_backend.backend_pth"`}},
		{"missing body", ch, "PUT", "/api/v1/vm.snapshot", ``, []string{"requires a request body"}},
		{"body where none", ch, "PUT", "/api/v1/vm.pause", `{"x":1}`, []string{"takes no request body"}},
		{"not json", fc, "PUT", "/actions", `{"action_type":`, []string{"decode", "body"}},
		{"wrong content type", fc, "PUT", "/actions", "", nil}, // filled below
		{"path and body disagree", fc, "PUT", "/drives/drive_0", `{"drive_id":"drive_1","path_on_host":"/d","is_root_device":false}`, []string{`body field "drive_id" is "drive_1" but the path says "drive_0"`}},
		{"unknown path", ch, "GET", "/api/v1/vm.nope", ``, []string{"unknown path"}},
		{"outside base path", ch, "GET", "/vm.info", ``, []string{"unknown path", "/api/v1"}},
		{"unknown path fc", fc, "PUT", "/machine", `{}`, []string{"unknown path"}},
		{"wrong method", ch, "GET", "/api/v1/vm.snapshot", ``, []string{"method GET not allowed", "PUT"}},
		{"wrong method templated", fc, "DELETE", "/drives/drive_0", ``, []string{"method DELETE not allowed", "PATCH", "PUT"}},
		{"wrong method fc", fc, "PUT", "/vm", `{"state":"Paused"}`, []string{"method PUT not allowed", "PATCH"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := jsonHeader
			if tc.name == "wrong content type" {
				h, tc.body, tc.want = http.Header{"Content-Type": {"text/plain"}}, `{"action_type":"InstanceStart"}`, []string{"Content-Type", "text/plain"}
			}
			err := tc.c.Check(tc.method, tc.path, h, []byte(tc.body))
			if err == nil {
				t.Fatalf("%s %s %s passed", tc.method, tc.path, tc.body)
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("message is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, tc.method+" "+tc.path+": ") {
				t.Errorf("message does not start with the request: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

// The specs themselves leave objects open (no additionalProperties: false), so typos pass
// without StrictProperties; with it (the default) they fail.
func TestStrictProperties(t *testing.T) {
	typo := []byte(`{"vcpu_count":2,"mem_size_mib":256,"smt":false,"track_dirty_page":true}`) // track_dirty_pages
	loose, strict := mustFC(t, StrictProperties(false)), mustFC(t)
	if err := loose.Check("PUT", "/machine-config", jsonHeader, typo); err != nil {
		t.Fatalf("the spec itself rejects unknown properties (StrictProperties would be moot): %v", err)
	}
	err := strict.Check("PUT", "/machine-config", jsonHeader, typo)
	if err == nil || !strings.Contains(err.Error(), `"track_dirty_page"`) {
		t.Fatalf("strict checker let a misspelt field through: %v", err)
	}
	// Explicitly open maps stay open under strict mode.
	if err := mustCH(t).Check("PUT", "/api/v1/vm.create", jsonHeader, []byte(`{"payload":{"kernel":"/k"},"platform":{"oem_strings":["a"]}}`)); err != nil {
		t.Errorf("valid nested object rejected: %v", err)
	}
	if err := mustCH(t, StrictProperties(false)).Check("PUT", "/api/v1/vm.add-net", jsonHeader, []byte(`{"tapp":"t0"}`)); err != nil {
		t.Errorf("loose CH checker: %v", err)
	}
}

func TestReferenceDir(t *testing.T) {
	t.Setenv(ReferenceEnv, "")
	dir, err := ReferenceDir()
	if err != nil {
		t.Fatalf("the shared reference must be beside the repository (CI puts it there): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CloudHypervisorSpec)); err != nil {
		t.Fatal(err)
	}

	missing := filepath.Join(t.TempDir(), "nowhere")
	t.Setenv(ReferenceEnv, missing)
	if _, err := LoadFirecracker(); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), ReferenceEnv) {
		t.Fatalf("want an error naming %s, got %v", missing, err)
	}
	t.Setenv(ReferenceEnv, dir)
	if got, err := ReferenceDir(); err != nil || got != dir {
		t.Fatalf("env override: %q %v", got, err)
	}
}

func TestFindReferenceLayouts(t *testing.T) {
	tmp := t.TempDir()
	mkdir := func(p ...string) string {
		d := filepath.Join(append([]string{tmp}, p...)...)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A clone without shared/ beside it: the error names the env var and the path looked at.
	repo := mkdir("ci", "repo")
	write(filepath.Join(repo, "go.mod"), "module x\n")
	sub := mkdir("ci", "repo", "test", "pkg")
	want := filepath.Join(tmp, "ci", "shared", "reference")
	if _, err := findReference([]string{sub}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ReferenceEnv) {
		t.Fatalf("want an error naming %s and $%s, got %v", want, ReferenceEnv, err)
	}
	mkdir("ci", "shared", "reference")
	if got, err := findReference([]string{sub}); err != nil || got != want {
		t.Fatalf("sibling layout: %q %v", got, err)
	}

	// A git worktree elsewhere: found beside the main checkout.
	main := mkdir("w", "main")
	gitdir := mkdir("w", "main", ".git", "worktrees", "h9")
	write(filepath.Join(gitdir, "commondir"), "../..\n")
	wt := mkdir("w", "trees", "h9")
	write(filepath.Join(wt, "go.mod"), "module x\n")
	write(filepath.Join(wt, ".git"), "gitdir: "+gitdir+"\n")
	_ = main
	want = filepath.Join(tmp, "w", "shared", "reference")
	if _, err := findReference([]string{wt}); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want an error naming %s, got %v", want, err)
	}
	mkdir("w", "shared", "reference")
	if got, err := findReference([]string{wt}); err != nil || got != want {
		t.Fatalf("worktree layout: %q %v", got, err)
	}

	if _, err := findReference([]string{mkdir("nomod")}); err == nil || !strings.Contains(err.Error(), "go.mod") {
		t.Fatalf("no go.mod: %v", err)
	}
}
