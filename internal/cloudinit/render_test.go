package cloudinit

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// referenceSeed is the seed of the spec's Appendix B: non-root user, one static and one DHCP NIC,
// one data disk.
func referenceSeed() Seed {
	return Seed{
		InstanceID: "VMID123", Hostname: "myvm", User: "admin", Password: "secret",
		NICs: []NIC{
			{MAC: "AA:BB:CC:DD:EE:01", IP: "10.88.0.5", Prefix: 16, Gateway: "10.88.0.1"},
			{MAC: "aa:bb:cc:dd:ee:02"},
		},
		DNS:    []string{"8.8.8.8", "1.1.1.1"},
		Mounts: []Mount{{Serial: "db", MountPoint: "/mnt/db", FSType: "ext4"}},
	}
}

// decode parses each doc with the Go decoder and, when python3-yaml is present, also with PyYAML
// (the YAML 1.1 parser cloud-init uses, run once for all docs) and requires both to agree, so YAML
// 1.1 surprises (yes/on booleans, sexagesimals, dates) are caught.
func decode(t *testing.T, docs ...[]byte) []map[string]any {
	t.Helper()
	got := make([]map[string]any, len(docs))
	texts := make([]string, len(docs))
	for i, doc := range docs {
		if err := yaml.Unmarshal(doc, &got[i]); err != nil {
			t.Fatalf("YAML does not parse: %v\n%s", err, doc)
		}
		texts[i] = string(doc)
	}
	if _, err := exec.LookPath("python3"); err != nil {
		return got
	}
	cmd := exec.Command("python3", "-c",
		"import sys, json, yaml; json.dump([yaml.safe_load(d) for d in json.load(sys.stdin)], sys.stdout)")
	cmd.Stdin = strings.NewReader(asJSON(t, texts))
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && strings.Contains(string(ee.Stderr), "No module named 'yaml'") {
			return got
		}
		t.Fatalf("PyYAML: %v", err)
	}
	var py []any
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	for i := range docs {
		var g any
		json.Unmarshal([]byte(asJSON(t, got[i])), &g)
		if !reflect.DeepEqual(py[i], g) {
			t.Fatalf("PyYAML reads\n%s\nGo reads\n%s\nfrom\n%s", asJSON(t, py[i]), asJSON(t, g), docs[i])
		}
	}
	return got
}

func render(t *testing.T, s Seed) (meta, user, network []byte) {
	t.Helper()
	meta, user, network, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(user), "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", user)
	}
	return meta, user, network
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertDoc(t *testing.T, what string, got map[string]any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation for %s: %v", what, err)
	}
	if g := asJSON(t, got); g != asJSON(t, w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, asJSON(t, w))
	}
}

const staticUnit = "[Match]\nMACAddress=aa:bb:cc:dd:ee:01\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\n" +
	"Address=10.88.0.5/16\nGateway=10.88.0.1\nDNS=8.8.8.8\nDNS=1.1.1.1\n"

func TestRenderTwoNICsNonRootUser(t *testing.T) {
	t.Parallel()
	meta, user, network := render(t, referenceSeed())
	if string(meta) != "instance-id: VMID123\nlocal-hostname: myvm\n" {
		t.Fatalf("meta-data:\n%s", meta)
	}
	docs := decode(t, user, network)
	assertDoc(t, "user-data", docs[0], `{
		"hostname": "myvm",
		"users": [{"name": "admin", "shell": "/bin/bash", "groups": "sudo", "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": false}],
		"chpasswd": {"expire": false, "list": ["admin:secret"]},
		"ssh_pwauth": true,
		"mounts": [["/dev/disk/by-id/virtio-db", "/mnt/db", "ext4", "defaults,nofail", "0", "2"]],
		"write_files": [
			{"path": "/etc/systemd/network/15-cocoon-id0.network", "owner": "root:root", "permissions": "0644",
			 "content": "[Match]\nMACAddress=aa:bb:cc:dd:ee:01\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\nAddress=10.88.0.5/16\nGateway=10.88.0.1\nDNS=8.8.8.8\nDNS=1.1.1.1\n"},
			{"path": "/etc/systemd/network/15-cocoon-id1.network", "owner": "root:root", "permissions": "0644",
			 "content": "[Match]\nMACAddress=aa:bb:cc:dd:ee:02\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nDHCP=ipv4\n"}
		]}`)
	assertDoc(t, "network-config", docs[1], `{
		"version": 2,
		"ethernets": {
			"id0": {"match": {"macaddress": "aa:bb:cc:dd:ee:01"}, "addresses": ["10.88.0.5/16"],
			        "routes": [{"to": "0.0.0.0/0", "via": "10.88.0.1"}], "nameservers": {"addresses": ["8.8.8.8", "1.1.1.1"]}},
			"id1": {"match": {"macaddress": "aa:bb:cc:dd:ee:02"}, "dhcp4": true}
		}}`)
	// The ethernets keep NIC order in the file (id0 before id1), and the MACs are quoted.
	if i0, i1 := strings.Index(string(network), "id0:"), strings.Index(string(network), "id1:"); i0 < 0 || i1 < i0 {
		t.Fatalf("ethernets out of order:\n%s", network)
	}
	if !strings.Contains(string(network), `macaddress: "aa:bb:cc:dd:ee:01"`) {
		t.Fatalf("MAC not quoted:\n%s", network)
	}
}

func TestRenderRootWithOneDHCPNIC(t *testing.T) {
	t.Parallel()
	s := Seed{InstanceID: "abc", Hostname: "web1", User: "root", Password: "cocoon", NICs: []NIC{{MAC: "02:00:00:00:00:0a"}}}
	_, user, network := render(t, s)
	docs := decode(t, user, network)
	assertDoc(t, "user-data", docs[0], `{
		"hostname": "web1",
		"chpasswd": {"expire": false, "list": ["root:cocoon"]},
		"ssh_pwauth": true,
		"disable_root": false,
		"write_files": [{"path": "/etc/systemd/network/15-cocoon-id0.network", "owner": "root:root", "permissions": "0644",
			"content": "[Match]\nMACAddress=02:00:00:00:00:0a\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\nDHCP=ipv4\n"}]}`)
	assertDoc(t, "network-config", docs[1],
		`{"version": 2, "ethernets": {"id0": {"match": {"macaddress": "02:00:00:00:00:0a"}, "dhcp4": true}}}`)

	// An empty user means root.
	s.User = ""
	_, again, _ := render(t, s)
	if string(again) != string(user) {
		t.Fatalf("empty user differs from root:\n%s\nvs\n%s", again, user)
	}
}

func TestRenderNoNICsNoPassword(t *testing.T) {
	t.Parallel()
	_, user, network := render(t, Seed{InstanceID: "abc", Hostname: "quiet", User: "dev"})
	if string(network) != "version: 2\n" {
		t.Fatalf("network-config without NICs:\n%s", network)
	}
	// No password: nothing to set and no user to create (spec: no chpasswd/runcmd at all).
	assertDoc(t, "user-data", decode(t, user)[0], `{"hostname": "quiet"}`)
}

func TestRenderStaticNICWithoutGatewayOrDNS(t *testing.T) {
	t.Parallel()
	s := Seed{InstanceID: "abc", Hostname: "h", NICs: []NIC{{MAC: "02:00:00:00:00:01", IP: "192.168.1.2", Prefix: 24}}}
	_, user, network := render(t, s)
	docs := decode(t, user, network)
	assertDoc(t, "network-config", docs[1],
		`{"version": 2, "ethernets": {"id0": {"match": {"macaddress": "02:00:00:00:00:01"}, "addresses": ["192.168.1.2/24"]}}}`)
	unit := docs[0]["write_files"].([]any)[0].(map[string]any)["content"]
	if unit != "[Match]\nMACAddress=02:00:00:00:00:01\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\nAddress=192.168.1.2/24\n" {
		t.Fatalf("networkd unit:\n%s", unit)
	}
}

func TestPasswordsAndHostnamesSurviveYAML(t *testing.T) {
	t.Parallel()
	passwords := []string{`it's`, `a b  c`, `"quoted"`, `#hash`, `x #y`, `: colon`, `yes`, `- dash`,
		`' lead`, `trail `, `%pct`, `*star`, `[x]`, `@at`, `~`, `null`, `1:20`, `ünï`}
	var docs [][]byte
	for _, pw := range passwords {
		_, user, _ := render(t, Seed{InstanceID: "i", Hostname: "h", User: "admin", Password: pw})
		docs = append(docs, user)
	}
	for i, doc := range decode(t, docs...) {
		list := doc["chpasswd"].(map[string]any)["list"].([]any)
		if len(list) != 1 || list[0] != "admin:"+passwords[i] {
			t.Fatalf("password %q reads back as %v", passwords[i], list)
		}
	}
	// Hostnames PyYAML would read as booleans, numbers or dates must stay strings.
	hosts := []string{"on", "no", "Y", "123", "1e3", "0x1F", "1_000", "2024-01-01", "12.30"}
	docs = nil
	for _, host := range hosts {
		meta, user, _ := render(t, Seed{InstanceID: "007", Hostname: host})
		docs = append(docs, meta, user)
	}
	decoded := decode(t, docs...)
	for i, host := range hosts {
		meta, user := decoded[2*i], decoded[2*i+1]
		if meta["local-hostname"] != host || meta["instance-id"] != "007" || user["hostname"] != host {
			t.Fatalf("hostname %q reads back as %v / %v", host, meta, user["hostname"])
		}
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	t.Parallel()
	ok := referenceSeed
	cases := []struct {
		name   string
		mutate func(*Seed)
		want   string
	}{
		{"user upper-case", func(s *Seed) { s.User = "Admin" }, `--user "Admin" is invalid: must be a lowercase Linux username`},
		{"user with space", func(s *Seed) { s.User = "a b" }, `--user "a b" is invalid`},
		{"password dollar", func(s *Seed) { s.Password = "pa$$" }, "--password contains unsafe shell characters"},
		{"password backtick", func(s *Seed) { s.Password = "a`b" }, "--password contains unsafe shell characters"},
		{"password newline", func(s *Seed) { s.Password = "a\nroot:x" }, "--password contains control characters"},
		{"password RANDOM", func(s *Seed) { s.Password = "RANDOM" }, "reserved by cloud-init"},
		{"empty instance id", func(s *Seed) { s.InstanceID = "" }, "instance id"},
		{"instance id path", func(s *Seed) { s.InstanceID = "../x" }, "instance id"},
		{"bad hostname", func(s *Seed) { s.Hostname = "-x" }, `hostname "-x" is invalid`},
		{"bad MAC", func(s *Seed) { s.NICs[1].MAC = "zz" }, `NIC 1: MAC "zz" is invalid`},
		{"duplicate MAC", func(s *Seed) { s.NICs[1].MAC = "aa:bb:cc:dd:ee:01" }, "NIC 1: MAC aa:bb:cc:dd:ee:01 is already used by NIC 0"},
		{"IPv6 address", func(s *Seed) { s.NICs[0].IP = "fd00::1" }, "NIC 0: IP \"fd00::1\" is not an IPv4 address"},
		{"prefix", func(s *Seed) { s.NICs[0].Prefix = 33 }, "NIC 0: prefix length 33"},
		{"gateway", func(s *Seed) { s.NICs[0].Gateway = "gw" }, "NIC 0: gateway \"gw\""},
		{"gateway on DHCP", func(s *Seed) { s.NICs[1].Gateway = "10.0.0.1" }, "NIC 1: prefix/gateway given without an IP"},
		{"DNS", func(s *Seed) { s.DNS = []string{"dns.example"} }, `DNS server "dns.example"`},
		{"mount point", func(s *Seed) { s.Mounts[0].MountPoint = "mnt" }, "mount point \"mnt\""},
		{"mount serial", func(s *Seed) { s.Mounts[0].Serial = "DB" }, `mount of disk "DB"`},
		{"unit name", func(s *Seed) { s.Units = []Unit{{Name: "../x.service"}} }, `systemd unit name "../x.service"`},
	}
	for _, c := range cases {
		s := ok()
		c.mutate(&s)
		_, _, _, err := Render(s)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err %v, want one line containing %q", c.name, err, c.want)
		}
	}
}

func TestRenderUnitsAndReadOnlyMount(t *testing.T) {
	s := Seed{InstanceID: "i-1", Hostname: "h", Password: "pw",
		Mounts: []Mount{{Serial: "cocoon-agent", MountPoint: "/opt/cocoon-agent", FSType: "erofs", ReadOnly: true}},
		Units:  []Unit{{Name: "cocoon-agent.service", Content: "[Service]\nExecStart=/bin/true\n"}}}
	_, user, _, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, user)[0]
	mounts := fmt.Sprint(doc["mounts"])
	if mounts != "[[/dev/disk/by-id/virtio-cocoon-agent /opt/cocoon-agent erofs ro,nofail 0 0]]" {
		t.Fatalf("mounts: %s", mounts)
	}
	if run := fmt.Sprint(doc["runcmd"]); run != "[[systemctl enable --now --no-block cocoon-agent.service]]" {
		t.Fatalf("runcmd: %s", run)
	}
	if files := fmt.Sprint(doc["write_files"]); !strings.Contains(files, "path:/etc/systemd/system/cocoon-agent.service") || !strings.Contains(files, "ExecStart=/bin/true") {
		t.Fatalf("write_files: %s", files)
	}
}
