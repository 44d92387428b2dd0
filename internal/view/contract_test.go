package view

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/network"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	t0 = time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	t1 = t0.Add(time.Minute)
)

func runningVM() *engine.VM {
	return &engine.VM{
		ID: "OPPDGDPSMDZN3XHFZY6WOGTVTZ", Name: "web1", Hypervisor: "qemu", State: engine.StateRunning,
		Config: engine.VMConfig{CPU: 2, MaxCPU: 2, Memory: 1 << 30, Storage: 10 << 30, NICs: 2, Image: "ubuntu:24.04",
			ImageDigest: "sha256:" + strings.Repeat("a", 64), ImageKind: "oci", Network: "cocoon", Accel: "auto"},
		Accel: "tcg", PID: 4242, PIDStart: 99,
		Networks: []network.Attachment{
			{Backend: network.BackendCNI, Network: "cocoon", IfName: "eth0", Tap: "tapOPPDGDPS-0", MAC: "02:00:00:00:00:01",
				MTU: 1500, NetnsPath: "/var/run/netns/cocoon-OPPDGDPSMDZN3XHFZY6WOGTVTZ", IP: "10.88.0.5", Prefix: 16,
				Gateway: "10.88.0.1", Queues: 2, QueueSize: 512},
			{Backend: network.BackendCNI, Network: "cocoon", IfName: "eth1", Tap: "tapOPPDGDPS-1", MAC: "02:00:00:00:00:02",
				MTU: 1500, NetnsPath: "/var/run/netns/cocoon-OPPDGDPSMDZN3XHFZY6WOGTVTZ", Queues: 2, QueueSize: 512},
		},
		Disks: []hypervisor.Disk{
			{Path: "/var/lib/cocoon/image/blobs/bbb.erofs", Format: hypervisor.FormatRaw, ReadOnly: true, Serial: "cocoon-layer0", Role: "layer"},
			{Path: "/var/lib/cocoon/run/OPPDGDPSMDZN3XHFZY6WOGTVTZ/cow.raw", Format: hypervisor.FormatRaw, Serial: "cocoon-cow", DirectIO: true, Role: "cow"},
		},
		Boot: &engine.BootConfig{KernelPath: "/var/lib/cocoon/image/boot/bbb/vmlinuz", InitrdPath: "/var/lib/cocoon/image/boot/bbb/initrd.img",
			Cmdline: "console=ttyS0 cocoon.layers=cocoon-layer0 cocoon.cow=cocoon-cow"},
		FirstBooted: true, ImageBlobIDs: map[string]struct{}{"bbb": {}}, SnapshotIDs: map[string]struct{}{"SNAPAAAAAAAAAAAAAAAAAAAAAA": {}},
		RunDir: "/var/lib/cocoon/run/OPPDGDPSMDZN3XHFZY6WOGTVTZ", LogDir: "/var/log/cocoon/OPPDGDPSMDZN3XHFZY6WOGTVTZ",
		CreatedAt: t0, UpdatedAt: t1, StartedAt: &t1,
	}
}

func testSnapshot() *snapshot.Snapshot {
	return &snapshot.Snapshot{ID: "SNAPAAAAAAAAAAAAAAAAAAAAAA", Name: "s1", Description: "after setup", SourceVM: "OPPDGDPSMDZN3XHFZY6WOGTVTZ",
		CreatedAt: t1, Manifest: snapshot.Manifest{Version: 1, Hypervisor: "qemu", CPU: 2, MaxCPU: 2, Memory: 1 << 30, Storage: 10 << 30,
			NICs: 1, MACs: []string{"02:00:00:00:00:01"}, Network: "cocoon", Image: "ubuntu:24.04",
			ImageDigest: "sha256:" + strings.Repeat("a", 64), ImageKind: "oci", ImageBlobIDs: []string{"bbb"}, Accel: "tcg"}}
}

func testImages() []image.Image {
	return []image.Image{
		{Kind: image.KindOCI, Ref: "ubuntu:24.04", Digest: "sha256:" + strings.Repeat("a", 64), Size: 123456789, CreatedAt: t0,
			Source: "registry", Layers: []image.Layer{{Digest: "sha256:" + strings.Repeat("b", 64), Path: "/var/lib/cocoon/image/blobs/bbb.erofs"}},
			KernelPath: "/var/lib/cocoon/image/boot/bbb/vmlinuz", InitrdPath: "/var/lib/cocoon/image/boot/bbb/initrd.img"},
		{Kind: image.KindCloud, Ref: "https://example.invalid/jammy.img", Digest: "sha256:" + strings.Repeat("c", 64), Size: 654321,
			CreatedAt: t1, Source: "https://example.invalid/jammy.img", BlobPath: "/var/lib/cocoon/image/blobs/ddd.qcow2",
			BlobDigest: "sha256:" + strings.Repeat("d", 64), VirtualSize: 2 << 30},
	}
}

// Each command's output for the fixtures above, as the CLI prints it (indented JSON; the event
// stream is one compact object per line).
func TestGoldenDocuments(t *testing.T) {
	stopped := runningVM()
	stopped.State, stopped.PID, stopped.StoppedAt = engine.StateStopped, 0, &t1
	cases := []struct {
		file  string
		v     any
		shape any
		lines bool
	}{
		{"vm-inspect.json", VMOf(runningVM()), &origVM{}, false},
		{"vm-list.json", VMsOf([]engine.VM{*runningVM(), *stopped}), &[]origVM{}, false},
		{"vm-status-events.jsonl", []Event{{"ADDED", VMOf(runningVM())}, {"DELETED", VMOf(stopped)}}, &origEvent{}, true},
		{"snapshot-inspect.json", SnapshotOf(testSnapshot()), &origSnapshot{}, false},
		{"snapshot-list.json", SnapshotsOf([]snapshot.Snapshot{*testSnapshot()}), &[]origSnapshot{}, false},
		{"image-list.json", ImagesOf(testImages()), &[]origImage{}, false},
		{"image-inspect.json", ImageOf(&testImages()[0]), &origImage{}, false},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			if c.lines {
				for _, ev := range c.v.([]Event) {
					if err := enc.Encode(ev); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				enc.SetIndent("", "  ")
				if err := enc.Encode(c.v); err != nil {
					t.Fatal(err)
				}
			}
			golden := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/view -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("output differs from %s (if intended, review and run with -update):\n%s", golden, buf.String())
			}
			docs := [][]byte{want}
			if c.lines {
				docs = bytes.Split(bytes.TrimSpace(want), []byte("\n"))
			}
			for _, doc := range docs {
				checkShape(t, doc, c.shape)
			}
		})
	}
}

// checkShape decodes doc with the original's type (which fails on a JSON type mismatch, e.g.
// a string where the original has an object) and checks that every key the original always
// emits is present.
func checkShape(t *testing.T, doc []byte, shape any) {
	t.Helper()
	if err := json.Unmarshal(doc, shape); err != nil {
		t.Fatalf("the original's consumers cannot decode it: %v", err)
	}
	var raw any
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	if err := requireKeys("$", raw, reflect.TypeOf(shape).Elem()); err != "" {
		t.Fatal(err)
	}
}

func requireKeys(path string, raw any, typ reflect.Type) string {
	for typ.Kind() == reflect.Pointer {
		if raw == nil {
			return ""
		}
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Slice:
		for i, el := range raw.([]any) {
			if e := requireKeys(fmt.Sprintf("%s[%d]", path, i), el, typ.Elem()); e != "" {
				return e
			}
		}
	case reflect.Struct:
		if typ == reflect.TypeOf(time.Time{}) {
			return ""
		}
		obj := raw.(map[string]any)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			v, ok := obj[name]
			if !ok {
				if !strings.Contains(opts, "omit") {
					return path + "." + name + ": missing (the original always emits it)"
				}
				continue
			}
			if e := requireKeys(path+"."+name, v, f.Type); e != "" {
				return e
			}
		}
	}
	return ""
}

// A DHCP NIC has no "network" object, a data disk carries direct_io, others do not.
func TestVMOfDetails(t *testing.T) {
	vm := runningVM()
	vm.Disks = append(vm.Disks, hypervisor.Disk{Path: "/x/data-db.raw", Format: hypervisor.FormatRaw, Serial: "db", Role: "data"})
	v := VMOf(vm)
	if v.NetworkConfigs[1].Network != nil || v.NetworkConfigs[0].Network.IP != "10.88.0.5" {
		t.Fatalf("network objects: %+v", v.NetworkConfigs)
	}
	if v.StorageConfigs[1].DirectIO != nil || v.StorageConfigs[2].DirectIO == nil || *v.StorageConfigs[2].DirectIO {
		t.Fatalf("direct_io: %+v", v.StorageConfigs)
	}
	vm.State = engine.StateStopped
	if VMOf(vm).PID != 0 {
		t.Fatal("pid of a VM that is not running must be 0")
	}
	if b, _ := json.Marshal(VMsOf(nil)); string(b) != "[]" {
		t.Fatalf("empty list prints %s, want []", b)
	}
}

// The shape check itself must catch the breakages consumers hit.
func TestShapeCheckCatchesBreakage(t *testing.T) {
	for name, doc := range map[string]string{
		"name at the top":      `{"id":"X","state":"running","name":"web1","config":{"cpu":1,"memory":1,"storage":1,"image":"i"},"pid":0,"first_booted":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","run_dir":"","log_dir":""}`,
		"network as a string":  `{"id":"X","state":"running","config":{"name":"a","cpu":1,"memory":1,"storage":1,"image":"i"},"pid":0,"network_configs":[{"tap":"t","mac":"m","num_queues":2,"queue_size":512,"network":"cocoon"}],"first_booted":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","run_dir":"","log_dir":""}`,
		"Go field disk names":  `{"id":"X","state":"running","config":{"name":"a","cpu":1,"memory":1,"storage":1,"image":"i"},"pid":0,"storage_configs":[{"Path":"p","ReadOnly":true,"Serial":"s","Role":"layer"}],"first_booted":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","run_dir":"","log_dir":""}`,
		"pid missing when off": `{"id":"X","state":"stopped","config":{"name":"a","cpu":1,"memory":1,"storage":1,"image":"i"},"first_booted":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","run_dir":"","log_dir":""}`,
	} {
		var v origVM
		var raw any
		decodeErr := json.Unmarshal([]byte(doc), &v)
		if err := json.Unmarshal([]byte(doc), &raw); err != nil {
			t.Fatal(err)
		}
		if decodeErr == nil && requireKeys("$", raw, reflect.TypeOf(v)) == "" {
			t.Errorf("%s: accepted", name)
		}
	}
}
