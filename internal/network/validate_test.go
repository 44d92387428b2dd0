package network

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testVMID = "VALIDATE7TESTVMID234567ABC"

func writeConflist(t *testing.T, dir, file, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeBinDir holds empty executables named like plugins; validation only looks them up.
func fakeBinDir(t *testing.T, plugins ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range plugins {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const simpleConflist = `{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":"x0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}]}`

func conflist(name string) string { return strings.Replace(simpleConflist, "%q", `"`+name+`"`, 1) }

// requireNothingCreated checks that a refused Setup left no trace: no records, no netns.
func requireNothingCreated(t *testing.T, root, vmID string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, "cni", "db", "networks.json")); !os.IsNotExist(err) {
		t.Errorf("records written by a refused setup (stat: %v)", err)
	}
	if _, err := os.Stat(netnsPath(vmID)); !os.IsNotExist(err) {
		t.Errorf("netns created by a refused setup (stat: %v)", err)
	}
}

func TestValidationRefusesBeforeCreatingAnything(t *testing.T) {
	bin := fakeBinDir(t, "bridge", "host-local")
	good := t.TempDir()
	writeConflist(t, good, "20-beta.conflist", conflist("beta"))
	writeConflist(t, good, "10-alpha.conflist", conflist("alpha"))
	writeConflist(t, good, "05-ignored.conf", `not even json`)

	malformed := t.TempDir()
	writeConflist(t, malformed, "10-ok.conflist", conflist("ok"))
	writeConflist(t, malformed, "30-broken.conflist", `{"cniVersion":"1.0.0","name":"broken","plugins":[`)

	missingIPAM := t.TempDir()
	writeConflist(t, missingIPAM, "10-x.conflist", strings.Replace(conflist("x"), "host-local", "static", 1))

	req := Request{VMID: testVMID, NICs: 1, Queues: 2}
	cases := []struct {
		name         string
		confDir, bin string
		req          func(Request) Request
		want         string
	}{
		{"empty conf dir", t.TempDir(), bin, nil,
			"no CNI conflist in %CONF%: add one or use --nics 0"},
		{"missing conf dir", "/nonexistent/cni/net.d", bin, nil,
			"no CNI conflist in /nonexistent/cni/net.d: add one or use --nics 0"},
		{"malformed conflist", malformed, bin, nil,
			"parse CNI conflist %CONF%/30-broken.conflist: "},
		{"unknown network", good, bin, func(r Request) Request { r.Network = "gamma"; return r },
			`CNI network "gamma" not found in %CONF% (available: alpha, beta): pick one with --network`},
		{"missing plugin", good, t.TempDir(), nil,
			`CNI plugin "bridge" not found in %BIN%: install containernetworking-plugins or set --cni-bin-dir`},
		{"missing IPAM plugin", missingIPAM, bin, nil,
			`CNI plugin "static" not found in %BIN%: install containernetworking-plugins or set --cni-bin-dir`},
		{"network and bridge", good, bin, func(r Request) Request { r.Network, r.Bridge = "alpha", "br0"; return r },
			"--network and --bridge are mutually exclusive: use one of them"},
		{"bridge missing", good, bin, func(r Request) Request { r.Bridge = "ccnobr0"; return r },
			`bridge "ccnobr0" not found: create it (ip link add ccnobr0 type bridge) or pick another with --bridge`},
		{"bridge not a bridge", good, bin, func(r Request) Request { r.Bridge = "lo"; return r },
			`"lo" is not a bridge (type device): name a Linux bridge with --bridge`},
		{"negative NICs", good, bin, func(r Request) Request { r.NICs = -1; return r },
			"invalid NIC count -1: use --nics between 0 and 64"},
		{"no queues", good, bin, func(r Request) Request { r.Queues = 0; return r },
			"TAP queue count 0 out of range 1-256: pass the VM's vCPU count"},
		{"short VM ID", good, bin, func(r Request) Request { r.VMID = "abc"; return r },
			`invalid VM ID "abc" for networking: need 8+ characters of [A-Za-z0-9_.-]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			m := NewManager(root, c.confDir, c.bin)
			r := req
			if c.req != nil {
				r = c.req(r)
			}
			want := strings.NewReplacer("%CONF%", c.confDir, "%BIN%", c.bin).Replace(c.want)
			for _, err := range []error{m.Validate(r), setupErr(m, r)} {
				if err == nil || !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("got error %v\nwant prefix %q", err, want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
			}
			requireNothingCreated(t, root, r.VMID)
		})
	}
}

func setupErr(m *Manager, r Request) error {
	atts, err := m.Setup(context.Background(), r)
	if atts != nil {
		return nil
	}
	return err
}

func TestNetworksAndDefault(t *testing.T) {
	dir := t.TempDir()
	writeConflist(t, dir, "20-beta.conflist", conflist("beta"))
	writeConflist(t, dir, "10-alpha.conflist", conflist("alpha"))
	writeConflist(t, dir, "15-alpha-again.conflist", conflist("alpha"))
	m := NewManager(t.TempDir(), dir, fakeBinDir(t, "bridge", "host-local"))
	names, err := m.Networks()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alpha", "beta"}; !slices.Equal(names, want) {
		t.Errorf("Networks() = %q, want %q", names, want)
	}
	p, err := m.plan(Request{VMID: testVMID, NICs: 1, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.list.Name != "alpha" || p.queueSize != DefaultQueueSize {
		t.Errorf("default network %q queue size %d, want alpha %d", p.list.Name, p.queueSize, DefaultQueueSize)
	}
}

func TestValidateNeedsNoVMIDButSetupDoes(t *testing.T) {
	dir := t.TempDir()
	writeConflist(t, dir, "10-alpha.conflist", conflist("alpha"))
	root := t.TempDir()
	m := NewManager(root, dir, fakeBinDir(t, "bridge", "host-local"))
	req := Request{NICs: 1, Queues: 1}
	if err := m.Validate(req); err != nil {
		t.Errorf("Validate before the VM has an ID: %v", err)
	}
	want := `invalid VM ID "" for networking: need 8+ characters of [A-Za-z0-9_.-]`
	if _, err := m.Setup(context.Background(), req); err == nil || err.Error() != want {
		t.Errorf("Setup without VM ID: %v, want %q", err, want)
	}
	requireNothingCreated(t, root, "")
}

func TestNoNICsNeedsNoNetwork(t *testing.T) {
	root := t.TempDir()
	m := NewManager(root, "/nonexistent", "/nonexistent")
	atts, err := m.Setup(context.Background(), Request{VMID: testVMID, NICs: 0})
	if err != nil || atts != nil {
		t.Fatalf("Setup with 0 NICs = %v, %v; want nothing", atts, err)
	}
	requireNothingCreated(t, root, testVMID)
}
