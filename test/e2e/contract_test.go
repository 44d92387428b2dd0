package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// origVMSubset is what consumers of the original (vk-cocoon, scripts) read from a VM object;
// decoding fails on a JSON type mismatch, e.g. a string where they expect the network object.
type origVMSubset struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	PID    *int   `json:"pid"`
	Config struct {
		Name    *string `json:"name"`
		CPU     int     `json:"cpu"`
		Memory  int64   `json:"memory"`
		Storage int64   `json:"storage"`
		Image   string  `json:"image"`
	} `json:"config"`
	NetworkConfigs []struct {
		Tap     string `json:"tap"`
		MAC     string `json:"mac"`
		Network *struct {
			IP      string `json:"ip"`
			Gateway string `json:"gateway"`
			Prefix  int    `json:"prefix"`
		} `json:"network"`
	} `json:"network_configs"`
	StorageConfigs []map[string]any `json:"storage_configs"`
}

func decodeStrict(t *testing.T, what, doc string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("%s: the original's consumers cannot decode it: %v\n%s", what, err, doc)
	}
}

func checkVMObject(t *testing.T, what string, vm origVMSubset, name, subnetPrefix string) {
	t.Helper()
	if vm.Config.Name == nil || *vm.Config.Name != name || vm.PID == nil {
		t.Fatalf("%s: config.name/pid missing or wrong: %+v", what, vm)
	}
	if vm.Config.Memory != 512<<20 || vm.Config.Storage != 10<<30 {
		t.Fatalf("%s: byte-count sizes not taken: %+v", what, vm.Config)
	}
	if len(vm.NetworkConfigs) != 2 {
		t.Fatalf("%s: want 2 NICs, got %+v", what, vm.NetworkConfigs)
	}
	for _, n := range vm.NetworkConfigs {
		if n.Network == nil || !strings.HasPrefix(n.Network.IP, subnetPrefix) || n.Network.Prefix != 24 || n.Tap == "" || n.MAC == "" {
			t.Fatalf("%s: NIC without the original's network object: %+v", what, n)
		}
	}
	for _, d := range vm.StorageConfigs {
		for _, k := range []string{"path", "ro", "serial", "role"} {
			if _, ok := d[k]; !ok {
				t.Fatalf("%s: storage config without %q: %v", what, k, d)
			}
		}
	}
}

// TestJSONContract drives the built binary and decodes its JSON with the original's shapes:
// vm inspect / list / status events, image list / inspect, and the texts scripts match on.
func TestJSONContract(t *testing.T) {
	env, h, ref := netEnv(t, 71)
	if out := env.MustRun("vm", "list"); strings.TrimSpace(out) != "No VMs found." {
		t.Fatalf("empty vm list: %q", out)
	}
	if out := env.MustRun("vm", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty vm list -o json: %q", out)
	}
	if out := env.MustRun("snapshot", "list"); strings.TrimSpace(out) != "No snapshots found." {
		t.Fatalf("empty snapshot list: %q", out)
	}
	env.MustFail("snapshot not found", "snapshot", "inspect", "nope")
	// Plain byte counts, as scripts of the original pass them.
	env.MustRun("vm", "create", "--name", "c1", "--nics", "2", "--cpu", "1", "--memory", "536870912", "--storage", "10737418240", ref)
	env.MustFail("already exists", "vm", "create", "--name", "c1", "--nics", "0", ref)
	if out := env.MustRun("snapshot", "list", "--vm", "c1"); strings.TrimSpace(out) != "No snapshots found for VM." {
		t.Fatalf("snapshot list --vm: %q", out)
	}

	var vm origVMSubset
	decodeStrict(t, "vm inspect", env.MustRun("vm", "inspect", "c1"), &vm)
	checkVMObject(t, "vm inspect", vm, "c1", "10.231.71.")
	if *vm.PID != 0 || vm.State != "created" {
		t.Fatalf("created VM: pid %d state %s", *vm.PID, vm.State)
	}
	var list []origVMSubset
	decodeStrict(t, "vm list -o json", env.MustRun("vm", "list", "-o", "json"), &list)
	if len(list) != 1 {
		t.Fatalf("vm list: %+v", list)
	}
	checkVMObject(t, "vm list -o json", list[0], "c1", "10.231.71.")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := env.Cmd(ctx, "vm", "status", "--event", "--format", "json", "-n", "60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		t.Fatalf("no event line: %v", sc.Err())
	}
	var ev struct {
		Event string       `json:"event"`
		VM    origVMSubset `json:"vm"`
	}
	decodeStrict(t, "status event", sc.Text(), &ev)
	if ev.Event != "ADDED" {
		t.Fatalf("first event %q, want ADDED", ev.Event)
	}
	checkVMObject(t, "status event", ev.VM, "c1", "10.231.71.")

	var imgs []struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		Type      string    `json:"type"`
		Size      int64     `json:"size"`
		CreatedAt time.Time `json:"created_at"`
	}
	decodeStrict(t, "image list -o json", env.MustRun("image", "list", "-o", "json"), &imgs)
	if len(imgs) != 1 || imgs[0].Name != ref || imgs[0].Type != "oci" || !strings.HasPrefix(imgs[0].ID, "sha256:") || imgs[0].Size <= 0 {
		t.Fatalf("image list: %+v", imgs)
	}
	decodeStrict(t, "image inspect", env.MustRun("image", "inspect", ref), &imgs[0])
	if imgs[0].Name != ref || imgs[0].Type != "oci" {
		t.Fatalf("image inspect: %+v", imgs[0])
	}
	env.MustRun("vm", "rm", "c1")
	assertNoLeaks(t, h)
}
